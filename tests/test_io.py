"""Storage helpers: atomic writes and staging folders."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from dermsight.errors import DataError
from dermsight.io import (
    _HOST,
    atomic_write_text,
    check_output_dir,
    join,
    remove_stale_staging,
    staging_dir,
)


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


def _killed_run_staging(out) -> list:
    """Run staging_dir in a child process that is SIGKILLed inside it; its leftovers."""
    code = ("import os, signal, sys\n"
            "from dermsight.io import staging_dir\n"
            "with staging_dir(sys.argv[1]) as stage:\n"
            "    (stage / 'manifest.parquet').write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(out)])
    assert proc.returncode == -signal.SIGKILL
    return [p for p in out.parent.iterdir() if p.name.endswith(".staging")]


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    left = _killed_run_staging(out)
    assert len(left) == 1 and (left[0] / "manifest.parquet").exists()
    live = tmp_path / f".out.{_HOST}-{os.getpid()}.x.staging"
    live.mkdir()  # a run of this process (alive): kept
    foreign = tmp_path / ".out.otherhost-1.abc.staging"
    foreign.mkdir()  # another machine's run, fresh: kept
    old = tmp_path / ".out.k2j4_x9a.staging"
    old.mkdir()  # an older dermsight's, untouched for two days: removed
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    other_out = tmp_path / ".outer.otherhost-1.abc.staging"
    other_out.mkdir()  # another output's: never touched
    with staging_dir(out, last="manifest.parquet") as stage:
        (stage / "manifest.parquet").write_text("new")
    assert (out / "manifest.parquet").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(
        [live.name, foreign.name, other_out.name])
    assert remove_stale_staging(out) == []


def test_output_that_is_a_file_is_a_clear_error(tmp_path):
    out = tmp_path / "out"
    out.write_text("x")
    with pytest.raises(DataError, match=r"output folder '.*out' is a file"):
        check_output_dir(out)
    with pytest.raises(DataError, match="is a file"), staging_dir(out):
        pass
    under = out / "sub" / "deeper"
    with pytest.raises(DataError, match=rf"'{under}' is under '{out}', which is a file"):
        check_output_dir(under)
    assert check_output_dir(tmp_path / "new" / "folder") == tmp_path / "new" / "folder"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
