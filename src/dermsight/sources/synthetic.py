"""The embedded default dataset: seeded procedural skin photos, generated on first use.

``generate`` writes, under ``root``::

    root/metadata.csv                 one row per image (see ``CSV_COLUMNS``)
    root/images/<image_id>.png        sRGB photo, ``size`` x ``size``
    root/masks/<image_id>_mask.png    lesion mask, 0 / 255
    root/synthetic.json               generator version + parameters, written last

Everything is built in a hidden sibling folder and moved in only when complete, with
``synthetic.json`` moved last (and removed first when regenerating), so its presence with matching
parameters means the dataset is whole. Same parameters and seed give byte-identical files.

Each patient has one lesion of one class (``CLASSES``) and 2-4 photos of it (different crop,
rotation, scale and lighting), so patient grouping matters. The skin colour comes from a Monk tone
(balanced over 1-10); lesions are composited multiplicatively in linear RGB, so erythema turns
pink-red on light skin and dark red-brown / violaceous on dark skin. About 30 % of images carry
one photographic degradation (``DEGRADATIONS``) with a severity in (0, 1]; that is the ground
truth for lighting quality, kept in the manifest's ``extra``. Metadata (age, sex, body site,
symptoms) depends on the class but only loosely: it helps, it does not decide. The pixels are
drawn by :mod:`dermsight.sources.synthetic_render`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from dermsight.errors import DataError
from dermsight.io import exists, is_remote, join, read_bytes, read_csv, staging_dir
from dermsight.sources.base import Source, SourceOptions, register_source
from dermsight.sources.synthetic_render import render_patient

GENERATOR_VERSION = 1
CLASSES = ("acne", "eczema", "melanoma", "nevus", "psoriasis")
DEGRADATIONS = ("dark", "overexposed", "blur", "glare", "color_cast", "distant")
DEGRADED_SHARE = 0.3
SYMPTOMS = ("itch", "pain", "bleed", "grew", "changed")
BODY_SITES = ("face", "scalp", "neck", "chest", "back", "abdomen", "upper_extremity",
              "lower_extremity", "hand", "foot")
CSV_COLUMNS = ["image_id", "patient_id", "label", "age", "sex", "body_site", "symptoms",
               "fitzpatrick", "monk", "diameter_mm", "degradation", "severity", "image_file",
               "mask_file"]
MARKER = "synthetic.json"

# Per class: age (mean, sd, lo, hi), P(male), body-site weights, symptom probabilities.
_AGE = {"acne": (19, 5, 11, 45), "eczema": (28, 20, 1, 85), "melanoma": (58, 15, 20, 95),
        "nevus": (34, 15, 5, 85), "psoriasis": (44, 16, 8, 90)}
_MALE = {"acne": 0.5, "eczema": 0.45, "melanoma": 0.56, "nevus": 0.47, "psoriasis": 0.52}
_SITES = {  # weights over BODY_SITES; every site stays possible (noise)
    "acne": (50, 1, 4, 14, 20, 2, 2, 2, 1, 1),
    "eczema": (10, 3, 10, 5, 5, 5, 25, 17, 17, 3),
    "melanoma": (10, 3, 4, 12, 30, 8, 12, 18, 1, 2),
    "nevus": (10, 2, 5, 16, 28, 16, 11, 10, 1, 1),
    "psoriasis": (3, 16, 2, 4, 14, 6, 27, 24, 3, 1),
}
_SYMPTOM_P = {  # itch, pain, bleed, grew, changed
    "acne": (0.10, 0.50, 0.06, 0.12, 0.05),
    "eczema": (0.85, 0.15, 0.18, 0.10, 0.05),
    "melanoma": (0.20, 0.10, 0.30, 0.60, 0.50),
    "nevus": (0.06, 0.03, 0.03, 0.12, 0.06),
    "psoriasis": (0.55, 0.15, 0.10, 0.25, 0.05),
}


class SyntheticOptions(SourceOptions):
    #: number of patients (one lesion each)
    n_patients: int = Field(60, ge=1, le=100_000)
    #: photos per patient, drawn uniformly in [min, max]
    images_per_patient: tuple[int, int] = (2, 4)
    #: image side in pixels
    size: int = Field(128, ge=32, le=2048)
    #: random seed; same options and seed give byte-identical files
    seed: int = Field(0, ge=0)

    @field_validator("images_per_patient")
    @classmethod
    def _min_max(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 100:
            raise ValueError(f"images_per_patient must be [min, max] with 1 <= min <= max <= 100,"
                             f" got {list(v)}")
        return v


@register_source
class Synthetic(Source):
    """Generates the dataset into ``root`` when missing or stale, then reads it."""

    name = "synthetic"
    Options = SyntheticOptions

    def _params(self) -> dict:
        o = self.options
        return _params(o.n_patients, o.images_per_patient, o.size, o.seed)

    def check_root(self) -> None:
        root = self.root
        if is_remote(root):
            if not exists(join(root, MARKER)):
                raise DataError(f"{self.name}: no generated dataset at remote root '{root}' "
                                f"('{MARKER}' missing) and the synthetic source only generates "
                                "into a local folder; use a local path")
            return
        path = Path(root)
        if path.exists() and not path.is_dir():
            raise DataError(f"{self.name}: dataset root '{root}' exists and is not a directory")

    def read(self) -> pd.DataFrame:
        params = self._params()
        if not _is_current(self.root, params):
            if is_remote(self.root):
                raise DataError(f"{self.name}: dataset at remote root '{self.root}' was generated "
                                f"with other parameters than {params}; regenerate it locally")
            generate(self.root, **params)
        table = join(self.root, "metadata.csv")
        df = read_csv(table, source=self.name, required=CSV_COLUMNS, keep_default_na=False,
                      dtype={c: str for c in ("image_id", "patient_id", "label", "sex",
                                              "body_site", "symptoms", "degradation",
                                              "image_file", "mask_file")})
        unknown = sorted(set(df["label"]) - set(CLASSES))
        if unknown:
            raise DataError(f"{self.name}: '{table}' column 'label' has unknown label(s) "
                            f"{unknown}; expected {list(CLASSES)}")
        out = pd.DataFrame({
            "image_id": df["image_id"],
            "image_uri": [join(self.root, "images", f) for f in df["image_file"]],
            "case_id": df["patient_id"],
            "group_id": df["patient_id"],
            "label": df["label"],
            "mask_uri": [join(self.root, "masks", f) for f in df["mask_file"]],
            "age": pd.to_numeric(df["age"], errors="coerce"),
            "sex": df["sex"],
            "body_site": df["body_site"],
            "symptoms": df["symptoms"],
            "fitzpatrick": pd.to_numeric(df["fitzpatrick"], errors="coerce"),
            "monk": pd.to_numeric(df["monk"], errors="coerce"),
            "diameter_mm": pd.to_numeric(df["diameter_mm"], errors="coerce"),
        })
        out["extra"] = [
            json.dumps({"degradation": d or None, "severity": float(s or 0)})
            for d, s in zip(df["degradation"], df["severity"])
        ]
        return out


# --------------------------------------------------------------------------- generation


def _params(n_patients, images_per_patient, size, seed) -> dict:
    lo, hi = (int(v) for v in images_per_patient)
    SyntheticOptions(n_patients=n_patients, images_per_patient=(lo, hi), size=size, seed=seed)
    return {"n_patients": int(n_patients), "images_per_patient": [lo, hi], "size": int(size),
            "seed": int(seed)}


def _marker_text(params: dict, n_images: int) -> str:
    body = {"generator": "dermsight.sources.synthetic", "version": GENERATOR_VERSION,
            "params": params, "classes": list(CLASSES), "degradations": list(DEGRADATIONS),
            "n_images": n_images}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def _is_current(root: str, params: dict) -> bool:
    """True when ``root`` holds a complete dataset generated by this version with ``params``."""
    marker = join(str(root), MARKER)
    try:
        info = json.loads(read_bytes(marker))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict):
        return False
    return info.get("version") == GENERATOR_VERSION and info.get("params") == params


def generate(root, *, n_patients: int = 60, images_per_patient=(2, 4), size: int = 128,
             seed: int = 0) -> Path:
    """Write the synthetic dataset under local folder ``root`` (replacing any previous one)."""
    params = _params(n_patients, images_per_patient, size, seed)
    if is_remote(str(root)):
        raise DataError(f"synthetic: cannot generate into remote root '{root}'")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"synthetic: dataset root '{root}' exists and is not a directory")
    # Drop the completion marker first: an interrupted regeneration is then never read as whole.
    (root / MARKER).unlink(missing_ok=True)
    rows = []
    with staging_dir(root, last=MARKER) as stage:
        (stage / "images").mkdir()
        (stage / "masks").mkdir()
        for patient in _plan(params):
            for img_row, image, mask in render_patient(patient, size, seed):
                (stage / "images" / img_row["image_file"]).write_bytes(_png(image))
                (stage / "masks" / img_row["mask_file"]).write_bytes(_png(mask))
                rows.append(img_row)
        table = pd.DataFrame(rows, columns=CSV_COLUMNS)
        (stage / "metadata.csv").write_bytes(table.to_csv(index=False, lineterminator="\n")
                                             .encode("utf-8"))
        (stage / MARKER).write_text(_marker_text(params, len(rows)), encoding="utf-8")
    return root


def _png(arr: np.ndarray) -> bytes:
    if arr.ndim == 3:
        arr = arr[:, :, ::-1]  # RGB -> BGR for cv2
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover
        raise DataError("synthetic: PNG encoding failed")
    return buf.tobytes()


def _plan(params: dict) -> list[dict]:
    """Per-patient label, tone, metadata and per-image degradations (balanced, seeded)."""
    n = params["n_patients"]
    lo, hi = params["images_per_patient"]
    rng = np.random.default_rng([params["seed"], 7_919])
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    monks = rng.permutation(np.arange(n) % 10) + 1
    counts = rng.integers(lo, hi + 1, size=n)
    total = int(counts.sum())
    n_bad = int(round(DEGRADED_SHARE * total))
    kinds: list[str | None] = [None] * total
    bad_idx = rng.permutation(total)[:n_bad]
    kind_order = rng.permutation(np.arange(n_bad) % len(DEGRADATIONS))
    for i, k in zip(bad_idx, kind_order):
        kinds[int(i)] = DEGRADATIONS[int(k)]
    severities = np.round(rng.uniform(0.35, 1.0, size=total), 3)
    patients, pos = [], 0
    for p in range(n):
        label = CLASSES[int(labels[p])]
        monk = int(monks[p])
        mrng = np.random.default_rng([params["seed"], p, 1])
        mean, sd, a_lo, a_hi = _AGE[label]
        age = int(np.clip(round(mrng.normal(mean, sd)), a_lo, a_hi))
        sex = "male" if mrng.random() < _MALE[label] else "female"
        w = np.asarray(_SITES[label], float)
        site = BODY_SITES[int(mrng.choice(len(BODY_SITES), p=w / w.sum()))]
        symptoms = [s for s, pr in zip(SYMPTOMS, _SYMPTOM_P[label]) if mrng.random() < pr]
        fitz = math.ceil(monk * 0.6)
        if mrng.random() < 0.15:
            fitz += int(mrng.choice([-1, 1]))
        fitz = int(np.clip(fitz, 1, 6))
        imgs = []
        for _ in range(int(counts[p])):
            kind = kinds[pos]
            imgs.append((kind, float(severities[pos]) if kind else 0.0))
            pos += 1
        patients.append({"index": p, "patient_id": f"syn{params['seed']}_p{p:04d}",
                         "label": label, "monk": monk, "age": age, "sex": sex,
                         "body_site": site, "symptoms": "|".join(symptoms),
                         "fitzpatrick": fitz, "images": imgs})
    return patients
