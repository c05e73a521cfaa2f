"""Fit the photo-type router: which kind of photo is this (dermoscopy, clinical, not skin)?

Photos of each kind come from registered sources (their ``photo_type``, e.g. HAM10000 →
dermoscopy, Fitzpatrick17k → clinical) and from a folder of pictures that are not skin
(``scripts/gather_not_skin.py``). Every photo gets a seeded split by its ``group_id`` (one lesion,
one wallpaper: never on both sides); the frozen ImageNet backbone of
:class:`~dermsight.models.router.PhotoTypeNet` embeds each photo once (plus random crops of the
not-skin training pictures, so a close crop of a landscape is still not skin), and a
class-balanced multinomial logistic regression (scikit-learn) on the standardised embeddings
becomes the linear head.

A photo is refused (not skin) when p(not skin) ≥ ``refuse_threshold``: the lowest threshold (at
least ``refuse_floor``) at which at most ``max_false_refusal`` of the skin photos are refused
out of fold (5 group-aware folds), never chosen on validation: a photo the head gives even a
fair chance of not being skin is refused, as long as skin photos almost never get that chance.
The same embeddings of clinical photos with a dermatologist's label also fit a
Fitzpatrick skin-type head (:func:`fit_skin_type`). Validation figures are computed afterwards
by ``benchmarks/router_eval.py`` on the exported int8 model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsight.config import ImageCheckConfig
from dermsight.data.preprocess import Preprocess
from dermsight.errors import DataError
from dermsight.imaging import ImageRejected, decode_image
from dermsight.io import list_files, read_bytes
from dermsight.models.router import PhotoTypeNet
from dermsight.phototype import PHOTO_TYPES
from dermsight.sources import get_source
from dermsight.sources.folder import EXTENSIONS

log = logging.getLogger("dermsight.router")

MAX_PIXELS = ImageCheckConfig().max_pixels  # prepare's decompression-bomb guard


@dataclass
class RouterData:
    """One row per photo: ``image_uri``, ``photo_type``, ``group_id``, ``split``, ``source``,
    ``fitzpatrick`` (NaN when unknown)."""

    frame: pd.DataFrame


def split_of(group: str, val_fraction: float, seed: int) -> str:
    """A stable seeded split from the group id alone (no need to see the other rows)."""
    digest = hashlib.sha1(f"{seed}:{group}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def source_rows(source: str, root: str, *, photo_type: str | None = None) -> pd.DataFrame:
    """The photos of a registered source with their photo type (the source's own unless
    ``photo_type`` is given)."""
    src = get_source(source)(root)
    kind = photo_type or src.photo_type
    if kind not in PHOTO_TYPES:
        raise DataError(f"source '{source}' does not say which kind of photo it holds: "
                        f"give photo_type (one of {PHOTO_TYPES})")
    rows = src.read()
    frame = pd.DataFrame({
        "image_uri": rows["image_uri"].astype(str),
        "group_id": f"{source}:" + rows["group_id"].astype(str),
        "fitzpatrick": pd.to_numeric(rows.get("fitzpatrick"), errors="coerce")
        if "fitzpatrick" in rows else np.nan,
        "photo_type": kind, "source": source})
    return frame


def folder_rows(folder: str | Path, photo_type: str = "not_skin") -> pd.DataFrame:
    """Every picture under ``folder`` (recursively), each its own group."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"not a folder of pictures: {folder}")
    files = sorted(Path(p) for p in list_files(str(folder), EXTENSIONS))
    if not files:
        raise DataError(f"no pictures ({', '.join(EXTENSIONS)}) under {folder}")
    return pd.DataFrame({
        "image_uri": [str(p) for p in files],
        "group_id": [f"{photo_type}:{p.relative_to(folder)}" for p in files],
        "fitzpatrick": np.nan, "photo_type": photo_type,
        "source": [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1
                   else folder.name for p in files]})


def router_data(parts: list[pd.DataFrame], *, val_fraction: float = 0.2,
                seed: int = 0) -> RouterData:
    frame = pd.concat(parts, ignore_index=True)
    frame["split"] = [split_of(g, val_fraction, seed) for g in frame["group_id"]]
    return RouterData(frame)


