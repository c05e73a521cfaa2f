"""`dermsight predict --metadata FILE.csv`: matching, missing rows, bad values, bad files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dermsight.cli import app
from dermsight.errors import DataError
from dermsight.serve.metadata_csv import read_metadata_csv

HAM = Path(__file__).resolve().parents[2] / "models" / "ham10000"
SCHEMA = {"numeric": {"age": {"min": 0.0, "max": 120.0}},
          "categorical": {"sex": ["female", "male"], "body_site": ["back", "face"]}}
FIELDS = ("age", "sex", "body_site")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_rows_match_by_image_id_with_or_without_extension(tmp_path):
    table = read_metadata_csv(_write(tmp_path / "m.csv", "image_id,age,sex,colour\n"
                                     "a.jpg,45,Female,red\nb,70,male,\n"), SCHEMA, FIELDS)
    assert table.lookup(Path("photos/a.jpg")) == ({"age": 45.0, "sex": "female"}, [])
    assert table.lookup(Path("b.png")) == ({"age": 70.0, "sex": "male"}, [])
    meta, warnings = table.lookup(Path("c.jpg"))
    assert meta is None and "no row for this image" in warnings[0]
    assert len(table.notes) == 1 and "['colour']" in table.notes[0]


def test_bad_values_are_named_by_row_and_column_and_only_that_field_dropped(tmp_path):
    table = read_metadata_csv(_write(tmp_path / "m.csv", "file,age,sex,body_site\n"
                                     "x.jpg,-5,x,moon\ny.jpg,30,male,back\n"), SCHEMA, FIELDS)
    meta, warnings = table.lookup(Path("x.jpg"))
    assert meta is None and len(warnings) == 3
    assert "row 2, column 'age': must be between 0.0 and 120.0, got '-5'" in warnings[0]
    assert "row 2, column 'sex'" in warnings[1] and "row 2, column 'body_site'" in warnings[2]
    assert table.lookup(Path("y.jpg")) == ({"age": 30.0, "sex": "male", "body_site": "back"},
                                           [])


@pytest.mark.parametrize("text, message", [
    ("name,age\na,4\n", "has no id column"),
    ("image_id,age\na,4\na,5\n", "row 3 repeats image_id 'a'"),
    ("image_id,age\n,4\n", "row 2 has an empty image_id"),
])
def test_a_file_without_ids_is_an_error_before_any_prediction(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_metadata_csv(_write(tmp_path / "m.csv", text), SCHEMA, FIELDS)


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_metadata_csv(tmp_path / "missing.csv", SCHEMA, FIELDS)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(DataError, match="bin.csv"):
        read_metadata_csv(tmp_path / "bin.csv", SCHEMA, FIELDS)


def test_predict_cli_uses_each_images_row(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(60, 200, (120, 160, 3), dtype=np.uint8)).save(
            tmp_path / f"{name}.png")
    _write(tmp_path / "m.csv", "image_id,age,sex,body_site,notes\na,60,male,back,x\n"
           "b.png,-5,female,face,y\n")
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--model", str(HAM), "--csv",
                                      "--metadata", str(tmp_path / "m.csv"), "--quiet"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    rows = {Path(r["file"]).stem: r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["warnings"] == ""
    assert "row 3, column 'age'" in rows["b"]["warnings"]
    assert "no row for this image" in rows["c"]["warnings"]
    for cls in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"):  # ISIC-style columns
        assert all(0.0 <= float(r[cls]) <= 1.0 for r in rows.values())
    assert "['notes'] are not metadata fields" in result.stderr
    # the metadata changes the answer of image a only
    plain = CliRunner().invoke(app, ["predict", str(tmp_path), "--model", str(HAM), "--csv",
                                     "--quiet"])
    plain_rows = {Path(r["file"]).stem: r for r in csv.DictReader(io.StringIO(plain.stdout))}
    assert plain_rows["a"]["nv"] != rows["a"]["nv"]
    assert plain_rows["c"]["nv"] == rows["c"]["nv"]


def test_predict_cli_stops_before_predicting_on_a_bad_file(tmp_path):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    _write(tmp_path / "m.csv", "name,age\na,4\n")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "a.png"), "--model", str(HAM),
                                      "--metadata", str(tmp_path / "m.csv")])
    assert result.exit_code == 2 and "has no id column" in result.stderr
