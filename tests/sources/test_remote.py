"""Sources read remote roots through fsspec: a local HTTP server and the memory:// store."""

from __future__ import annotations

import uuid

import fsspec
import pytest

from dermsight.errors import DataError
from dermsight.io import list_files, read_bytes
from dermsight.sources import create_source


def test_ham10000_over_http(http_root, build):
    folder, url = http_root
    build.ham(folder / "ham")
    df = create_source("ham10000", f"{url}/ham", official_split=True).load()
    assert len(df) == 5
    uri = df.set_index("image_id").loc["ISIC_0027419", "image_uri"]
    assert uri == f"{url}/ham/images/ISIC_0027419.jpg"
    assert read_bytes(uri) == (folder / "ham/images/ISIC_0027419.jpg").read_bytes()
    assert df["mask_uri"].str.startswith(f"{url}/ham/masks/").all()


def test_scin_over_http(http_root, build):
    folder, url = http_root
    build.scin(folder / "bucket")
    df = create_source("scin", f"{url}/bucket").load()
    assert len(df) == 5
    uri = df.set_index("image_id").loc["-5840958151393346034", "image_uri"]
    assert uri == f"{url}/bucket/dataset/images/-5840958151393346034.png"
    assert read_bytes(uri)[:4] == b"\x89PNG"


def test_scin_flat_root_over_http(http_root, build):
    folder, url = http_root
    build.scin(folder / "dataset", layout="flat")
    df = create_source("scin", f"{url}/dataset").load()
    uri = df.set_index("image_id").loc["1104367427453286930", "image_uri"]
    assert uri == f"{url}/dataset/images/1104367427453286930.png"
    assert read_bytes(uri)[:4] == b"\x89PNG"


def test_missing_table_over_http(http_root):
    _, url = http_root
    with pytest.raises(DataError, match=r"metadata\.csv.*not found"):
        create_source("ham10000", f"{url}/nothing").load()


def test_folder_over_http(http_root, build):
    folder, url = http_root
    build.folder(folder / "kaggle")
    try:
        listed = list_files(f"{url}/kaggle", (".jpg",))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"fsspec cannot list http.server directory pages here: {exc}")
    if not listed:
        pytest.skip("fsspec lists no files from http.server directory pages here")
    df = create_source("folder", f"{url}/kaggle").load()
    assert sorted(df["image_id"]) == ["acne/a1", "acne/a2", "eczema/e1", "eczema/sub/e2",
                                      "psoriasis/p1"]
    uri = df.set_index("image_id").loc["eczema/sub/e2", "image_uri"]
    assert uri == f"{url}/kaggle/eczema/sub/e2.webp"
    assert read_bytes(uri) == (folder / "kaggle/eczema/sub/e2.webp").read_bytes()


@pytest.fixture
def memory_root():
    fs = fsspec.filesystem("memory")
    base = f"/dermsight-test-{uuid.uuid4().hex}"
    try:
        yield fs, base
    finally:
        if fs.exists(base):
            fs.rm(base, recursive=True)


def _upload(fs, local_root, base):
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            fs.pipe(f"{base}/{path.relative_to(local_root).as_posix()}", path.read_bytes())


def test_memory_store(memory_root, build, tmp_path):
    fs, base = memory_root
    _upload(fs, build.folder(tmp_path / "kaggle"), f"{base}/kaggle")
    _upload(fs, build.scin(tmp_path / "bucket"), f"{base}/bucket")
    df = create_source("folder", f"memory://{base}/kaggle").load()
    assert sorted(df["label"]) == ["acne", "acne", "eczema", "eczema", "psoriasis"]
    assert "eczema/sub/e2" in set(df["image_id"])
    assert read_bytes(df["image_uri"].iloc[0])
    scin = create_source("scin", f"memory://{base}/bucket").load()
    assert len(scin) == 5
    uri = scin.set_index("image_id").loc["6690127015592618113", "image_uri"]
    assert read_bytes(uri)[:4] == b"\x89PNG"
