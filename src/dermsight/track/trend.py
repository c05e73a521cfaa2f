"""Is it getting better? A sequence model over per-photo embeddings, and a simple baseline.

Per visit ``t`` of a series (oldest first, quality-flagged photos left out) the model reads one
feature vector (:func:`sequence_features`):

- the change of the photo's image embedding since the first visit (``e_t − e_0``, ``F`` values),
- the change of the per-photo lesion measurements since the first visit
  (:mod:`dermsight.track.lesion`, :data:`LESION_FEATURES`: log ratios of areas and loads,
  differences of contrast and centre-vs-periphery colour),
- the time since the first visit and since the previous one (``log1p(days) / 5``).

The sequences are right-padded to a common length with a boolean mask (2 to N valid visits).
The network (``TrendNet``, torch, only in :func:`train_trend`) reduces the embedding change to
its principal directions on the training set (a fixed linear layer), standardises the features,
projects them, runs a GRU and reads it at the last valid visit, concatenated with the
projected last-visit change → logits for ``improved / stable / worsened``. It is exported to
ONNX; :class:`TrendModel` runs it with onnxruntime and never imports torch.

The baseline (:class:`SeverityBaseline`) uses one number: ``d = log((s_last + ε)/(s_first + ε))``
of the lesion severity score; two thresholds fitted on the training progressions split it
into improved / stable / worsened.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermsight.errors import ConfigError, DataError
from dermsight.io import project_folder

CLASSES = ("improved", "stable", "worsened")
#: per-photo lesion measurements used, as (key, "ratio" → log((v_t + eps)/(v_0 + eps)) or
#: "diff" → (v_t − v_0)/eps)
LESION_FEATURES: tuple[tuple[str, str, float], ...] = (
    ("area", "ratio", 0.005),
    ("area8", "ratio", 0.005),
    ("area16", "ratio", 0.005),
    ("load", "ratio", 0.05),
    ("darkness_load", "ratio", 0.05),
    ("redness_load", "ratio", 0.05),
    ("contrast", "diff", 10.0),
    ("centre_darkness", "diff", 10.0),
    ("centre_redness", "diff", 10.0),
    ("skin_l", "diff", 10.0),
)
N_LESION = len(LESION_FEATURES)
N_TIME = 2
EPS = 0.05
MODEL_FILE = "trend.onnx"
META_FILE = "trend.json"
ENV_TREND_DIR = "DERMSIGHT_TREND_MODEL"


def default_trend_dir() -> Path:
    """Where the trend model lives, found as the classifier is
    (:func:`dermsight.serve.engine.default_model_dir`): ``$DERMSIGHT_TREND_MODEL`` when set;
    else ``models/trend`` of the source checkout this package runs from (editable /
    development installs), from any working folder; else ``./models/trend``."""
    return project_folder("models/trend", env_var=ENV_TREND_DIR,
                          is_valid=lambda p: (p / MODEL_FILE).is_file())


# ---- features (numpy, shared by training and serving) --------------------------------------

def lesion_vector(m: dict) -> np.ndarray:
    return np.array([float(m.get(k, 0.0) or 0.0) for k, _, _ in LESION_FEATURES],
                    dtype=np.float64)


def sequence_features(embeddings: np.ndarray | None, lesions: list[dict],
                      days: list[float], emb_dim: int) -> np.ndarray:
    """``[T, emb_dim + N_LESION + 2]`` float32 features of one series (module docstring).

    ``embeddings`` is ``[T, emb_dim]`` (or None: zeros, the model then relies on the lesion and
    time features); ``lesions`` the :func:`~dermsight.track.lesion.measure_lesion` dicts and
    ``days`` the visit times in days, all oldest first.
    """
    T = len(lesions)
    if T != len(days):
        raise DataError(f"{T} lesion measurements but {len(days)} visit times")
    if embeddings is None:
        emb = np.zeros((T, emb_dim), dtype=np.float32)
    else:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.shape != (T, emb_dim):
            raise DataError(f"embeddings must be [{T}, {emb_dim}], got {list(emb.shape)}")
    lv = np.stack([lesion_vector(m) for m in lesions])
    cols = []
    for j, (_, kind, eps) in enumerate(LESION_FEATURES):
        if kind == "ratio":
            cols.append(np.log((np.maximum(lv[:, j], 0) + eps) / (max(lv[0, j], 0) + eps)))
        else:
            cols.append((lv[:, j] - lv[0, j]) / eps)
    les = np.stack(cols, axis=1)
    d = np.asarray(days, dtype=np.float64)
    since = np.log1p(np.maximum(d - d[0], 0)) / 5.0
    gap = np.log1p(np.maximum(np.diff(d, prepend=d[0]), 0)) / 5.0
    feats = np.concatenate([emb - emb[0], les, since[:, None], gap[:, None]], axis=1)
    return feats.astype(np.float32)


def pad_batch(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ``[T_i, D]`` sequences to ``[B, T_max, D]`` with a ``[B, T_max]`` bool mask."""
    if not seqs:
        raise DataError("no sequences to pad")
    T = max(len(s) for s in seqs)
    D = seqs[0].shape[1]
    x = np.zeros((len(seqs), T, D), dtype=np.float32)
    mask = np.zeros((len(seqs), T), dtype=bool)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
        mask[i, :len(s)] = True
    return x, mask


