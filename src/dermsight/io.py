"""Storage helpers: every dataset root is a local path or an fsspec URL (gs://, s3://, https://).

Sources and ``prepare`` read only through these functions, so remote roots behave like local ones.
Outputs are written atomically: to a temporary name in the same folder, then renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import fsspec
import pandas as pd

from dermsight.errors import DataError

_UMASK = os.umask(0o022)
os.umask(_UMASK)

_REMOTE_PREFIXES = ("http://", "https://", "gs://", "gcs://", "s3://", "memory://", "file://")


def is_remote(uri: str) -> bool:
    return str(uri).startswith(_REMOTE_PREFIXES) and not str(uri).startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join path parts onto a local path or URL root with '/'."""
    root = str(root)
    if not is_remote(root):
        return str(Path(root, *parts))
    out = root.rstrip("/")
    for part in parts:
        out = out + "/" + str(part).strip("/")
    return out


def exists(uri: str) -> bool:
    if not is_remote(uri):
        return Path(uri).exists()
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        return fs.exists(path)
    except (OSError, ValueError):
        return False


def read_bytes(uri: str) -> bytes:
    """Read a whole file. Raises FileNotFoundError / OSError like ``open`` does."""
    if not is_remote(uri):
        with open(uri, "rb") as fh:
            return fh.read()
    with fsspec.open(uri, "rb") as fh:
        return fh.read()


def check_root(root: str, *, source: str) -> None:
    """Fail early and clearly when a dataset root does not exist."""
    if is_remote(root):
        return  # HTTP roots may not be listable; the first file read reports the problem
    if not Path(root).exists():
        raise DataError(f"{source}: dataset root '{root}' does not exist")
    if not Path(root).is_dir():
        raise DataError(f"{source}: dataset root '{root}' is not a directory")


def read_csv(uri: str, *, source: str, required: list[str] | None = None, **kwargs) -> pd.DataFrame:
    """Read a CSV from disk or URL and check that ``required`` columns are present.

    Errors name the file and the missing columns.
    """
    try:
        data = read_bytes(uri)
    except FileNotFoundError:
        raise DataError(f"{source}: table '{uri}' not found") from None
    except OSError as exc:
        raise DataError(f"{source}: cannot read table '{uri}': {exc}") from None
    try:
        df = pd.read_csv(io.BytesIO(data), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: cannot parse table '{uri}': {exc}") from None
    if required:
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise DataError(
                f"{source}: table '{uri}' lacks column(s) {missing}; it has {list(df.columns)}"
            )
    return df


def project_folder(relative: str, *, env_var: str,
                   is_valid: Callable[[Path], bool]) -> Path:
    """Where a committed folder such as ``models/ham10000`` lives: ``$env_var`` when set; else
    ``relative`` in the source checkout this package runs from (editable / development
    installs: found from any working folder) when ``is_valid`` says it is there; else
    ``relative`` under the current folder."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / relative
    if is_valid(repo):
        return repo
    return Path.cwd() / relative


def list_files(root: str, suffixes: tuple[str, ...]) -> list[str]:
    """Recursively list files under ``root`` whose lower-cased name ends with one of ``suffixes``.

    Works for local folders and listable fsspec stores (gs://, s3://, memory://).
    """
    suffixes = tuple(s.lower() for s in suffixes)
    if not is_remote(root):
        base = Path(root)
        return sorted(
            str(p) for p in base.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes)
        )
    fs, path = fsspec.core.url_to_fs(root)
    protocol = root.split("://", 1)[0]
    found = fs.find(path)
    out = []
    for p in found:
        if p.lower().endswith(suffixes):
            out.append(p if "://" in p else f"{protocol}://{p.lstrip('/')}")
    return sorted(out)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


#: a staging folder of a run on another machine (or named before the owner was) is abandoned
#: when untouched for this long
STALE_STAGING_S = 24 * 3600
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def check_output_dir(out: str | Path) -> Path:
    """Fail early and clearly when ``out`` cannot be a folder (it, or a folder above it, is a
    file), before any work is done for it."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                what = "is a file" if p == out else f"is under '{p}', which is a file"
                raise DataError(f"output folder '{out}' {what}: give a folder path")
            break
    return out


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists and belongs to someone else
        return True
    return True


def remove_stale_staging(out: str | Path) -> list[Path]:
    """Remove the staging folders of ``out`` left by runs that were killed (SIGKILL, power
    loss: :func:`staging_dir` cleans up after every other failure itself).

    A staging folder is named ``.<out>.<host>-<pid>.<random>.staging``: it is abandoned when
    that process is gone on this host; one of another host, or without a process in its name
    (older dermsight), when untouched for :data:`STALE_STAGING_S`. Returns those removed.
    """
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(?:([A-Za-z0-9-]+)-(\d+)\.)?"
                         r"[A-Za-z0-9_]+\.staging$")
    removed = []
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        m = pattern.match(path.name)
        if m is None or not path.is_dir() or path.is_symlink():
            continue
        host, pid = m.group(1), m.group(2)
        if host == _HOST:
            stale = not _process_alive(int(pid))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > STALE_STAGING_S
            except OSError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def staging_dir(out: str | Path, *, last: str | None = None) -> Iterator[Path]:
    """Build outputs in a hidden sibling folder and move them into ``out`` only on success.

    On failure ``out`` is left exactly as it was and the staging folder is removed; one left by
    a killed run is removed by the next (:func:`remove_stale_staging`). On success each
    top-level entry of the staging folder replaces its namesake in ``out`` (other files in
    ``out`` are kept); ``last`` names the entry moved last, so its presence means the rest is
    complete. Raises DataError when ``out`` cannot be a folder (:func:`check_output_dir`).
    """
    out = check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.{_HOST}-{os.getpid()}.",
                                  suffix=".staging", dir=out.parent))
    try:
        yield stage
        out.mkdir(parents=True, exist_ok=True)
        entries = sorted(stage.iterdir(), key=lambda p: p.name == last)
        for entry in entries:
            dest = out / entry.name
            if dest.is_dir() and not dest.is_symlink():
                old = out / f".{entry.name}.old-{os.getpid()}"
                os.replace(dest, old)
                os.replace(entry, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
