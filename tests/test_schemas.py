"""The typed hand-offs between stages (dermsight.schemas): the committed files load and are
written back unchanged, a stored calibration round-trips, and an old or broken file is named
with its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermsight.errors import ConfigError
from dermsight.schemas import (
    Calibration,
    ModelJson,
    RouterJson,
    ToneGroups,
    display_names,
    read_json,
)

MODELS = Path(__file__).resolve().parents[1] / "models"
COMMITTED = [(ModelJson, MODELS / "ham10000" / "model.json"),
             (ModelJson, MODELS / "fitzpatrick17k" / "model.json"),
             (RouterJson, MODELS / "router" / "router.json")]

CALIBRATION = {
    "format_version": 1, "classes": ["a", "b", "c"], "temperature": 1.7,
    "fitted_on": {"split": "val", "n": 90, "manifest": "runs/prepared/x/manifest.parquet",
                  "source": "synthetic", "root": "data", "tta": "hflip",
                  "created": "2026-01-01T00:00:00+00:00"},
    "conformal": {"method": "lac", "mode": "group", "target": 0.9, "alpha": 0.1,
                  "randomized": False, "qhat": 0.8, "thresholds": {"dark": None, "light": 0.7},
                  "group_by": "tone_bucket", "fallback": ["dark"], "n_calibration": 90,
                  "score": "LAC: 1 - p_k"},
    "val_metrics": {"n": 90, "accuracy": 0.8, "nll_before": 0.7, "nll_after": 0.6,
                    "ece_before": 0.1, "ece_after": None, "coverage": 0.9,
                    "mean_set_size": 1.3},
}


@pytest.mark.parametrize(("schema", "path"), COMMITTED, ids=lambda v: getattr(v, "name", ""))
def test_the_committed_files_load_and_are_written_back_unchanged(schema, path):
    if not path.is_file():
        pytest.skip(f"{path} is not committed in this checkout")
    data = json.loads(path.read_text())
    parsed = read_json(schema, path)
    assert parsed.format_version == 1
    assert parsed.dump() == data


def test_calibration_round_trip_and_the_photo_alone_path():
    cal = Calibration.parse(CALIBRATION, "run/calibration.json")
    assert cal.dump() == CALIBRATION
    assert list(cal.dump()) == list(CALIBRATION)  # field order kept too
    assert cal.without_metadata is None
    with pytest.raises(ConfigError, match="no 'without_metadata' section"):
        cal.path(without_metadata=True)
    alone = {k: CALIBRATION[k] for k in ("temperature", "conformal", "val_metrics")}
    both = Calibration.parse({**CALIBRATION, "without_metadata": alone})
    assert both.path(without_metadata=True).dump() == alone
    assert both.path().temperature == 1.7


def test_a_calibration_written_before_format_version_is_read_as_version_1():
    legacy = {"version": 1, **{k: v for k, v in CALIBRATION.items() if k != "format_version"}}
    assert Calibration.parse(legacy).dump() == CALIBRATION


@pytest.mark.parametrize(("change", "field"), [
    ({"format_version": None}, "format_version"),
    ({"format_version": 2}, "format_version"),
    ({"temperature": -1.0}, "temperature"),
    ({"conformal": {**CALIBRATION["conformal"], "method": "raps"}}, "conformal.method"),
    ({"fitted_on": {"n": 3}}, "fitted_on.split"),
])
def test_a_broken_calibration_names_the_file_and_field(change, field):
    data = {k: v for k, v in {**CALIBRATION, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=rf"^run/calibration.json: field '{field}'"):
        Calibration.parse(data, "run/calibration.json")


def test_a_broken_model_json_names_the_file_and_field(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format_version": 1, "classes": ["a"], "preprocess": {},
                                "conformal": {"method": "lac", "threshold": "high"}}))
    with pytest.raises(ConfigError, match=rf"{path}: field 'conformal.threshold'.*export"):
        read_json(ModelJson, path)
    path.write_text(json.dumps({"classes": ["a"], "preprocess": {}}))
    with pytest.raises(ConfigError, match=r"model.json: field 'format_version' is missing"):
        read_json(ModelJson, path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"model.json is not valid JSON"):
        read_json(ModelJson, path)


def test_tone_groups_keep_every_reported_figure():
    row = {"n": 40, "small": False, "accuracy": 0.7, "new_metric": 0.3, "new_metric_ci95": [0.2,
                                                                                           0.4]}
    groups = ToneGroups.model_validate({"groups": {"dark": row}, "overall": {"accuracy": 0.6}})
    assert groups.dump() == {"groups": {"dark": row}, "overall": {"accuracy": 0.6}}


def test_display_names_are_one_rule():
    assert display_names(["mel", "basal_cell-carcinoma"]) == {
        "mel": "melanoma", "basal_cell-carcinoma": "basal cell carcinoma"}
    assert display_names(["mel", "x"], {"mel": "Melanoma"}) == {"mel": "Melanoma", "x": "x"}


def test_a_new_file_gets_its_format_version():
    from dermsight.schemas import ConformalSettings

    conformal = ConformalSettings(method="lac", mode="marginal", target=0.9, alpha=0.1,
                                  qhat=0.8)
    cal = Calibration(classes=["a", "b"], temperature=1.2, conformal=conformal)
    assert list(cal.dump())[:2] == ["format_version", "classes"]
    assert cal.dump()["format_version"] == 1
    assert Calibration.parse(cal.dump()).dump() == cal.dump()