# ---- one spot? ------------------------------------------------------------------------------

#: what :func:`same_spot_features` compares between two photos: the cosine similarity of their
#: embeddings, and absolute differences of lesion measurements (centre-vs-periphery darkness and
#: redness, the reference skin's L* and its a*b* distance)
SAME_SPOT_FEATURES = ("cosine", "centre_darkness", "centre_redness", "skin_l", "skin_ab")
#: logistic weights of "these two photos show different spots", with the embedding cosine and
#: with lesion measurements only; a pair scoring above 0 is flagged. Fitted by
#: ``benchmarks/trend_consistency.py`` (synthetic progressions of HAM10000 and Fitzpatrick17k
#: lesions against pairs of different lesions, embeddings of the default model
#: ``models/ham10000``; the intercept flags 1 % of the fitting half's same-spot pairs). On
#: held-out lesions: 1.3 % (measures only 1.8 %) of same-spot pairs flagged, 76 % (50 %) of
#: different-spot pairs and 92 % (72 %) of series of three different lesions caught.
SAME_SPOT: dict[str, dict[str, float]] = {
    "embedding": {"intercept": -1.3383, "cosine": -7.9727, "centre_darkness": 0.1938,
                  "centre_redness": 0.1475, "skin_l": 0.0259, "skin_ab": 0.1005},
    "measures": {"intercept": -7.1127, "centre_darkness": 0.2561, "centre_redness": 0.187,
                 "skin_l": 0.0396, "skin_ab": 0.1254},
}
#: the classifier (``model_id``) whose embeddings the "embedding" weights were fitted on: photos
#: embedded by another are compared by their lesion measurements only
SAME_SPOT_EMBEDDING_MODEL = "cf08aa46c8feeefb70c4c2325b66bbb1b636548780a55dee66b4ea07254cdc36"


def same_spot_features(a: dict, b: dict, emb_a: np.ndarray | None = None,
                       emb_b: np.ndarray | None = None) -> dict[str, float]:
    """:data:`SAME_SPOT_FEATURES` of two photos' lesion measurements (and embeddings; without
    them ``cosine`` is absent). A measurement missing from either photo (older rows have no
    ``skin_a``/``skin_b``) counts as no difference."""

    def diff(*keys: str) -> float:
        if any(a.get(k) is None or b.get(k) is None for k in keys):
            return 0.0
        return float(np.sqrt(sum((float(a[k]) - float(b[k])) ** 2 for k in keys)))

    out = {"centre_darkness": diff("centre_darkness"), "centre_redness": diff("centre_redness"),
           "skin_l": diff("skin_l"), "skin_ab": diff("skin_a", "skin_b")}
    if emb_a is not None and emb_b is not None:
        ea, eb = np.asarray(emb_a, np.float64).ravel(), np.asarray(emb_b, np.float64).ravel()
        norm = float(np.linalg.norm(ea) * np.linalg.norm(eb))
        out["cosine"] = float(ea @ eb / norm) if norm > 0 else 0.0
    return out


