"""The set-up the Makefile targets install: serving alone for `make quickstart`, everything for
training, export and the tests."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _installs(target: str, venv: Path) -> list[str]:
    """The `pip install -e` lines `make TARGET` would run into a missing virtual env."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line and " -e " in line]


def test_quickstart_installs_only_what_serving_needs(tmp_path):
    assert [line.split(" -e ")[1] for line in _installs("quickstart", tmp_path / "v")] == [
        '".[serve]"']


@pytest.mark.parametrize("target", ["setup", "test", "demo-train", "lint"])
def test_training_and_tests_keep_their_extras(tmp_path, target):
    assert [line.split(" -e ")[1] for line in _installs(target, tmp_path / "v")] == [
        '".[train,export,serve,dev]"']
