"""The torch-free inference engine: an exported model folder → calibrated predictions.

Runs on onnxruntime + numpy with the training code's own preprocessing
(:class:`~dermsight.data.preprocess.Preprocess`) and metadata encoding
(:class:`~dermsight.data.metadata.MetadataEncoder`), both restored from ``model.json`` (read
through :class:`dermsight.schemas.ModelJson`); photo quality and skin tone come from
:mod:`dermsight.features` (prepare's code). This module never imports torch (a test proves it).

Per image, :meth:`Engine.predict` returns a :class:`~dermsight.serve.prediction.Prediction`
(files and folders for ``dermsight predict``: :mod:`dermsight.serve.files`): temperature-scaled
probabilities, top-k, the conformal prediction set (and the same in plain words), lighting
(the model's photo-quality head plus prepare's checks, with retake tips), skin tone (ITA,
category, light / medium / dark bucket, Monk), the pooled embedding, and optionally a Grad-CAM
map computed from the graph's ``feature_map`` and ``class_gradients`` outputs (see
:mod:`dermsight.export.graph`).

Metadata: a dict per image (or None). Unknown fields, unknown categorical values, non-numbers
and out-of-range numbers raise :class:`~dermsight.errors.DataError` naming the field and value
(``strict=True``, the default); with ``strict=False`` they are ignored and named in
``Prediction.warnings``. Missing or empty values are fine: the model encodes them as missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dermsight.data.metadata import MetadataEncoder
from dermsight.data.preprocess import Preprocess
from dermsight.errors import ConfigError, DataError
from dermsight.features.quality import TIPS, QualityThresholds, failed_checks
from dermsight.features.skintone import compute_skin_tone
from dermsight.imaging import downscale
from dermsight.io import project_folder, sha256_file
from dermsight.predsets import served_sets
from dermsight.schemas import FileEntry, ModelJson, display_names, read_json
from dermsight.serve.hierarchy import Hierarchy
from dermsight.serve.hierarchy import words_or as _words
from dermsight.serve.prediction import Prediction

__all__ = ["DEFAULT_MODEL_DIR", "Engine", "Prediction", "default_model_dir", "grad_cam_maps"]

MODEL_JSON = "model.json"
PRECISIONS = ("auto", "int8", "fp32")
ENV_MODEL_DIR = "DERMSIGHT_MODEL_DIR"
FEATURE_SIZE = 512  # long side at which quality and skin tone are measured (as in prepare)
MODEL_TIP = ("The photo looks poor to the model: retake it in even daylight, in focus, with the "
             "skin area filling the frame.")
LOW_SKIN_FRACTION = 0.05


def default_model_dir() -> Path:
    """Where the default model lives: ``$DERMSIGHT_MODEL_DIR`` when set; else ``models/ham10000``
    of the source checkout this package runs from (editable / development installs); else
    ``./models/ham10000`` under the current directory."""
    return project_folder("models/ham10000", env_var=ENV_MODEL_DIR,
                          is_valid=lambda p: (p / MODEL_JSON).is_file())


DEFAULT_MODEL_DIR = default_model_dir()


def open_session(folder: Path, meta_path: Path, files: Mapping[str, FileEntry], *,
                 precision: str = "auto", threads: int | None = None, verify: bool = True,
                 what: str = "model") -> tuple[Any, str]:
    """The onnxruntime session of the ``precision`` file listed in ``files`` (a model folder's
    model.json, or a router folder's router.json at ``meta_path``), and the precision chosen:
    ``"auto"`` takes int8 when the folder has it. ``verify`` checks the file's sha256.

    Raises:
        ConfigError: an unknown precision, a missing or corrupt file, or one onnxruntime cannot
            load (the message names the file).
    """
    import onnxruntime as ort

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        has_int8 = "int8" in files and (folder / files["int8"].path).is_file()
        precision = "int8" if has_int8 else "fp32"
    entry = files.get(precision)
    if entry is None or not (folder / entry.path).is_file():
        raise ConfigError(f"{folder} has no {precision} {what} "
                          f"({entry.path if entry else f'not listed in {meta_path.name}'})")
    path = folder / entry.path
    if verify and entry.sha256 and sha256_file(path) != entry.sha256:
        raise ConfigError(f"{path} does not match the sha256 in {meta_path}: the file is "
                          "corrupt or was replaced; export the model again")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ConfigError(f"onnxruntime cannot load {path}: {exc}") from exc
    return session, precision


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def grad_cam_maps(feature_map: np.ndarray, class_gradients: np.ndarray, targets: Sequence[int],
                  input_size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM (n, H, W) in [0, 1] at the model input size, as ``pytorch_grad_cam.GradCAM``
    computes it on the layer that produces ``feature_map``.

    ``feature_map`` (n, F, h, w) is the activation A; ``class_gradients`` (n, C, F) holds
    d logit_c / d mean_ij(A). The channel weights are the spatial mean of d logit / dA, i.e.
    ``class_gradients[c] / (h·w)``; the map is ReLU(Σ_k w_k A_k), min-max scaled, resized
    (bilinear) to ``input_size`` (H, W).
    """
    n, _, h, w = feature_map.shape
    out = np.zeros((n, *input_size), np.float32)
    for i, c in enumerate(targets):
        weights = class_gradients[i, int(c)] / float(h * w)
        cam = np.maximum(np.tensordot(weights, feature_map[i], axes=1), 0.0)
        cam = cam - cam.min()
        cam = cam / (1e-7 + cam.max())
        out[i] = cv2.resize(cam.astype(np.float32), (input_size[1], input_size[0]))
    return out


class Engine:
    """A loaded model folder. Build with :meth:`Engine.load`; thread-safe for ``predict``."""

    #: images per ``session.run`` (a longer list runs in several batches)
    batch_size: int = 32

    def __init__(self, model_dir: Path, info: ModelJson | dict, session: Any,
                 precision: str) -> None:
        model = info if isinstance(info, ModelJson) else \
            ModelJson.parse(info, model_dir / MODEL_JSON)
        self.model_dir = model_dir
        #: model.json as read (what GET /v1/model shows)
        self.info = model.dump()
        self.session = session
        self.precision = precision
        try:
            self.classes: list[str] = list(model.classes)
            self.preprocess = Preprocess.from_dict(model.preprocess)
            meta = model.metadata or None
            self.encoder = MetadataEncoder.from_dict(meta["encoder"]) if meta else None
            self.metadata_schema: dict = dict(meta.get("schema") or {}) if meta else {}
            self.temperature = float(model.temperature or 1.0)
            self.conformal: dict = model.conformal.dump() if model.conformal else {}
            # the photo-alone path of a model with metadata: its own calibration, if fitted
            alone = model.without_metadata if self.encoder is not None else None
            self.alone_temperature = alone.temperature if alone else None
            self.alone_conformal: dict = alone.conformal.dump() if alone and alone.conformal \
                else {}
            quality = model.quality_thresholds
            self.quality_thresholds = QualityThresholds(**quality) if quality else \
                QualityThresholds()
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{model_dir / MODEL_JSON} is malformed: {exc}") from exc
        if not self.temperature > 0:
            raise ConfigError(f"{model_dir / MODEL_JSON}: temperature must be > 0, "
                              f"got {self.temperature}")
        self.display_names = display_names(self.classes, model.display_names)
        self.hierarchy = Hierarchy.from_info(model.hierarchy, self.classes, model.synonyms,
                                             self.display_names,
                                             where=str(model_dir / MODEL_JSON))
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.supports_cam = {"feature_map", "class_gradients"} <= set(self.output_names) \
            and bool((model.cam or {}).get("supported", True))

    # ---- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path | None = None, *, precision: str = "auto",
             threads: int | None = None, verify: bool = True) -> Engine:
        """Load a model folder written by ``dermsight export``.

        Args:
            model_dir: the folder (``model.json`` + ONNX files); None = :data:`DEFAULT_MODEL_DIR`.
            precision: ``"int8"``, ``"fp32"`` or ``"auto"`` (int8 when the folder has it).
            threads: onnxruntime intra-op threads (None = onnxruntime's default).
            verify: check the ONNX file's sha256 against ``model.json``.
        """
        folder = Path(model_dir) if model_dir is not None else default_model_dir()
        meta_path = folder / MODEL_JSON
        if not meta_path.is_file():
            raise ConfigError(f"{folder} is not a dermsight model folder: {meta_path} is missing "
                              "(create one with `dermsight export`)")
        info = read_json(ModelJson, meta_path)
        session, precision = open_session(folder, meta_path, info.files, precision=precision,
                                          threads=threads, verify=verify)
        return cls(folder, info, session, precision)

    @property
    def model_id(self) -> str | None:
        """Identity of the weights: the sha256 of the fp32 graph recorded in model.json (the same
        for the fp32 and int8 files of one export). Embeddings of different models are not
        comparable; the trend model checks this."""
        fp32 = (self.info.get("files") or {}).get("fp32") or {}
        return fp32.get("sha256") or self.info.get("version")

    # ---- metadata ---------------------------------------------------------------------------
    @property
    def metadata_fields(self) -> tuple[str, ...]:
        return self.encoder.fields if self.encoder is not None else ()

    def _clean_metadata(self, meta: Mapping | None, where: str, strict: bool
                        ) -> tuple[dict, list[str]]:
        """Validated metadata of one image (values normalised) and the warnings."""
        if meta is None:
            return {}, []
        if not isinstance(meta, Mapping):
            raise DataError(f"{where}metadata must be a dict of field -> value, "
                            f"got {type(meta).__name__}")
        clean: dict[str, Any] = {}
        problems: list[str] = []
        numeric = self.metadata_schema.get("numeric") or {}
        categorical = self.metadata_schema.get("categorical") or {}
        multi = self.metadata_schema.get("multi_label") or {}
        for name, value in meta.items():
            if value is None or (isinstance(value, str) and not value.strip()) \
                    or (isinstance(value, float) and math.isnan(value)):
                continue
            if name not in self.metadata_fields:
                known = ", ".join(self.metadata_fields) or "none"
                problems.append(f"unknown metadata field '{name}' (this model accepts: {known})")
            elif name in numeric:
                problem, number = _check_number(name, value, numeric[name] or {})
                if problem:
                    problems.append(problem)
                else:
                    clean[name] = number
            elif name in categorical:
                text = str(value).strip().lower()
                if text not in categorical[name]:
                    problems.append(f"unknown value {value!r} for metadata field '{name}' "
                                    f"(allowed: {', '.join(categorical[name])})")
                else:
                    clean[name] = text
            elif name in multi:
                items = value if isinstance(value, list | tuple) else str(value).split("|")
                items = [str(i).strip().lower() for i in items if str(i).strip()]
                bad = [i for i in items if i not in multi[name]]
                if bad:
                    problems.append(f"unknown value(s) {bad} for metadata field '{name}' "
                                    f"(allowed: {', '.join(multi[name])})")
                elif items:
                    clean[name] = "|".join(items)
            else:  # a field of the encoder the schema does not describe: let the encoder read it
                clean[name] = value
        if problems and strict:
            raise DataError(where + "; ".join(problems))
        return clean, [f"{where}{p}; ignored" for p in problems]

    # ---- prediction -------------------------------------------------------------------------
    def predict(self, images: list[np.ndarray], metadata: list[dict | None] | None = None, *,
                top_k: int = 3, cam: bool = False, strict: bool = True) -> list[Prediction]:
        """Predict RGB uint8 ``(H, W, 3)`` images (any sizes), with optional metadata per image.

        Raises:
            DataError: a bad image or bad metadata (the message names the image and field).
        """
        images = list(images)
        if metadata is None:
            metadata = [None] * len(images)
        metadata = list(metadata)
        if len(metadata) != len(images):
            raise DataError(f"metadata has {len(metadata)} entries for {len(images)} images")
        if not 1 <= int(top_k):
            raise DataError(f"top_k must be >= 1, got {top_k}")
        if cam and not self.supports_cam:
            raise ConfigError(f"the model in {self.model_dir} has no Grad-CAM outputs")
        for i, rgb in enumerate(images):
            if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3
                    and rgb.dtype == np.uint8 and min(rgb.shape[:2]) >= 1):
                got = (f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray)
                       else type(rgb).__name__)
                raise DataError(f"image {i}: expected an RGB uint8 HxWx3 array, got {got}")
        many = len(images) > 1
        cleaned = [self._clean_metadata(m, f"image {i}: " if many else "", strict)
                   for i, m in enumerate(metadata)]
        out: list[Prediction] = []
        for s in range(0, len(images), self.batch_size):
            sl = slice(s, s + self.batch_size)
            out += self._predict_batch(images[sl], cleaned[sl], top_k=int(top_k), cam=cam)
        return out

    def run(self, images: list[np.ndarray], metadata: list[dict] | None = None,
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Raw graph outputs (logits, not probabilities) for one batch: ``{name: array}``.
        ``metadata`` holds already validated dicts (``{}`` = none)."""
        feeds = self.feeds(self.preprocess.batch(images), metadata)
        names = list(outputs) if outputs is not None else self.output_names
        return dict(zip(names, self.session.run(names, feeds), strict=True))

    def feeds(self, x: np.ndarray, metadata: list[dict] | None = None) -> dict[str, np.ndarray]:
        """The graph's inputs for preprocessed images ``x`` (N, 3, H, W) and metadata dicts."""
        feeds = {"image": np.ascontiguousarray(x, np.float32)}
        if "meta" in self.input_names:
            metadata = metadata if metadata is not None else [{}] * len(x)
            feeds["meta"] = self.encoder.transform([dict(m or {}) for m in metadata])
            feeds["has_meta"] = np.array([1.0 if m else 0.0 for m in metadata], np.float32)
        return feeds

    def _predict_batch(self, images: list[np.ndarray], cleaned: list[tuple[dict, list[str]]],
                       *, top_k: int, cam: bool) -> list[Prediction]:
        wanted = ["diagnosis_logits", "embedding"]
        if "lighting_logit" in self.output_names:
            wanted.append("lighting_logit")
        if cam:
            wanted += ["feature_map", "class_gradients"]
        raw = self.run(images, [c[0] for c in cleaned], wanted)
        alone = np.array([not c[0] for c in cleaned]) & (self.alone_temperature is not None)
        temperature = np.where(alone, self.alone_temperature or 1.0, self.temperature)
        probs = softmax(raw["diagnosis_logits"].astype(np.float64) / temperature[:, None])
        p_poor = (1.0 / (1.0 + np.exp(-raw["lighting_logit"].astype(np.float64)))
                  if "lighting_logit" in raw else [None] * len(images))
        photos = [self._photo(rgb, p) for rgb, p in zip(images, p_poor)]
        tones = [tone for _, tone, _ in photos]
        sets = self.conformal_sets(probs, tones)
        if alone.any():  # photos sent without metadata: the photo-alone path's thresholds
            sets[alone] = self.conformal_sets(probs[alone], [t for t, a in zip(tones, alone) if a],
                                              conformal=self.alone_conformal)
        cams = None
        if cam:
            maps = grad_cam_maps(raw["feature_map"], raw["class_gradients"], probs.argmax(1),
                                 self.preprocess.input_size)
            cams = [self.cam_to_image(m, rgb.shape[:2]) for m, rgb in zip(maps, images)]
        k = min(top_k, len(self.classes))
        out = []
        for i in range(len(images)):
            order = np.argsort(-probs[i], kind="stable")[:k]
            ranked = np.argsort(-probs[i], kind="stable")  # the set, most probable first
            members = [self.classes[j] for j in ranked if sets[i, j]]
            lighting, tone, notes = photos[i]
            out.append(Prediction(
                probabilities={c: float(p) for c, p in zip(self.classes, probs[i])},
                top_k=[(self.classes[j], float(probs[i, j])) for j in order],
                conformal_set=members,
                conformal_text=_words([self.display_names[c] for c in members]),
                conformal_coverage=_coverage(self.alone_conformal if alone[i]
                                             else self.conformal),
                lighting=lighting, skin_tone=tone,
                embedding=np.asarray(raw["embedding"][i], np.float32),
                cam=None if cams is None else cams[i],
                warnings=cleaned[i][1] + notes,
                groups=None if self.hierarchy is None else self.hierarchy.groups(probs[i]),
                summary=None if self.hierarchy is None else self.hierarchy.summary(probs[i]),
            ))
        return out

    # ---- conformal sets ---------------------------------------------------------------------
    def conformal_sets(self, probs: np.ndarray, tones: Sequence[Mapping] | None = None, *,
                       conformal: Mapping | None = None) -> np.ndarray:
        """Bool (n, C) prediction sets from calibrated ``probs`` with model.json's conformal
        settings (LAC: 1 − p ≤ q; APS: cumulative probability up to the class ≤ q; per-class
        thresholds in "class" mode; in "group" mode one threshold per skin-tone group, picked
        from each photo's measured tone in ``tones`` (``Prediction.skin_tone`` dicts), the
        marginal threshold where the tone is unknown). Without settings: the top class only.
        The top class is always in the set. ``conformal``: other settings than model.json's
        main ones (e.g. the photo-alone path's)."""
        conf = self.conformal if conformal is None else conformal
        return served_sets(probs, conf, self.classes, tones)

    # ---- Grad-CAM ---------------------------------------------------------------------------
    def cam_to_image(self, cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A map at the model input size → the original image's ``shape`` (h, w): the inverse
        of the resize-and-centre-crop (the cropped-away border is 0)."""
        h, w = shape
        ch, cw = self.preprocess.cover_size
        th, tw = self.preprocess.input_size
        scale = max(ch / h, cw / w)
        nh, nw = max(ch, round(h * scale)), max(cw, round(w * scale))
        top, left = (nh - th) // 2, (nw - tw) // 2
        canvas = np.zeros((nh, nw), np.float32)
        canvas[top:top + th, left:left + tw] = cam
        out = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA if scale > 1
                         else cv2.INTER_LINEAR)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    # ---- photo quality and skin tone --------------------------------------------------------
    def _photo(self, rgb: np.ndarray, p_poor: float | None) -> tuple[dict, dict, list[str]]:
        from dermsight.features.quality import compute_quality

        notes: list[str] = []
        work = downscale(rgb, FEATURE_SIZE)
        try:
            checks = failed_checks(compute_quality(work), self.quality_thresholds)
        except ValueError as exc:  # too small to measure
            checks, notes = [], [f"photo quality not measured: {exc}"]
        tips = [TIPS[c] for c in checks]
        model_poor = p_poor is not None and p_poor >= self.quality_thresholds.model_poor
        if model_poor and not checks:
            checks, tips = ["model"], [MODEL_TIP]
        lighting = {"score": None if p_poor is None else float(p_poor),
                    "ok": not checks, "checks": checks, "tips": tips}
        try:
            tone = compute_skin_tone(work)
        except ValueError as exc:
            notes.append(f"skin tone not measured: {exc}")
            return lighting, {"ita": None, "category": None, "bucket": None, "monk": None}, notes
        if tone["skin_fraction"] < LOW_SKIN_FRACTION:
            notes.append("skin tone is a rough estimate: little clear skin is visible around "
                         "the lesion")
        ita = float(tone["ita"])
        return lighting, {"ita": ita if math.isfinite(ita) else None,
                          "category": tone["ita_category"], "bucket": tone["tone_bucket"],
                          "monk": int(tone["monk_estimate"]),
                          "skin_fraction": float(tone["skin_fraction"])}, notes


def _coverage(conformal: Mapping) -> float | None:
    value = conformal.get("coverage")
    return None if value is None else float(value)


def _check_number(name: str, value: Any, bounds: Mapping) -> tuple[str | None, float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"metadata field '{name}' must be a number, got {value!r}", math.nan
    if not math.isfinite(number):
        return f"metadata field '{name}' must be a finite number, got {value!r}", math.nan
    lo, hi = bounds.get("min"), bounds.get("max")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        return (f"metadata field '{name}' must be between {lo} and {hi}, got {number:g}",
                math.nan)
    return None, number