def same_spot_score(a: dict, b: dict, weights: dict[str, float],
                    emb_a: np.ndarray | None = None, emb_b: np.ndarray | None = None) -> float:
    """The logistic score (log-odds, threshold folded into the intercept) that two photos show
    different spots: above 0, they do not look like the same spot."""
    f = same_spot_features(a, b, emb_a, emb_b)
    return float(weights["intercept"] + sum(w * f[k] for k, w in weights.items()
                                            if k != "intercept"))


def spot_mismatches(lesions: list[dict], embeddings: np.ndarray | None = None,
                    model_id: str | None = None) -> list[dict]:
    """Consecutive photos (oldest first) that do not look like the same spot.

    ``lesions``: the photos' :func:`~dermsight.track.lesion.measure_lesion` dicts;
    ``embeddings``: ``[T, F]`` from the classifier ``model_id``, used when that is
    :data:`SAME_SPOT_EMBEDDING_MODEL` (else, or None: lesion measurements only). Returns one
    dict per flagged pair: ``index`` (the later photo's position), ``score`` (see
    :func:`same_spot_score`), the compared features and the checks used.
    """
    if model_id != SAME_SPOT_EMBEDDING_MODEL:
        embeddings = None
    kind = "embedding" if embeddings is not None else "measures"
    weights = SAME_SPOT[kind]
    out = []
    for t in range(1, len(lesions)):
        ea = eb = None
        if embeddings is not None:
            ea, eb = embeddings[t - 1], embeddings[t]
        score = same_spot_score(lesions[t - 1], lesions[t], weights, ea, eb)
        if score > 0:
            f = same_spot_features(lesions[t - 1], lesions[t], ea, eb)
            out.append({"index": t, "score": round(score, 3), "checks": kind,
                        **{k: round(v, 3) for k, v in f.items()}})
    return out


# ---- baseline ------------------------------------------------------------------------------

