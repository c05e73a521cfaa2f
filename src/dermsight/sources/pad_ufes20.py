"""PAD-UFES-20 smartphone photos of skin lesions (Pacheco et al. 2020).

Layout::

    root/metadata.csv   26 columns: patient_id,lesion_id,smoke,drink,background_father,
                        background_mother,age,pesticide,gender,skin_cancer_history,cancer_history,
                        has_piped_water,has_sewage_system,fitspatrick,region,diameter_1,diameter_2,
                        diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed
    root/images/<img_id>          (img_id carries its extension, e.g. PAT_46_881_939.png)

Group = ``patient_id``, case = ``lesion_id``, label = ``diagnostic`` (ACK, BCC, MEL, NEV, SCC,
SEK). ``fitspatrick`` (sic) becomes ``fitzpatrick``; ``diameter_mm`` is the larger of the two
diameters. Symptom columns hold "True"/"False"/"UNK"/blank; the ones that are "True" become
``symptoms`` (``hurt`` is spelled ``pain`` there, as in the other sources), the unknown ones are
listed in ``extra["symptoms_unknown"]``. Everything else (smoking, drinking, ancestry, cancer
history, water/sewage, pesticide, ``biopsed``) goes to ``extra`` with "UNK"/blank as null.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pandas as pd

from dermsight.errors import DataError
from dermsight.io import join, read_csv
from dermsight.sources.base import Source, SourceOptions, register_source

CLASSES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
#: column -> symptom name in the manifest
SYMPTOMS = {"itch": "itch", "grew": "grew", "hurt": "pain", "changed": "changed",
            "bleed": "bleed", "elevation": "elevation"}
REQUIRED = ["patient_id", "lesion_id", "img_id", "diagnostic", "age", "gender", "fitspatrick",
            "region", "diameter_1", "diameter_2", *SYMPTOMS]
BOOL_EXTRAS = ["smoke", "drink", "pesticide", "skin_cancer_history", "cancer_history",
               "has_piped_water", "has_sewage_system", "biopsed"]
TEXT_EXTRAS = ["background_father", "background_mother"]
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_UNKNOWN = {"", "unk", "nan", "none"}


class PadOptions(SourceOptions):
    """PAD-UFES-20 has no options."""


@register_source
class PadUfes20(Source):
    name = "pad-ufes-20"
    photo_type = "clinical"
    Options = PadOptions

    def read(self) -> pd.DataFrame:
        table = join(self.root, "metadata.csv")
        df = read_csv(table, source=self.name, required=REQUIRED, dtype=str,
                      keep_default_na=False)
        df = df.apply(lambda s: s.str.strip())
        for col in ("patient_id", "lesion_id", "img_id"):
            empty = df[col].eq("")
            if empty.any():
                raise DataError(f"{self.name}: '{table}' column '{col}' is empty in row "
                                f"{int(empty.to_numpy().nonzero()[0][0])}")
        unknown = sorted(set(df["diagnostic"]) - set(CLASSES))
        if unknown:
            raise DataError(f"{self.name}: '{table}' column 'diagnostic' has unknown label(s) "
                            f"{[u or '<empty>' for u in unknown]}; expected {list(CLASSES)}")
        dup = df["img_id"][df["img_id"].duplicated()]
        if len(dup):
            raise DataError(f"{self.name}: '{table}' column 'img_id' repeats {dup.iloc[0]!r}")

        age = _number(df["age"], table, "age", self.name)
        fitz = _number(df["fitspatrick"], table, "fitspatrick", self.name)
        d1 = _number(df["diameter_1"], table, "diameter_1", self.name)
        d2 = _number(df["diameter_2"], table, "diameter_2", self.name)
        sex = df["gender"].str.lower()
        site = df["region"].str.lower().str.replace(" ", "_")
        flags = {col: [_bool(v, table, col, self.name) for v in df[col]] for col in SYMPTOMS}
        symptoms, extras = [], []
        for i in range(len(df)):
            symptoms.append("|".join(name for col, name in SYMPTOMS.items() if flags[col][i])
                            or None)
            extra = {"symptoms_unknown": [SYMPTOMS[c] for c in SYMPTOMS if flags[c][i] is None]}
            for col in BOOL_EXTRAS:
                if col in df.columns:
                    extra[col] = _bool(df[col].iloc[i], table, col, self.name)
            for col in TEXT_EXTRAS:
                if col in df.columns:
                    v = df[col].iloc[i]
                    extra[col] = None if v.lower() in _UNKNOWN else v
            extra["diameter_1"] = None if pd.isna(d1.iloc[i]) else float(d1.iloc[i])
            extra["diameter_2"] = None if pd.isna(d2.iloc[i]) else float(d2.iloc[i])
            extras.append(json.dumps(extra))
        out = pd.DataFrame({
            "image_id": [PurePosixPath(i).stem for i in df["img_id"]],
            "image_uri": [join(self.root, "images", i) for i in df["img_id"]],
            "case_id": df["lesion_id"],
            "group_id": df["patient_id"],
            "label": df["diagnostic"],
            "age": age,
            "sex": sex.where(sex.isin(["female", "male"])),
            "body_site": site.where(~site.isin(["", "unk", "unknown"])),
            "fitzpatrick": fitz,
            "diameter_mm": pd.concat([d1, d2], axis=1).max(axis=1, skipna=True),
            "symptoms": symptoms,
            "extra": extras,
        })
        return out


def _number(series: pd.Series, table: str, column: str, source: str) -> pd.Series:
    blank = series.str.lower().isin(_UNKNOWN)
    num = pd.to_numeric(series.where(~blank), errors="coerce")
    bad = ~blank & num.isna()
    if bad.any():
        raise DataError(f"{source}: '{table}' column '{column}' has non-numeric value "
                        f"{series[bad].iloc[0]!r}")
    return num.astype("float64")


def _bool(value, table: str, column: str, source: str) -> bool | None:
    text = "" if value is None or pd.isna(value) else str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _UNKNOWN:
        return None
    raise DataError(f"{source}: '{table}' column '{column}' has {value!r}; expected "
                    "True/False/UNK or blank")
