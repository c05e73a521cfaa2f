"""Storage helpers: atomic writes and staging folders."""

import os
import stat

import pytest

from dermsight.io import atomic_write_text, join, staging_dir


def test_atomic_write_leaves_no_temp_and_normal_mode(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]
    assert stat.S_IMODE(os.stat(target).st_mode) & 0o044  # readable by group/others (umask)


def test_staging_dir_keeps_out_on_failure_and_replaces_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "figures").mkdir()
    (out / "figures" / "old.png").write_text("old")
    with pytest.raises(RuntimeError), staging_dir(out) as stage:
        (stage / "manifest.parquet").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["figures", "keep.txt"]
    with staging_dir(out, last="manifest.parquet") as stage:
        (stage / "manifest.parquet").write_text("new")
        (stage / "figures").mkdir()
        (stage / "figures" / "new.png").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["figures", "keep.txt", "manifest.parquet"]
    assert [p.name for p in (out / "figures").iterdir()] == ["new.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_join_local_and_remote():
    assert join("http://host/a/", "b", "/c") == "http://host/a/b/c"
    assert join("gs://bucket", "dataset/images/x.png") == "gs://bucket/dataset/images/x.png"
    assert join("root", "images", "x.jpg") == os.path.join("root", "images", "x.jpg")