@dataclass
class SeverityBaseline:
    """Thresholds on the log change of the lesion severity score, first → last visit."""

    low: float = -0.25
    high: float = 0.25

    @staticmethod
    def score(lesions: list[dict]) -> float:
        s0 = float(lesions[0].get("severity", 0.0) or 0.0)
        s1 = float(lesions[-1].get("severity", 0.0) or 0.0)
        return float(np.log((s1 + EPS) / (s0 + EPS)))

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> SeverityBaseline:
        """Choose (low, high) maximising training accuracy over a quantile grid."""
        scores = np.asarray(scores, dtype=float)
        labels = np.asarray(labels)
        grid = np.unique(np.quantile(scores, np.linspace(0.02, 0.98, 49)))
        best = (-1.0, self.low, self.high)
        for i, lo in enumerate(grid):
            for hi in grid[i:]:
                acc = float(np.mean(self._classify(scores, lo, hi) == labels))
                if acc > best[0]:
                    best = (acc, float(lo), float(hi))
        self.low, self.high = best[1], best[2]
        return self

    @staticmethod
    def _classify(scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.where(scores < lo, 0, np.where(scores > hi, 2, 1))

    def predict_proba(self, scores: np.ndarray) -> np.ndarray:
        """Pseudo-probabilities ``[N, 3]`` (softmax of distances to the thresholds)."""
        s = np.asarray(scores, dtype=float)
        mid = (self.low + self.high) / 2
        half = max((self.high - self.low) / 2, 1e-3)
        logits = np.stack([(self.low - s), half - np.abs(s - mid), (s - self.high)], axis=1)
        logits = logits / half
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return self._classify(np.asarray(scores, dtype=float), self.low, self.high)


# ---- the ONNX model at serving time ---------------------------------------------------------

class TrendModel:
    """The exported trend model run with onnxruntime (no torch)."""

    def __init__(self, session, meta: dict) -> None:
        self.session = session
        self.meta = meta
        self.emb_dim = int(meta["embedding_dim"])
        # model_id of the classifier whose embeddings it was trained on (None: unknown, so the
        # trend model is used for no photo)
        self.embedding_model = meta.get("embedding_model")
        self.classes = tuple(meta.get("classes", CLASSES))
        self.baseline = SeverityBaseline(**meta.get("baseline", {}))

    @classmethod
    def load(cls, model_dir: str | Path) -> TrendModel:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        onnx_path, meta_path = model_dir / MODEL_FILE, model_dir / META_FILE
        for p in (onnx_path, meta_path):
            if not p.exists():
                raise ConfigError(f"trend model: '{p}' not found (run benchmarks/trend.py)")
        meta = json.loads(meta_path.read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        return cls(sess, meta)

    def predict_proba(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[B, T, D]`` features + ``[B, T]`` mask → ``[B, 3]`` probabilities."""
        logits = self.session.run(["logits"], {"features": x.astype(np.float32),
                                               "mask": mask.astype(np.float32)})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict_series(self, embeddings: np.ndarray | None, lesions: list[dict],
                       days: list[float]) -> dict:
        """Trend of one series (≥ 2 visits): label, probability, per-class probabilities."""
        feats = sequence_features(embeddings, lesions, days, self.emb_dim)
        x, mask = pad_batch([feats])
        p = self.predict_proba(x, mask)[0]
        k = int(np.argmax(p))
        return {"label": self.classes[k], "probability": float(p[k]),
                "probabilities": {c: float(v) for c, v in zip(self.classes, p)}}


# ---- training (torch, only here) ------------------------------------------------------------

def _torch_net(in_dim: int, scale: np.ndarray, hidden: int = 64, dropout: float = 0.2,
               emb_dim: int = 0, projection: np.ndarray | None = None):
    import torch
    from torch import nn

    class TrendNet(nn.Module):
        """Fixed PCA projection of the embedding change (``[emb_dim, K]``, from the training
        embeddings), standardisation, a projection, a GRU read at the last valid visit."""

        def __init__(self) -> None:
            super().__init__()
            self.emb_dim = emb_dim
            proj = (np.zeros((emb_dim, 0), np.float32) if projection is None
                    else projection.astype(np.float32))
            self.register_buffer("projection", torch.as_tensor(proj))
            self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
            width = proj.shape[1] + in_dim - emb_dim
            self.inp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout))
            self.gru = nn.GRU(hidden, hidden, batch_first=True)
            self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(),
                                      nn.Dropout(dropout), nn.Linear(hidden, len(CLASSES)))

        def forward(self, features, mask):
            emb = features[..., :self.emb_dim] @ self.projection
            z = torch.cat([emb, features[..., self.emb_dim:]], dim=-1) / self.scale
            h = self.inp(z)
            h = h * mask.unsqueeze(-1)
            out, _ = self.gru(h)
            last = (mask.sum(dim=1) - 1).clamp(min=0).long()
            onehot = nn.functional.one_hot(last, out.shape[1]).to(out.dtype).unsqueeze(-1)
            g = (out * onehot).sum(dim=1)
            x = (h * onehot).sum(dim=1)
            return self.head(torch.cat([g, x], dim=1))

    return TrendNet()


def embedding_projection(train_x: list[np.ndarray], emb_dim: int, k: int) -> np.ndarray:
    """``[emb_dim, k]`` principal directions of the training embedding changes (no centring:
    a change of zero must stay zero)."""
    rows = np.concatenate([x[1:, :emb_dim] for x in train_x if len(x) > 1], axis=0)
    k = max(0, min(k, rows.shape[0], emb_dim))
    if k == 0:
        return np.zeros((emb_dim, 0), np.float32)
    _, _, vt = np.linalg.svd(rows.astype(np.float64), full_matrices=False)
    return vt[:k].T.astype(np.float32)


def train_trend(train_x: list[np.ndarray], train_y: np.ndarray, *, seed: int = 0,
                epochs: int = 60, lr: float = 2e-3, weight_decay: float = 1e-3,
                hidden: int = 64, batch_size: int = 64, augment_drop: float = 0.3,
                emb_dim: int = 0, emb_components: int = 16):
    """Fit :class:`TrendNet` on feature sequences; returns the torch module (eval mode).

    The first ``emb_dim`` features (the embedding change) are reduced to their
    ``emb_components`` principal directions on the training set (a fixed layer of the network,
    so the exported model still takes the raw features). ``augment_drop``: per epoch, each
    training sequence longer than 2 visits loses some middle visits with this probability, so
    the model sees every length.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    proj = embedding_projection(train_x, emb_dim, emb_components) if emb_dim else None
    allx = np.concatenate(train_x, axis=0)
    reduced = (np.concatenate([allx[:, :emb_dim] @ proj, allx[:, emb_dim:]], axis=1)
               if proj is not None else allx)
    scale = np.maximum(reduced.std(axis=0), 1e-3).astype(np.float32)
    net = _torch_net(allx.shape[1], scale, hidden=hidden, emb_dim=emb_dim, projection=proj)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * int(np.ceil(len(train_x) / batch_size)))
    y = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    for _ in range(epochs):
        net.train()
        order = rng.permutation(len(train_x))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            seqs = []
            for i in idx:
                s = train_x[i]
                if len(s) > 2 and rng.random() < augment_drop:
                    keep = np.sort(rng.choice(np.arange(1, len(s) - 1),
                                              rng.integers(0, len(s) - 1), replace=False))
                    s = s[np.concatenate([[0], keep, [len(s) - 1]])]
                seqs.append(s)
            x, m = pad_batch(seqs)
            logits = net(torch.from_numpy(x), torch.from_numpy(m.astype(np.float32)))
            loss = torch.nn.functional.cross_entropy(logits, y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


def torch_predict_proba(net, seqs: list[np.ndarray]) -> np.ndarray:
    import torch

    x, m = pad_batch(seqs)
    with torch.no_grad():
        logits = net(torch.from_numpy(x), torch.from_numpy(m.astype(np.float32)))
    return torch.softmax(logits, dim=1).numpy()


def export_trend(net, out_dir: str | Path, meta: dict) -> Path:
    """Export ``net`` to ``out_dir/trend.onnx`` (+ ``trend.json``), checked against torch."""
    import onnxruntime as ort
    import torch

    from dermsight.io import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    in_dim = int(net.emb_dim + net.scale.shape[0] - net.projection.shape[1])
    x = torch.randn(2, 5, in_dim)
    m = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.float32)
    tmp = out_dir / ".trend.export.onnx"
    with warnings.catch_warnings():  # the legacy exporter's deprecation and GRU notes
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x, m), str(tmp), input_names=["features", "mask"],
                          output_names=["logits"], dynamo=False, opset_version=17,
                          dynamic_axes={"features": {0: "batch", 1: "visits"},
                                        "mask": {0: "batch", 1: "visits"},
                                        "logits": {0: "batch"}})
    data = tmp.read_bytes()
    tmp.unlink()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for B, T in ((1, 2), (3, 3), (3, 7), (1, 6)):
        xx = torch.randn(B, T, in_dim)
        mm = torch.ones(B, T)
        mm[B // 2, 2:] = 0
        with torch.no_grad():
            ref = net(xx, mm).numpy()
        got = sess.run(["logits"], {"features": xx.numpy(), "mask": mm.numpy()})[0]
        if not np.allclose(ref, got, atol=1e-4):
            raise RuntimeError(f"ONNX trend model differs from torch (max |Δ| "
                               f"{np.abs(ref - got).max():.2e} at {T} visits)")
    atomic_write_bytes(out_dir / MODEL_FILE, data)
    atomic_write_text(out_dir / META_FILE, json.dumps(meta, indent=2))
    return out_dir / MODEL_FILE
