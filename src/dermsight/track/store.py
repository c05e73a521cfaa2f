"""Content-addressed image store on a local folder or any fsspec URL.

Only a re-encoded copy of the decoded pixels is ever stored (JPEG, quality 95, written by Pillow
without EXIF, GPS, maker notes or ICC profile): the upload's own bytes never reach the disk.
A file lives at ``<root>/<sha[:2]>/<sha[2:4]>/<sha>.jpg`` where ``sha`` is the SHA-256 of its
bytes, so identical images are stored once. Writes go to a temporary name in the same folder
and are renamed into place, so a reader never sees half a file. On a local folder, files are
0600 and folders 0700 (readable by the server's user only). Which files may exist is
decided by the database: :meth:`ImageStore.reconcile` removes files no row points to (left by a
crash between the file write and the commit) and reports rows whose file is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
from PIL import Image

from dermsight import io as dio
from dermsight.errors import DataError

JPEG_QUALITY = 95
#: Modes of what the tracker creates on a local disk: readable by the server's user only.
DIR_MODE = 0o700
FILE_MODE = 0o600
SUFFIX = ".jpg"
_TMP_MARK = ".tmp-"


def pixel_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and their shape (the same photo re-saved hashes alike)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h = hashlib.sha256(f"{rgb.shape}".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def encode_clean(rgb: np.ndarray) -> bytes:
    """JPEG bytes of an RGB uint8 image, with no metadata at all (deterministic)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"expected an RGB uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return buf.getvalue()


def private_dirs(path: str | Path) -> None:
    """Create folder ``path`` and its missing parents with mode 0700 (existing ones are left)."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another writer meanwhile
            folder.mkdir(mode=DIR_MODE)


@dataclass
class ReconcileReport:
    removed_orphans: list[str]
    removed_temporaries: list[str]
    missing_files: list[str]


class ImageStore:
    """Image files under ``root`` (a local folder or an fsspec URL such as ``memory://x``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self.remote = dio.is_remote(self.root)
        if self.remote:
            self.fs, self._base = fsspec.core.url_to_fs(self.root)
        else:
            private_dirs(self.root)

    # ---- addressing ------------------------------------------------------------------------
    def uri_for(self, sha: str) -> str:
        return dio.join(self.root, sha[:2], sha[2:4], sha + SUFFIX)

    def _path(self, uri: str) -> str:
        return fsspec.core.url_to_fs(uri)[1] if self.remote else uri

    # ---- I/O -------------------------------------------------------------------------------
    def put(self, data: bytes) -> tuple[str, str, bool]:
        """Store ``data`` under its hash. Returns ``(uri, sha256, created)``.

        ``created`` is False when an identical file was already there (nothing written).
        """
        sha = hashlib.sha256(data).hexdigest()
        uri = self.uri_for(sha)
        if self.exists(uri):
            return uri, sha, False
        if not self.remote:
            private_dirs(Path(uri).parent)
            dio.atomic_write_bytes(uri, data)  # in a 0700 folder: private before the chmod
            os.chmod(uri, FILE_MODE)
            return uri, sha, True
        path = self._path(uri)
        parent = path.rsplit("/", 1)[0]
        tmp = f"{parent}/{_TMP_MARK}{uuid.uuid4().hex}{SUFFIX}"
        with contextlib.suppress(Exception):
            self.fs.makedirs(parent, exist_ok=True)
        try:
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise
        return uri, sha, True

    def exists(self, uri: str) -> bool:
        if not self.remote:
            return Path(uri).is_file()
        return bool(self.fs.exists(self._path(uri)))

    def read(self, uri: str) -> bytes:
        try:
            return dio.read_bytes(uri)
        except FileNotFoundError:
            raise DataError(f"stored image '{uri}' is missing") from None

    def delete(self, uri: str) -> None:
        if not self.remote:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(uri)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(uri))

    def list(self) -> list[tuple[str, float]]:
        """Every file under the root as ``(uri, modified time, 0 when unknown)``."""
        out: list[tuple[str, float]] = []
        if not self.remote:
            for p in Path(self.root).rglob("*"):
                if p.is_file():
                    out.append((str(p), p.stat().st_mtime))
            return sorted(out)
        base = self._base.rstrip("/")
        for path in self.fs.find(base):
            rel = path[len(base):].lstrip("/") if path.startswith(base) else path
            out.append((dio.join(self.root, rel), 0.0))
        return sorted(out)

    def reconcile(self, referenced: set[str], *, grace_s: float = 0.0,
                  dry_run: bool = False) -> ReconcileReport:
        """Remove files no row references (and stale temporaries); list referenced but missing.

        ``referenced`` holds the ``storage_uri`` of every row. Files younger than ``grace_s``
        seconds are left alone (pass a grace when other processes may be uploading).
        """
        now = time.time()
        orphans, temps = [], []
        present = set()
        for uri, mtime in self.list():
            if mtime and now - mtime < grace_s:
                present.add(uri)
                continue
            name = uri.rsplit("/", 1)[-1]
            if name.startswith(".") or name.startswith(_TMP_MARK):
                temps.append(uri)
            elif uri not in referenced:
                orphans.append(uri)
            else:
                present.add(uri)
        if not dry_run:
            for uri in orphans + temps:
                self.delete(uri)
        missing = sorted(u for u in referenced if u not in present and not self.exists(u))
        return ReconcileReport(orphans, temps, missing)
