"""The real `dermsight` CLI on tiny settings (ultralytics style)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dermsight.cli import app

runner = CliRunner()
COMMANDS = ["prepare", "sources", "config", "schema"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_top_level_help_carries_the_disclaimer():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "not medical advice" in " ".join(result.output.split())


def test_sources_lists_every_registered_source():
    from dermsight.sources import list_sources

    result = runner.invoke(app, ["sources"])
    assert result.exit_code == 0
    for name in list_sources():
        assert name in result.output
    assert set(list_sources()) >= {"ham10000", "fitzpatrick17k", "scin", "pad-ufes-20",
                                   "folder", "synthetic"}


def test_config_shows_overrides_and_rejects_unknown_keys():
    result = runner.invoke(app, ["config", "prepare.seed=7"])
    assert result.exit_code == 0 and "seed: 7" in result.output
    result = runner.invoke(app, ["config", "prepare.sede=7"])
    assert result.exit_code == 2
    assert "prepare.sede: unknown key" in result.output


def test_prepare_root_that_does_not_exist(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", "--source", "ham10000", "--root",
                                 str(tmp_path / "nowhere"), "--out", str(out)])
    assert result.exit_code == 2
    assert "nowhere" in result.output and "does not exist" in result.output
    assert not out.exists()


def test_prepare_unknown_source(tmp_path):
    result = runner.invoke(app, ["prepare", "--source", "nope", "--root", str(tmp_path),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown source 'nope'" in result.output


def test_prepare_reads_a_training_configs_data(tmp_path):
    """`prepare --config <training config>` prepares that config's data (not the synthetic
    default) into the folder `train` reads, unless --out says otherwise."""
    import numpy as np
    from PIL import Image

    from dermsight.config import load_config

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (96, 96, 3), np.uint8)).save(
                tmp_path / "photos" / label / f"{label}{i}.png")
    config = tmp_path / "train.yaml"
    config.write_text(f"data:\n  source: folder\n  root: {tmp_path / 'photos'}\n"
                      f"  prepared: {tmp_path / 'prepared'}\n  metadata: null\n")
    result = runner.invoke(app, ["prepare", "--config", str(config), "-q", "prepare.figures=false"])
    assert result.exit_code == 0, result.output
    assert "12 of 12 images from 'folder'" in result.output
    assert (tmp_path / "prepared" / "manifest.parquet").is_file()
    assert load_config(config).prepared_dir() == tmp_path / "prepared"
    result = runner.invoke(app, ["prepare", "--config", str(config), "-q", "--root",
                                 str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "nowhere" in result.output


@pytest.mark.slow
def test_quickstart_command_on_synthetic(tmp_path):
    """What `make quickstart` runs, as a subprocess: synthetic data, no download."""
    out = tmp_path / "quick"
    proc = subprocess.run(
        [sys.executable, "-m", "dermsight", "prepare", "--source", "synthetic",
         "--root", str(tmp_path / "synthetic"), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    audit = json.loads((out / "audit.json").read_text())
    assert audit["counts"]["kept"] > 50
    assert set(audit["summary"]["tone_bucket"]) == {"light", "medium", "dark"}
    assert (out / "manifest.parquet").exists()