def _per_type_sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` seeded random rows of each photo type."""
    return pd.concat([g.sample(min(len(g), n), random_state=seed)
                      for _, g in frame.groupby("photo_type", sort=True)])


def _random_crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = rng.uniform(0.25, 0.7)
    ch, cw = max(16, int(h * scale)), max(16, int(w * scale))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return rgb[y:y + ch, x:x + cw]


@torch.no_grad()
def embed_photos(model: PhotoTypeNet, preprocess: Preprocess, frame: pd.DataFrame, *,
                 crops: int = 0, crop_types: tuple[str, ...] = ("not_skin",), seed: int = 0,
                 batch_size: int = 32, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(m, F)`` of the photos (and ``crops`` random crops of each photo of a kind
    in ``crop_types``), with the row index of each embedding ``(m,)``. Unreadable files are
    skipped with a warning."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    model.eval()
    feats: list[np.ndarray] = []
    owners: list[int] = []
    batch: list[np.ndarray] = []
    batch_rows: list[int] = []

    def flush() -> None:
        if batch:
            x = torch.from_numpy(preprocess.batch(batch))
            x = x.contiguous(memory_format=torch.channels_last)
            feats.append(model.embed(x).float().numpy())
            owners.extend(batch_rows)
            batch.clear()
            batch_rows.clear()

    rows = frame.reset_index(drop=True)
    for i in tqdm(range(len(rows)), desc="embedding photos", unit="img", disable=not progress):
        uri = rows.at[i, "image_uri"]
        try:
            rgb, _ = decode_image(read_bytes(uri), max_pixels=MAX_PIXELS)
        except (OSError, ImageRejected) as exc:
            log.warning("skipped %s: %s", uri, exc)
            continue
        views = [rgb]
        if crops and rows.at[i, "photo_type"] in crop_types:
            views += [_random_crop(rgb, rng) for _ in range(crops)]
        for view in views:
            batch.append(view)
            batch_rows.append(i)
            if len(batch) >= batch_size:
                flush()
    flush()
    if not feats:
        raise DataError("no photo could be read")
    return np.concatenate(feats), np.asarray(owners, np.int64)


def choose_refuse_threshold(p_not_skin: np.ndarray, is_skin: np.ndarray,
                            max_false_refusal: float, floor: float = 0.5) -> float:
    """The lowest threshold ≥ ``floor`` at which the share of skin photos with p(not skin) ≥ it
    is at most ``max_false_refusal``."""
    skin = np.sort(p_not_skin[is_skin])[::-1]
    allowed = int(np.floor(max_false_refusal * len(skin)))
    if allowed >= len(skin):
        return floor
    # refuse strictly above the (allowed+1)-th highest skin score
    return float(max(floor, np.nextafter(skin[allowed], 1.0)))


FITZPATRICK_TYPES = (1, 2, 3, 4, 5, 6)


def fit_linear_head(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, c: float,
                    seed: int = 0, max_iter: int = 3000
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class-balanced multinomial logistic regression on standardised embeddings: its
    out-of-fold probabilities (5 group-aware folds) and, fitted on everything, its weights
    ``[K, F]`` and biases ``[K]`` on the raw embeddings (the scaler folded in), ready for a
    linear layer."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def classifier():
        return make_pipeline(StandardScaler(), LogisticRegression(
            C=c, max_iter=max_iter, class_weight="balanced"))

    oof = cross_val_predict(classifier(), x, y, groups=groups, method="predict_proba",
                            cv=StratifiedGroupKFold(5, shuffle=True, random_state=seed))
    scaler, logistic = classifier().fit(x, y)
    weight = logistic.coef_ / scaler.scale_[None, :]
    return oof, weight, logistic.intercept_ - weight @ scaler.mean_


#: the learned skin-type estimate is served only when, out of fold, it reaches the project's
#: goals on every type: a worse estimate for dark skin than ITA's must not reach a user
SKIN_TYPE_GOALS = {"spearman": 0.60, "within_1_every_type": 0.80}


def fit_skin_type(x: np.ndarray, types: np.ndarray, groups: np.ndarray, *, c: float = 0.01,
                  seed: int = 0) -> dict:
    """A learned Fitzpatrick skin-type estimate: a class-balanced multinomial logistic
    regression on the router's embeddings of clinical photos with a dermatologist's label
    (types 1-6), scored out of fold (5 group-aware folds: near-duplicates stay together). The
    estimate is the expected type; returns the head (``weight`` [6, F], ``bias`` [6], on raw
    embeddings), the out-of-fold figures, and ``served``: whether they reach
    :data:`SKIN_TYPE_GOALS` (the engine shows the estimate only then)."""
    from scipy.stats import spearmanr

    types = np.asarray(types, int)
    oof, weight, bias = fit_linear_head(x, types, groups, c=c, seed=seed)
    expected = oof @ np.asarray(FITZPATRICK_TYPES, float)
    estimate = np.clip(np.rint(expected), 1, 6).astype(int)
    per_type = {}
    for t in FITZPATRICK_TYPES:
        sel = types == t
        per_type[str(t)] = {"n": int(sel.sum()),
                            "within_1": float((np.abs(estimate[sel] - t) <= 1).mean()),
                            "exact": float((estimate[sel] == t).mean()),
                            "median_estimate": float(np.median(expected[sel]))}
    oof_figures = {"n": int(len(types)), "spearman": float(spearmanr(expected, types).statistic),
                   "within_1": float((np.abs(estimate - types) <= 1).mean()),
                   "exact": float((estimate == types).mean()), "per_type": per_type}
    served = (oof_figures["spearman"] >= SKIN_TYPE_GOALS["spearman"]
              and all(v["within_1"] >= SKIN_TYPE_GOALS["within_1_every_type"]
                      for v in per_type.values()))
    return {
        "classes": list(FITZPATRICK_TYPES), "logistic_c": c, "class_weight": "balanced",
        "weight": np.round(weight, 7).tolist(), "bias": np.round(bias, 7).tolist(),
        "out_of_fold": oof_figures, "served": served, "goals": SKIN_TYPE_GOALS,
    }


@dataclass
class FittedRouter:
    model: PhotoTypeNet
    preprocess: Preprocess
    refuse_threshold: float
    report: dict
    skin_type: dict | None = None


def cached_embeddings(model: PhotoTypeNet, preprocess: Preprocess, frame: pd.DataFrame, *,
                      cache_dir: Path | None, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """:func:`embed_photos`, stored in ``cache_dir`` under a key of everything that determines
    the result (backbone, preprocessing, photos, crops, seed), so a refit skips the backbone."""
    if cache_dir is None:
        return embed_photos(model, preprocess, frame, **kwargs)
    key = hashlib.sha1(json.dumps({
        "backbone": model.backbone_name, "preprocess": preprocess.to_dict(),
        "uris": frame["image_uri"].tolist(), "types": frame["photo_type"].tolist(),
        **{k: v for k, v in kwargs.items() if k != "progress"}}, sort_keys=True,
        default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"embeddings-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["x"], z["owner"]
    x, owner = embed_photos(model, preprocess, frame, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, owner=owner)
    tmp.replace(path)
    return x, owner


def fit_router(data: RouterData, *, crops: int = 2, c: float = 0.5,
               max_false_refusal: float = 0.0025, max_train_per_type: int | None = 3000,
               seed: int = 0, progress: bool = True, refuse_floor: float = 0.1,
               cache_dir: Path | None = Path("runs/router-cache")) -> FittedRouter:
    """Fit the head on the train rows of ``data`` (see the module docstring); the embeddings
    are cached in ``cache_dir`` (None: not cached)."""
    torch.manual_seed(seed)
    model = PhotoTypeNet()
    preprocess = Preprocess.from_timm(model.data_config)
    train = data.frame[data.frame["split"] == "train"]
    if max_train_per_type is not None:
        train = _per_type_sample(train, max_train_per_type, seed)
    train = train.reset_index(drop=True)
    missing = [k for k in PHOTO_TYPES if not (train["photo_type"] == k).any()]
    if missing:
        raise DataError(f"no training photos of kind(s) {missing}")
    x, owner = cached_embeddings(model, preprocess, train, cache_dir=cache_dir, crops=crops,
                                 seed=seed, progress=progress)
    y = train["photo_type"].map({k: i for i, k in enumerate(PHOTO_TYPES)}).to_numpy()[owner]
    groups = train["group_id"].to_numpy()[owner]

    oof, weight, bias = fit_linear_head(x, y, groups, c=c, seed=seed, max_iter=2000)
    original = np.r_[True, owner[1:] != owner[:-1]]  # the uncropped view of each photo
    not_skin = PHOTO_TYPES.index("not_skin")
    threshold = choose_refuse_threshold(oof[original, not_skin], y[original] != not_skin,
                                        max_false_refusal, floor=refuse_floor)
    model.set_head(weight, bias)
    skin = original & (y != not_skin)
    refused = oof[:, not_skin] >= threshold
    oof_pred = np.where(refused, not_skin,
                        np.argmax(np.where(np.arange(3) == not_skin, -1, oof), axis=1))
    clinical = original & (train["photo_type"].to_numpy()[owner] == "clinical")
    fitz = pd.to_numeric(train["fitzpatrick"], errors="coerce").to_numpy()[owner]
    by_type = {}
    for t in FITZPATRICK_TYPES:
        sel = clinical & (fitz == t)
        by_type[str(t)] = {"n": int(sel.sum()), "refused": int(refused[sel].sum())}
    known = clinical & np.isin(fitz, FITZPATRICK_TYPES)
    skin_type = None
    if known.sum() >= 60:
        skin_type = fit_skin_type(x[known], fitz[known].astype(int), groups[known], seed=seed)
    report = {
        "n_train_photos": {k: int((train["photo_type"] == k).sum()) for k in PHOTO_TYPES},
        "n_train_embeddings": int(len(x)), "not_skin_crops_per_photo": crops,
        "logistic_c": c, "max_false_refusal": max_false_refusal,
        "refuse_threshold": threshold,
        "out_of_fold_accuracy": float((oof_pred[original] == y[original]).mean()),
        "out_of_fold_false_refusal": float(refused[skin].mean()),
        "out_of_fold_not_skin_refused": float(refused[original & (y == not_skin)].mean()),
        "out_of_fold_clinical_refused_by_fitzpatrick": by_type,
    }
    if skin_type is not None:
        report["skin_type_out_of_fold"] = skin_type["out_of_fold"]
    return FittedRouter(model.eval(), preprocess, threshold, report, skin_type)


def parse_source_spec(spec: str) -> tuple[str, str]:
    """``"name=root"`` → (name, root)."""
    name, sep, root = spec.partition("=")
    if not sep or not name or not root:
        raise DataError(f"expected SOURCE=ROOT (e.g. ham10000=../shared/data/ham10000), "
                        f"got {spec!r}")
    return name.strip(), root.strip()


def load_router_data(sources: list[str], not_skin: str | Path, *, val_fraction: float = 0.2,
                     seed: int = 0) -> RouterData:
    """Rows of every ``SOURCE=ROOT`` in ``sources`` (each source's own photo type) and of the
    not-skin folder, with their seeded group split."""
    parts = [source_rows(*parse_source_spec(s)) for s in sources]
    parts.append(folder_rows(not_skin))
    return router_data(parts, val_fraction=val_fraction, seed=seed)


def calibration_batch(data: RouterData, preprocess: Preprocess, n: int = 96,
                      seed: int = 0) -> np.ndarray:
    """Preprocessed training photos ``(n, 3, H, W)``, a third of each kind, to calibrate the
    int8 activation ranges."""
    train = data.frame[data.frame["split"] == "train"]
    picks = _per_type_sample(train, n // len(PHOTO_TYPES), seed)
    images = []
    for uri in picks["image_uri"]:
        try:
            images.append(decode_image(read_bytes(uri), max_pixels=MAX_PIXELS)[0])
        except (OSError, ImageRejected):
            continue
    return preprocess.batch(images)
