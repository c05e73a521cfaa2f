"""Tabular metadata (age, sex, body site, symptoms, ...) → a float32 vector for the model.

:class:`MetadataEncoder` follows the scikit-learn estimator contract: ``__init__`` only stores
parameters, ``fit`` learns from the TRAIN rows and returns ``self``, learned attributes end in
``_``. No torch: serving encodes a request's metadata with the same object (``from_dict``).

Layout: each field owns a contiguous slice of the output (``field_slices_``) whose LAST column is
the field's missing indicator.

- numeric (``age``, ``diameter_mm``): ``[standardised value, missing]``; missing → ``[0, 1]``.
- categorical (``sex``, ``body_site``): one-hot over the categories seen at least
  ``min_frequency`` times in fit, then ``<other>``, then ``<missing>``. Values never seen (or too
  rare) map to ``<other>``, never an error, and are counted in ``unknown_counts_``.
- multi-label (``symptoms``, ``|``-joined): multi-hot over the items seen at least
  ``min_frequency`` times, then ``<other>`` (any other item present), then ``<missing>``.

Values are compared stripped and lower-cased. A field absent from the frame is all-missing.
Metadata dropout (training) marks whole fields missing: :meth:`MetadataEncoder.mask_fields`,
:meth:`MetadataEncoder.random_drop_mask` or ``transform(frame, drop_mask=...)``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from dermsight.manifest import METADATA_COLUMNS, split_list

OTHER = "<other>"
MISSING = "<missing>"
MULTI_LABEL_FIELDS = ("symptoms", "textures")
_DICT_KEYS = ("numeric", "categorical", "multi_label", "min_frequency", "means", "stds",
              "categories")


class MetadataEncoder(BaseEstimator):
    """Encode manifest metadata columns as float32 features with explicit missing indicators.

    Args:
        numeric: numeric columns, standardised with the fit mean / std.
        categorical: single-valued string columns, one-hot.
        multi_label: ``|``-joined list columns, multi-hot.
        min_frequency: a category / item needs this many fit rows to get its own column.

    Learned attributes (after ``fit``): ``means_``, ``stds_`` (per numeric field),
    ``categories_`` (per categorical / multi-label field, sorted), ``field_slices_``
    (field → slice), ``feature_names_``, ``dim_``, and ``unknown_counts_``: a Counter of
    ``(field, value)`` seen by ``transform`` that mapped to ``<other>`` (or, for numeric fields,
    could not be read as a number and was treated as missing). It accumulates across calls
    (per process: DataLoader workers keep their own); reset with ``reset_unknown_counts()``.
    """

    def __init__(self, *, numeric: Sequence[str] = ("age", "diameter_mm"),
                 categorical: Sequence[str] = ("sex", "body_site"),
                 multi_label: Sequence[str] = ("symptoms",), min_frequency: int = 5):
        self.numeric = numeric
        self.categorical = categorical
        self.multi_label = multi_label
        self.min_frequency = min_frequency

    @classmethod
    def for_fields(cls, fields: Sequence[str], *, min_frequency: int = 5) -> MetadataEncoder:
        """Encoder for manifest column names, each typed by the manifest schema.

        Numeric dtypes (``age``, ``diameter_mm``, ``fitzpatrick``, ...) → numeric; ``symptoms`` and
        ``textures`` → multi-label; everything else → categorical.
        """
        numeric, categorical, multi = [], [], []
        for f in fields:
            dtype = METADATA_COLUMNS.get(f, ("string", ""))[0]
            if f in MULTI_LABEL_FIELDS:
                multi.append(f)
            elif dtype != "string":
                numeric.append(f)
            else:
                categorical.append(f)
        return cls(numeric=tuple(numeric), categorical=tuple(categorical),
                   multi_label=tuple(multi), min_frequency=min_frequency)

    # ---- parameters -------------------------------------------------------------------------
    @property
    def fields(self) -> tuple[str, ...]:
        """All fields in output order: numeric, categorical, multi-label."""
        return tuple(self.numeric) + tuple(self.categorical) + tuple(self.multi_label)

    def _check_params(self) -> None:
        for name in ("numeric", "categorical", "multi_label"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(f, str) for f in value):
                raise ValueError(f"MetadataEncoder: {name} must be a sequence of column names, "
                                 f"got {value!r}")
        counts = Counter(self.fields)
        repeated = sorted(f for f, c in counts.items() if c > 1)
        if repeated:
            raise ValueError(f"MetadataEncoder: field(s) {repeated} are listed more than once")
        if not isinstance(self.min_frequency, int | np.integer) or self.min_frequency < 1:
            raise ValueError(f"MetadataEncoder: min_frequency must be an int >= 1, "
                             f"got {self.min_frequency!r}")

    # ---- fit / transform --------------------------------------------------------------------
    def fit(self, frame, y=None) -> MetadataEncoder:
        """Learn means / stds and frequent categories from ``frame`` (the TRAIN rows)."""
        self._check_params()
        frame = _as_frame(frame)
        self.means_, self.stds_, self.categories_ = {}, {}, {}
        for f in self.numeric:
            vals, _ = _numeric(frame, f)
            vals = vals[~np.isnan(vals)]
            mean = float(vals.mean()) if len(vals) else 0.0
            std = float(vals.std()) if len(vals) > 1 else 0.0
            self.means_[f], self.stds_[f] = mean, std if std > 1e-8 else 1.0
        for f in self.categorical:
            counts = Counter(v for v in _categorical(frame, f) if v is not None)
            self.categories_[f] = sorted(v for v, c in counts.items() if c >= self.min_frequency)
        for f in self.multi_label:
            counts = Counter(item for items in _multi(frame, f) for item in set(items or ()))
            self.categories_[f] = sorted(v for v, c in counts.items() if c >= self.min_frequency)
        self._build_layout()
        return self

    def transform(self, frame, *, drop_mask: np.ndarray | None = None) -> np.ndarray:
        """Encode rows → float32 ``(n, dim_)``.

        Args:
            frame: DataFrame, one row as a dict, or a list of dicts (serving).
            drop_mask: optional bool ``(n, len(fields))`` (or ``(len(fields),)`` for all rows):
                True marks that field missing for that row (metadata dropout).
        """
        check_is_fitted(self, "dim_")
        frame = _as_frame(frame)
        n = len(frame)
        out = np.zeros((n, self.dim_), np.float32)
        for f in self.numeric:
            s = self.field_slices_[f]
            vals, bad = _numeric(frame, f)
            for v in bad:
                self.unknown_counts_[(f, v)] += 1
            miss = np.isnan(vals)
            out[:, s.start] = np.where(miss, 0.0, (vals - self.means_[f]) / self.stds_[f])
            out[:, s.stop - 1] = miss
        for f in self.categorical:
            s, index = self.field_slices_[f], self._index[f]
            other = s.stop - 2
            for r, v in enumerate(_categorical(frame, f)):
                if v is None:
                    out[r, s.stop - 1] = 1.0
                elif v in index:
                    out[r, s.start + index[v]] = 1.0
                else:
                    out[r, other] = 1.0
                    self.unknown_counts_[(f, v)] += 1
        for f in self.multi_label:
            s, index = self.field_slices_[f], self._index[f]
            other = s.stop - 2
            for r, items in enumerate(_multi(frame, f)):
                if not items:
                    out[r, s.stop - 1] = 1.0
                    continue
                for item in items:
                    if item in index:
                        out[r, s.start + index[item]] = 1.0
                    else:
                        out[r, other] = 1.0
                        self.unknown_counts_[(f, item)] += 1
        if drop_mask is not None:
            out = self.mask_fields(out, drop_mask)
        return out

    def fit_transform(self, frame, y=None, **kwargs) -> np.ndarray:
        return self.fit(frame).transform(frame, **kwargs)

    # ---- metadata dropout -------------------------------------------------------------------
    def mask_fields(self, features: np.ndarray, drop_mask: np.ndarray) -> np.ndarray:
        """Return a copy of encoded ``features`` with the masked fields set to missing.

        ``drop_mask`` is bool ``(n, len(fields))`` or ``(len(fields),)``; a masked field's slice is
        zeroed and its missing indicator set to 1, exactly as if the value were absent.
        """
        check_is_fitted(self, "dim_")
        x = np.array(features, np.float32, copy=True, ndmin=2)
        mask = np.asarray(drop_mask, bool)
        n_fields = len(self.fields)
        if mask.ndim == 1:
            mask = np.broadcast_to(mask, (len(x), n_fields))
        if mask.shape != (len(x), n_fields) or x.shape[1] != self.dim_:
            raise ValueError(f"drop_mask must be ({len(x)}, {n_fields}) for features "
                             f"({len(x)}, {self.dim_}), got {mask.shape} for {x.shape}")
        for j, f in enumerate(self.fields):
            rows = mask[:, j]
            if rows.any():
                s = self.field_slices_[f]
                x[rows, s] = 0.0
                x[rows, s.stop - 1] = 1.0
        return x.reshape(np.shape(features)) if np.ndim(features) == 1 else x

    def random_drop_mask(self, n_rows: int, p: float, rng: np.random.Generator) -> np.ndarray:
        """Bool ``(n_rows, len(fields))``: each field of each row dropped with probability p."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"metadata dropout probability must be in [0, 1], got {p}")
        return rng.random((n_rows, len(self.fields))) < p

    def reset_unknown_counts(self) -> None:
        self.unknown_counts_ = Counter()

    # ---- names / layout ---------------------------------------------------------------------
    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "dim_")
        return np.asarray(self.feature_names_, dtype=object)

    def _build_layout(self) -> None:
        names: list[str] = []
        slices: dict[str, slice] = {}
        self._index = {}
        for f in self.fields:
            start = len(names)
            if f in self.numeric:
                names.append(f)
            else:
                cats = self.categories_[f]
                self._index[f] = {c: i for i, c in enumerate(cats)}
                names += [f"{f}={c}" for c in cats] + [f"{f}={OTHER}"]
            names.append(f"{f}={MISSING}")
            slices[f] = slice(start, len(names))
        self.field_slices_ = slices
        self.feature_names_ = names
        self.dim_ = len(names)
        self.unknown_counts_ = Counter()

    # ---- storage ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable parameters and learned state (for the exported model)."""
        check_is_fitted(self, "dim_")
        return {
            "numeric": list(self.numeric), "categorical": list(self.categorical),
            "multi_label": list(self.multi_label), "min_frequency": int(self.min_frequency),
            "means": {f: float(v) for f, v in self.means_.items()},
            "stds": {f: float(v) for f, v in self.stds_.items()},
            "categories": {f: list(v) for f, v in self.categories_.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> MetadataEncoder:
        """A fitted encoder from :meth:`to_dict`'s output. Raises ValueError on bad keys."""
        unknown = sorted(set(data) - set(_DICT_KEYS))
        missing = sorted(set(_DICT_KEYS) - set(data))
        if unknown or missing:
            raise ValueError(f"MetadataEncoder.from_dict: unknown key(s) {unknown}, "
                             f"missing key(s) {missing}")
        enc = cls(numeric=tuple(data["numeric"]), categorical=tuple(data["categorical"]),
                  multi_label=tuple(data["multi_label"]), min_frequency=int(data["min_frequency"]))
        enc._check_params()
        enc.means_ = {f: float(data["means"][f]) for f in enc.numeric}
        enc.stds_ = {f: float(data["stds"][f]) for f in enc.numeric}
        enc.categories_ = {f: [str(c) for c in data["categories"][f]]
                           for f in tuple(enc.categorical) + tuple(enc.multi_label)}
        enc._build_layout()
        return enc


# ---- value readers --------------------------------------------------------------------------
def _as_frame(frame) -> pd.DataFrame:
    if isinstance(frame, pd.DataFrame):
        return frame
    if isinstance(frame, Mapping):
        return pd.DataFrame([dict(frame)])
    return pd.DataFrame(list(frame))


def _is_missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _norm(v) -> str | None:
    if _is_missing(v):
        return None
    text = str(v).strip().lower()
    return text or None


def _numeric(frame: pd.DataFrame, field: str) -> tuple[np.ndarray, list]:
    """Float64 values (NaN = missing) and the raw values that could not be read as numbers."""
    if field not in frame:
        return np.full(len(frame), np.nan), []
    raw = frame[field]
    num = np.array(pd.to_numeric(raw, errors="coerce").astype("float64"), np.float64, copy=True)
    num[~np.isfinite(num)] = np.nan
    present = np.array([_norm(v) is not None for v in raw.tolist()], bool)
    bad = [raw.iloc[i] for i in np.flatnonzero(present & np.isnan(num))]
    return num, [str(b) for b in bad]


def _categorical(frame: pd.DataFrame, field: str) -> list[str | None]:
    if field not in frame:
        return [None] * len(frame)
    return [_norm(v) for v in frame[field].tolist()]


def _multi(frame: pd.DataFrame, field: str) -> list[list[str]]:
    if field not in frame:
        return [[] for _ in range(len(frame))]
    out = []
    for v in frame[field].tolist():
        items = [] if _is_missing(v) else split_list(str(v))
        out.append(sorted({t for t in (_norm(i) for i in items) if t}))
    return out
