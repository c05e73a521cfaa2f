"""SCIN, the Skin Condition Image Network (Google Research 2024): crowd-sourced phone photos.

Layout (public bucket ``gs://dx-scin-public-data``)::

    root/dataset/scin_cases.csv    one row per case (a contribution of up to 3 images)
    root/dataset/scin_labels.csv   dermatologist and lay-grader labels per case
    root/dataset/images/<id>.png

The two tables are joined on ``case_id``, read as a string (64-bit ids, some negative). Every
non-empty ``image_N_path`` (N = 1..3) becomes one manifest row: image id = the path's file stem,
case = group = ``case_id``.

Root and image paths: the CSV paths are bucket-relative (``dataset/images/<id>.png``).

* If ``root/dataset/scin_cases.csv`` exists, ``root`` is the bucket root and a path ``p`` resolves
  to ``root/p``.
* Otherwise the tables must be directly in ``root``; ``root`` is taken to be the ``dataset/``
  folder itself, and ``dataset/images/x.png`` resolves to ``root/images/x.png`` (the leading
  ``dataset/`` is dropped). When ``root`` ends in ``dataset`` that is exactly ``parent(root)/p``;
  otherwise it is the natural reading of a copy laid out as ``root/{scin_cases.csv, images/}``.
* Paths that are absolute or URLs are used as they are.

Images are never stat-ed here (``prepare`` validates every file): a listed path without a file
extension (one known defect) is kept and reported in ``issues``.

Labels: ``weighted_skin_condition_label`` (a Python dict literal, parsed with
``ast.literal_eval``) becomes ``soft_labels`` and its argmax (ties: alphabetical) ``label``. When it
is empty but dermatologist condition names exist (``dermatologist_skin_condition_on_label_name`` or
``dermatologist_skin_condition_label_name``), the names weighted by their confidences are used and
``extra["label_from"]`` says so. With ``require_label`` (default) cases without any condition
label are dropped and every dropped image is recorded in ``issues``.

Metadata mapping:

* ``monk``: rounded (half up) mean of ``monk_skin_tone_label_india`` / ``_us`` when present; both
  raw values in ``extra``.
* ``fitzpatrick``: rounded (half up) median of the dermatologists' ``FSTn`` labels;
  ``fitzpatrick_self``: the self-reported ``fitzpatrick_skin_type`` (``NONE_SELECTED`` → missing).
* ``sex``: FEMALE → female, MALE → male. ``OTHER_OR_UNSPECIFIED`` → **missing**: it merges
  "other" with "did not say", so it cannot honestly be "other"; the raw value is kept in
  ``extra["sex_at_birth"]``.
* ``age_group``: ``AGE_18_TO_29`` → ``18-29``, ``AGE_80_OR_ABOVE`` → ``80+``, unknown → missing.
* ``body_site``: the one ``body_parts_*`` marked YES, or ``multiple`` (list in
  ``extra["body_parts"]``).
* ``symptoms``: ``condition_symptoms_*`` and ``other_symptoms_*`` marked YES, with the names the
  other sources use (itching → itch, bleeding → bleed, increasing_size → grew); the
  "no relevant ..." answers are not symptoms and are left out.
* ``textures``: ``textures_*`` marked YES. ``duration``: ``condition_duration`` lower-cased
  (UNKNOWN → missing). ``shot_type``: ``image_N_shot_type`` lower-cased.
* Race/ethnicity, ``related_category``, gradability, the raw dermatologist labels and
  confidences go to ``extra``.

"YES" is the only true value in the boolean-looking columns.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import PurePosixPath

import pandas as pd

from dermsight.errors import DataError
from dermsight.io import exists, join, read_csv
from dermsight.manifest import dump_soft_labels, join_list
from dermsight.sources.base import Source, SourceOptions, register_source

CASES = "scin_cases.csv"
LABELS = "scin_labels.csv"
N_IMAGES = 3
CASES_REQUIRED = ["case_id"] + [f"image_{n}_path" for n in range(1, N_IMAGES + 1)]
LABELS_REQUIRED = ["case_id", "weighted_skin_condition_label"]
NAME_COLUMNS = ("dermatologist_skin_condition_on_label_name",
                "dermatologist_skin_condition_label_name")
CONFIDENCE_COLUMN = "dermatologist_skin_condition_confidence"
MONK_COLUMNS = {"india": "monk_skin_tone_label_india", "us": "monk_skin_tone_label_us"}
SYMPTOM_NAMES = {"itching": "itch", "bleeding": "bleed", "increasing_size": "grew"}
NOT_SYMPTOMS = {"no_relevant_experience", "no_relevant_symptoms"}
SEX = {"FEMALE": "female", "MALE": "male"}
_FST = re.compile(r"^FST([1-6])$")
_AGE_RANGE = re.compile(r"^AGE_(\d+)_TO_(\d+)$")
_AGE_ABOVE = re.compile(r"^AGE_(\d+)_OR_ABOVE$")


class ScinOptions(SourceOptions):
    #: drop cases without a dermatologist condition label (counted in ``issues``)
    require_label: bool = True
    #: drop soft-label entries lighter than this before renormalising (0 keeps all)
    min_label_weight: float = 0.0


@register_source
class Scin(Source):
    name = "scin"
    photo_type = "clinical"
    Options = ScinOptions

    def read(self) -> pd.DataFrame:
        tables = self._tables_dir()
        cases_uri, labels_uri = join(tables, CASES), join(tables, LABELS)
        cases = read_csv(cases_uri, source=self.name, required=CASES_REQUIRED, dtype=str)
        labels = read_csv(labels_uri, source=self.name, required=LABELS_REQUIRED, dtype=str)
        for frame, uri in ((cases, cases_uri), (labels, labels_uri)):
            frame["case_id"] = frame["case_id"].str.strip()
            if frame["case_id"].isna().any():
                row = int(frame["case_id"].isna().to_numpy().nonzero()[0][0])
                raise DataError(f"{self.name}: '{uri}' column 'case_id' is empty in row {row}")
            dup = frame["case_id"][frame["case_id"].duplicated()]
            if len(dup):
                raise DataError(f"{self.name}: '{uri}' column 'case_id' repeats {dup.iloc[0]!r}")
        overlap = [c for c in labels.columns if c in cases.columns and c != "case_id"]
        df = cases.merge(labels.drop(columns=overlap), on="case_id", how="left")
        names_col = next((c for c in NAME_COLUMNS if c in df.columns), None)

        rows: list[dict] = []
        seen: set[str] = set()
        for rec in df.to_dict("records"):
            rec = {k: _text(v) for k, v in rec.items()}
            case = rec["case_id"]
            soft, label_from = self._soft_labels(rec, names_col, labels_uri)
            meta = self._metadata(rec, labels_uri)
            for n in range(1, N_IMAGES + 1):
                path = rec.get(f"image_{n}_path")
                if not path:
                    continue
                image_id = PurePosixPath(path).stem or path
                issue = {"image_id": image_id, "path": path, "case_id": case}
                if soft is None and self.options.require_label:
                    self.issues.append({**issue, "reason": "case has no dermatologist condition "
                                        "label (dropped: require_label)"})
                    continue
                if image_id in seen:
                    self.issues.append({**issue, "reason": "image listed again (kept the first)"})
                    continue
                seen.add(image_id)
                if not PurePosixPath(path).suffix:
                    self.issues.append({**issue, "reason": "image path has no file extension"})
                shot = rec.get(f"image_{n}_shot_type")
                row = {
                    "image_id": image_id,
                    "image_uri": self._resolve(tables, path),
                    "case_id": case,
                    "group_id": case,
                    "label": _argmax(soft) if soft else None,
                    "soft_labels": dump_soft_labels(soft) if soft else None,
                    "shot_type": shot.lower() if shot else None,
                    **meta,
                }
                extra = dict(row.pop("extra"))
                if label_from:
                    extra["label_from"] = label_from
                row["extra"] = json.dumps(extra)
                rows.append(row)
        return pd.DataFrame(rows)

    # -- layout ---------------------------------------------------------------------------------

    def _tables_dir(self) -> str:
        """The folder holding the two CSVs: ``root/dataset`` when present, else ``root``."""
        nested = join(self.root, "dataset")
        if exists(join(nested, CASES)):
            return nested
        return self.root

    @staticmethod
    def _resolve(tables: str, path: str) -> str:
        if "://" in path or path.startswith("/"):
            return path
        parts = PurePosixPath(path).parts
        if parts and parts[0] == "dataset":
            parts = parts[1:]
        return join(tables, *parts)

    # -- labels ---------------------------------------------------------------------------------

    def _soft_labels(self, rec: dict, names_col: str | None,
                     uri: str) -> tuple[dict[str, float] | None, str | None]:
        where = f"{self.name}: '{uri}' case {rec['case_id']!r}"
        weights = _literal(rec.get("weighted_skin_condition_label"), dict,
                           f"{where} column 'weighted_skin_condition_label'")
        label_from = None
        if not weights and names_col:
            names = _literal(rec.get(names_col), list, f"{where} column '{names_col}'") or []
            conf = _literal(rec.get(CONFIDENCE_COLUMN), list,
                            f"{where} column '{CONFIDENCE_COLUMN}'") or []
            if len(conf) != len(names):
                conf = [1] * len(names)
            weights = {}
            for name, c in zip(names, conf):
                weights[str(name)] = weights.get(str(name), 0.0) + float(c)
            label_from = names_col if weights else None
        if not weights:
            return None, None
        try:
            clean = {str(k).strip(): float(v) for k, v in weights.items()}
        except (TypeError, ValueError):
            raise DataError(f"{where} column 'weighted_skin_condition_label': "
                            f"non-numeric weight in {weights!r}") from None
        if any(w < 0 or math.isnan(w) for w in clean.values()) or "" in clean:
            raise DataError(f"{where} column 'weighted_skin_condition_label': "
                            f"bad entry in {weights!r}")
        total = sum(clean.values())
        clean = {k: w for k, w in clean.items()
                 if w > 0 and w / total >= self.options.min_label_weight} if total > 0 else {}
        return (clean or None), label_from

    # -- metadata -------------------------------------------------------------------------------

    def _metadata(self, rec: dict, labels_uri: str) -> dict:
        extra: dict = {}
        for key in ("release", "year", "related_category", "combined_race"):
            if key in rec:
                extra[key] = rec[key]
        sex_raw = rec.get("sex_at_birth")
        extra["sex_at_birth"] = sex_raw
        extra["race_ethnicity"] = _yes_suffixes(rec, "race_ethnicity_")

        parts = _yes_suffixes(rec, "body_parts_")
        body_site = parts[0] if len(parts) == 1 else ("multiple" if parts else None)
        if parts:
            extra["body_parts"] = parts
        symptoms = [SYMPTOM_NAMES.get(s, s)
                    for s in _yes_suffixes(rec, "condition_symptoms_")
                    + _yes_suffixes(rec, "other_symptoms_") if s not in NOT_SYMPTOMS]

        monk_vals = {}
        for grader, col in MONK_COLUMNS.items():
            v = _float(rec.get(col), f"{self.name}: '{labels_uri}' column '{col}'")
            if v is not None and not 1 <= v <= 10:
                raise DataError(f"{self.name}: '{labels_uri}' column '{col}' has {v} outside "
                                f"1-10 (case {rec['case_id']!r})")
            extra[f"monk_{grader}"] = v
            if v is not None:
                monk_vals[grader] = v
        monk = _round_half_up(sum(monk_vals.values()) / len(monk_vals)) if monk_vals else None

        derm_fst = []
        for n in range(1, N_IMAGES + 1):
            m = _FST.match(rec.get(f"dermatologist_fitzpatrick_skin_type_label_{n}") or "")
            if m:
                derm_fst.append(int(m.group(1)))
        extra["fitzpatrick_dermatologists"] = derm_fst
        fitz = _round_half_up(_median(derm_fst)) if derm_fst else None
        m = _FST.match(rec.get("fitzpatrick_skin_type") or "")
        fitz_self = int(m.group(1)) if m else None

        gradable = {k: v for k, v in rec.items() if "gradable" in k and v is not None}
        if gradable:
            extra["gradable"] = gradable
        for col, key in ((c, "condition_names") for c in NAME_COLUMNS):
            if rec.get(col):
                extra[key] = _literal(rec[col], list, f"{self.name}: '{labels_uri}' column "
                                      f"'{col}' case {rec['case_id']!r}")
        if rec.get(CONFIDENCE_COLUMN):
            extra["condition_confidence"] = _literal(
                rec[CONFIDENCE_COLUMN], list,
                f"{self.name}: '{labels_uri}' column '{CONFIDENCE_COLUMN}' case {rec['case_id']!r}")

        duration = rec.get("condition_duration")
        return {
            "age_group": _age_group(rec.get("age_group")),
            "sex": SEX.get((sex_raw or "").upper()),
            "body_site": body_site,
            "symptoms": join_list(symptoms),
            "textures": join_list(_yes_suffixes(rec, "textures_")),
            "duration": duration.lower() if duration and duration.upper() != "UNKNOWN" else None,
            "fitzpatrick": fitz,
            "fitzpatrick_self": fitz_self,
            "monk": monk,
            "extra": extra,
        }


def _text(v) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    s = str(v).strip()
    return s or None


def _yes_suffixes(rec: dict, prefix: str) -> list[str]:
    return [k[len(prefix):] for k, v in rec.items()
            if k.startswith(prefix) and v is not None and v.upper() == "YES"]


def _literal(text: str | None, kind: type, where: str):
    """Parse a Python literal (list or dict) stored as text; never ``eval``."""
    if text is None:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise DataError(f"{where}: cannot parse {text[:80]!r} as a {kind.__name__}") from None
    if not isinstance(value, kind):
        raise DataError(f"{where}: expected a {kind.__name__}, got {text[:80]!r}")
    return value


def _float(text: str | None, where: str) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: non-numeric value {text!r}") from None
    return None if math.isnan(v) else v


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _median(values: list[int]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _argmax(weights: dict[str, float]) -> str:
    return min(weights, key=lambda k: (-weights[k], k))


def _age_group(text: str | None) -> str | None:
    if not text:
        return None
    m = _AGE_RANGE.match(text)
    if m:
        return f"{int(m.group(1))}-{int(m.group(2))}"
    m = _AGE_ABOVE.match(text)
    if m:
        return f"{int(m.group(1))}+"
    return None
