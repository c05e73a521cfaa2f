"""Fitzpatrick17k clinical photographs (Groh et al. 2021) with Fitzpatrick skin type labels.

Layout::

    root/metadata.csv   md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,
                        three_partition_label,qc,ddi_scale
    root/images/<md5hash>.jpg

``fitzpatrick_scale`` (1-6, -1 for unknown) becomes ``fitzpatrick``. There is no patient id, so
group = case = image id; ``prepare`` later merges near-duplicate images into one group.
``label_level`` picks the label: the fine ``label`` (open set of condition names), the
``nine`` partition or the ``three`` partition (both closed sets, checked). The other levels,
``fitzpatrick_centaur``, ``qc`` and ``ddi_scale`` go to ``extra``.
"""

from __future__ import annotations

import json
from typing import Literal

import pandas as pd

from dermsight.errors import DataError
from dermsight.io import join, read_csv
from dermsight.sources.base import Source, SourceOptions, register_source

REQUIRED = ["md5hash", "fitzpatrick_scale", "label", "nine_partition_label",
            "three_partition_label"]
OPTIONAL = ["fitzpatrick_centaur", "qc", "ddi_scale"]
NINE = ("benign-dermal", "benign-epidermal", "benign-melanocyte", "genodermatoses",
        "inflammatory", "malignant-cutaneous-lymphoma", "malignant-dermal",
        "malignant-epidermal", "malignant-melanoma")
THREE = ("benign", "malignant", "non-neoplastic")
LEVEL_COLUMN = {"label": "label", "nine": "nine_partition_label",
                "three": "three_partition_label"}
CLOSED_SETS = {"nine_partition_label": NINE, "three_partition_label": THREE}


class Fitz17kOptions(SourceOptions):
    #: which label column becomes ``label``: fine condition name, nine- or three-way partition
    label_level: Literal["label", "nine", "three"] = "label"


@register_source
class Fitzpatrick17k(Source):
    name = "fitzpatrick17k"
    photo_type = "clinical"
    Options = Fitz17kOptions

    def read(self) -> pd.DataFrame:
        table = join(self.root, "metadata.csv")
        df = read_csv(table, source=self.name, required=REQUIRED, dtype=str)
        for col in REQUIRED + OPTIONAL:
            if col in df.columns:
                df[col] = df[col].str.strip()
        if df["md5hash"].isna().any():
            row = int(df["md5hash"].isna().to_numpy().nonzero()[0][0])
            raise DataError(f"{self.name}: '{table}' column 'md5hash' is empty in row {row}")
        dup = df["md5hash"][df["md5hash"].duplicated()]
        if len(dup):
            raise DataError(f"{self.name}: '{table}' column 'md5hash' repeats {dup.iloc[0]!r}")
        label_col = LEVEL_COLUMN[self.options.label_level]
        for col in REQUIRED[2:]:
            if df[col].isna().any():
                row = int(df[col].isna().to_numpy().nonzero()[0][0])
                raise DataError(f"{self.name}: '{table}' column '{col}' is empty in row {row}")
        for col, allowed in CLOSED_SETS.items():
            unknown = sorted(set(df[col]) - set(allowed))
            if unknown:
                raise DataError(f"{self.name}: '{table}' column '{col}' has unknown label(s) "
                                f"{unknown}; expected {list(allowed)}")
        fitz = _int_or_missing(df["fitzpatrick_scale"], table, "fitzpatrick_scale", self.name)
        bad = fitz.dropna()[(fitz.dropna() < 1) | (fitz.dropna() > 6)]
        if len(bad):
            raise DataError(f"{self.name}: '{table}' column 'fitzpatrick_scale' has {bad.iloc[0]}"
                            " outside 1-6 (-1 means unknown)")
        ids = df["md5hash"]
        out = pd.DataFrame({
            "image_id": ids,
            "image_uri": [join(self.root, "images", f"{i}.jpg") for i in ids],
            "case_id": ids,
            "group_id": ids,
            "label": df[label_col],
            "fitzpatrick": fitz,
        })
        centaur = (_int_or_missing(df["fitzpatrick_centaur"], table, "fitzpatrick_centaur",
                                   self.name) if "fitzpatrick_centaur" in df else None)
        ddi = (_int_or_missing(df["ddi_scale"], table, "ddi_scale", self.name)
               if "ddi_scale" in df else None)
        extras = []
        for i in range(len(df)):
            extra = {col: _str(df[col].iloc[i]) for col in LEVEL_COLUMN.values()
                     if col != label_col}
            if centaur is not None:
                extra["fitzpatrick_centaur"] = _int(centaur.iloc[i])
            if "qc" in df:
                extra["qc"] = _str(df["qc"].iloc[i])
            if ddi is not None:
                extra["ddi_scale"] = _int(ddi.iloc[i])
            extras.append(json.dumps(extra))
        out["extra"] = extras
        return out


def _int_or_missing(series: pd.Series, table: str, column: str, source: str) -> pd.Series:
    """Integer column where -1 (or blank) means unknown."""
    num = pd.to_numeric(series, errors="coerce")
    bad = series.notna() & num.isna()
    if bad.any():
        raise DataError(f"{source}: '{table}' column '{column}' has non-numeric value "
                        f"{series[bad].iloc[0]!r}")
    return num.where(num != -1).astype("Int64")


def _int(v):
    return None if pd.isna(v) else int(v)


def _str(v):
    return None if pd.isna(v) else str(v)
