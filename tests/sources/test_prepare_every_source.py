"""`prepare` runs end to end on every registered source, from a fixture in its real format."""

from __future__ import annotations

import pytest
from PIL import Image

from dermsight.config import load_config
from dermsight.manifest import ALL_COLUMNS
from dermsight.prepare.pipeline import run_prepare
from dermsight.sources import list_sources

OPTIONS = {"synthetic": "{n_patients: 10, size: 48}"}


@pytest.mark.parametrize("name", list_sources())
def test_prepare_runs_on_every_source(name, build, tmp_path):
    root = tmp_path / "data"
    builders = {"ham10000": build.ham, "fitzpatrick17k": build.fitz, "pad-ufes-20": build.pad,
                "scin": build.scin, "folder": build.folder, "synthetic": lambda r: r}
    builders[name](root)
    for path in root.rglob("*"):  # the format fixtures hold 8x6 images: enlarge them
        if path.suffix in (".jpg", ".png"):
            Image.open(path).convert("RGB").resize((64, 48)).save(path)
    cfg = load_config(None, [
        f"prepare.source={name}", f"prepare.root={root}", f"prepare.out={tmp_path / 'out'}",
        "prepare.workers=1", "prepare.figures=false", "prepare.split.min_class_count=0",
        "prepare.split.val_fraction=0", "prepare.split.test_fraction=0",
        f"prepare.source_options={OPTIONS.get(name, '{}')}"]).prepare
    result = run_prepare(cfg, progress=False)
    assert list(result.manifest.columns) == list(ALL_COLUMNS)
    assert result.audit["counts"]["kept"] > 0
    assert result.manifest["ita"].notna().all() and result.manifest["lighting_ok"].notna().all()
    assert (tmp_path / "out" / "manifest.parquet").exists()
