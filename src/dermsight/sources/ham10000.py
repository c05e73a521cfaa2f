"""HAM10000 dermoscopy (Tschandl et al. 2018), as laid out in the DermaMNIST-indexed release.

Layout::

    root/metadata.csv   lesion_id,image_id,dx,dx_type,age,sex,localization[,dermamnist_split,...]
    root/images/<image_id>.jpg
    root/masks/<image_id>_segmentation.png     (optional)

Group = ``lesion_id`` (several images of one lesion never straddle splits). ``dx_type`` says how
the diagnosis was confirmed and so leaks the label: it is kept in ``extra`` and must never be
used as a feature.
"""

from __future__ import annotations

import json

import pandas as pd

from dermsight.errors import DataError
from dermsight.io import exists, join, read_csv
from dermsight.sources.base import Source, SourceOptions, register_source

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
REQUIRED = ["lesion_id", "image_id", "dx", "age", "sex", "localization"]


class HamOptions(SourceOptions):
    #: keep the ``dermamnist_split`` column (train/val/test) as the manifest split
    official_split: bool = False
    #: look for ``masks/<id>_segmentation.png`` and fill ``mask_uri``
    masks: bool = True


@register_source
class Ham10000(Source):
    name = "ham10000"
    photo_type = "dermoscopy"
    Options = HamOptions

    def read(self) -> pd.DataFrame:
        table = join(self.root, "metadata.csv")
        df = read_csv(table, source=self.name, required=REQUIRED,
                      dtype={"lesion_id": str, "image_id": str, "dx": str})
        unknown = sorted(set(df["dx"].dropna()) - set(CLASSES))
        if unknown or df["dx"].isna().any():
            raise DataError(
                f"{self.name}: '{table}' column 'dx' has unknown label(s) {unknown or ['<empty>']};"
                f" expected {list(CLASSES)}"
            )
        sex = df["sex"].astype("string").str.lower()
        site = df["localization"].astype("string").str.lower().str.replace(" ", "_")
        out = pd.DataFrame({
            "image_id": df["image_id"],
            "image_uri": [join(self.root, "images", f"{i}.jpg") for i in df["image_id"]],
            "case_id": df["lesion_id"],
            "group_id": df["lesion_id"],
            "label": df["dx"],
            "age": pd.to_numeric(df["age"], errors="coerce"),
            "sex": sex.where(sex.isin(["male", "female"])),
            "body_site": site.where(site != "unknown"),
        })
        extra_cols = [c for c in ("dx_type", "dermamnist_index") if c in df.columns]
        out["extra"] = [json.dumps({c: _plain(v) for c, v in zip(extra_cols, row)})
                        for row in df[extra_cols].itertuples(index=False)]
        if self.options.official_split:
            if "dermamnist_split" not in df.columns:
                raise DataError(f"{self.name}: official_split asked for, but '{table}' has no "
                                "column 'dermamnist_split'")
            out["split"] = df["dermamnist_split"].astype("string").str.lower()
        if self.options.masks and exists(join(self.root, "masks")):
            out["mask_uri"] = [join(self.root, "masks", f"{i}_segmentation.png")
                               for i in df["image_id"]]
        return out


def _plain(v):
    if pd.isna(v):
        return None
    return v.item() if hasattr(v, "item") else v
