"""A folder of images sorted into one sub-folder per class (the common Kaggle layout).

Layout::

    root/<class>/**/<name>.{jpg,jpeg,png,bmp,webp}                    (default)
    root/<split>/<class>/**/<name>.{...}                              (split_dirs: true)

The class is the first folder level under ``root`` (or under ``root/<split>``); deeper folders are
allowed and ignored for the label. With ``split_dirs`` the split folders ``train``, ``val``
(also ``valid``, ``validation``, ``dev``) and ``test`` are kept as the manifest split; any other
folder at that level is an error. Image id = the path relative to ``root`` without its extension
(with it, when two files differ only by extension); group = case = image id. Files directly under
``root`` (no class) and hidden files or folders are skipped and listed in ``issues``.

Listing goes through ``io.list_files``, so any listable fsspec store (gs://, s3://, memory://,
HTTP servers that serve directory index pages) works as a root.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import fsspec
import pandas as pd

from dermsight.errors import DataError
from dermsight.io import is_remote, list_files
from dermsight.sources.base import Source, SourceOptions, register_source

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "dev": "val", "test": "test", "testing": "test"}
_SKIP_DIRS = {"__MACOSX"}


class FolderOptions(SourceOptions):
    #: read ``root/<split>/<class>/...`` and keep train/val/test as the manifest split
    split_dirs: bool = False
    #: file name endings counted as images (case-insensitive)
    extensions: tuple[str, ...] = EXTENSIONS


@register_source
class Folder(Source):
    name = "folder"
    Options = FolderOptions

    def read(self) -> pd.DataFrame:
        try:
            files = list_files(self.root, tuple(self.options.extensions))
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.name}: cannot list '{self.root}': {exc}") from None
        depth = 2 if self.options.split_dirs else 1
        records = []
        for uri in files:
            rel = _relative(self.root, uri)
            parts = rel.parts
            if any(p.startswith(".") or p in _SKIP_DIRS for p in parts):
                self.issues.append({"path": uri, "reason": "hidden file or folder (skipped)"})
                continue
            if len(parts) <= depth:
                self.issues.append({"path": uri, "reason": "image outside a class folder "
                                    "(skipped)"})
                continue
            split = None
            if self.options.split_dirs:
                split = SPLIT_NAMES.get(parts[0].lower())
                if split is None:
                    raise DataError(
                        f"{self.name}: folder '{parts[0]}' under '{self.root}' is not a split "
                        f"folder (expected one of {sorted(SPLIT_NAMES)}) although split_dirs "
                        "is set")
            records.append({"uri": uri, "rel": rel, "label": parts[depth - 1], "split": split})
        stems = [r["rel"].with_suffix("").as_posix() for r in records]
        counts = pd.Series(stems).value_counts() if stems else pd.Series(dtype=int)
        ids = [s if counts[s] == 1 else r["rel"].as_posix() for s, r in zip(stems, records)]
        out = pd.DataFrame({
            "image_id": ids,
            "image_uri": [r["uri"] for r in records],
            "case_id": ids,
            "group_id": ids,
            "label": [r["label"] for r in records],
        })
        if self.options.split_dirs:
            out["split"] = [r["split"] for r in records]
        return out


def _relative(root: str, uri: str) -> PurePosixPath:
    """``uri`` relative to ``root`` as a posix path (local paths and URLs alike)."""
    if not is_remote(root):
        return PurePosixPath(Path(uri).relative_to(Path(root)).as_posix())
    base = _strip(root)
    target = _strip(uri)
    if not target.startswith(base + "/"):
        raise DataError(f"folder: listed file '{uri}' is not under '{root}'")
    return PurePosixPath(target[len(base) + 1:])


def _strip(uri: str) -> str:
    """Protocol-free, slash-normalised path for comparing an fsspec listing with its root."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs._strip_protocol(path).rstrip("/") if hasattr(fs, "_strip_protocol") else path
