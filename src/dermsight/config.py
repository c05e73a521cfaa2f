"""Configuration: one pydantic schema, the single source of truth.

Precedence: schema defaults < YAML file < command-line ``key=value`` overrides (dotted keys,
values parsed as YAML scalars). Unknown keys anywhere are errors, reported with their dotted path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dermsight.errors import ConfigError
from dermsight.features.quality import QualityThresholds

TTA_MODES = ("none", "hflip", "flips", "d4")
TTAMode = Literal["none", "hflip", "flips", "d4"]


def tta_mode(value: Any) -> str:
    """A test-time augmentation setting as one of :data:`TTA_MODES`.

    ``"none"`` one view; ``"hflip"`` + the horizontal flip (2 views); ``"flips"`` + the vertical
    flip and both (4 views, rotation by 180° included); ``"d4"`` + the transposes of those (8 views:
    every flip and rotation by 90°, square inputs only). Older configs and calibration files
    wrote a bool: ``True`` is ``"hflip"``, ``False`` / ``None`` is ``"none"``.
    """
    if value is None or value is False:
        return "none"
    if value is True:
        return "hflip"
    if isinstance(value, str) and value.strip().lower() in TTA_MODES:
        return value.strip().lower()
    raise ValueError(f"test-time augmentation must be one of {', '.join(TTA_MODES)} "
                     f"(or true / false), got {value!r}")


def tta_or_none(value: Any) -> str | None:
    """:func:`tta_mode` of a stored value, or None when it is not a TTA setting at all."""
    try:
        return tta_mode(value)
    except ValueError:
        return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Strict):
    """How `prepare` assigns train/val/test when the source gives no official split."""

    val_fraction: float = Field(0.15, ge=0, lt=1, description="share of groups for validation")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="share of groups for test")
    min_class_count: int = Field(
        10, ge=0, description="classes with fewer kept images are merged or dropped")
    rare_classes: Literal["other", "drop", "keep"] = Field(
        "other", description="what to do with rare classes: merge into 'other', drop, keep")


class DedupeConfig(_Strict):
    """Near-duplicates: pHash candidates, verified on 16×16 colour thumbnails."""

    enabled: bool = True
    max_distance: int = Field(
        10, ge=0, le=32, description="max Hamming distance between 64-bit pHashes of candidates")
    max_thumb_distance: float = Field(
        4.0, ge=0, description="max RMS difference (0-255) of 16x16 colour thumbnails")


class ImageCheckConfig(_Strict):
    """What makes an image unusable (it is excluded and listed in the audit)."""

    min_side: int = Field(32, ge=1, description="images with a shorter side are 'too small'")
    max_pixels: int = Field(
        80_000_000, ge=1, description="larger images are refused (decompression-bomb guard)")
    feature_size: int = Field(
        512, ge=64, description="long side (px) images are downscaled to before measuring")


class PrepareConfig(_Strict):
    """`dermsight prepare`: read a source, validate and measure every image, split, audit."""

    source: str = Field("synthetic", description="registered source name (see `dermsight sources`)")
    root: str | None = Field(
        None, description="dataset root: local path or fsspec URL (synthetic: data/synthetic)")
    out: str = Field("runs/prepare", description="output folder")
    workers: int = Field(2, ge=1, description="processes measuring images")
    seed: int = Field(0, description="seed for the splits")
    source_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the chosen source (checked by it)")
    figures: bool = Field(True, description="write OUT/figures/*.png")
    images: ImageCheckConfig = Field(default_factory=ImageCheckConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    quality: QualityThresholds = Field(default_factory=QualityThresholds)

    def resolved_root(self) -> str:
        if self.root:
            return self.root
        if self.source == "synthetic":
            return str(Path("data") / "synthetic")
        raise ConfigError(f"prepare.root: source '{self.source}' needs a dataset root (--root)")


class MetadataFields(_Strict):
    """Manifest columns the model sees besides the image (each with a missing indicator)."""

    numeric: list[str] = Field(default_factory=lambda: ["age"])
    categorical: list[str] = Field(default_factory=lambda: ["sex", "body_site"])
    multi_label: list[str] = Field(default_factory=list, description="'|'-joined columns")
    min_frequency: int = Field(5, ge=1, description="rarer categories become 'other'")

    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.multi_label]


class AugmentConfig(BaseModel):
    """Training augmentation. ``AugmentConfig.eval()`` (``enabled: false``) = no augmentation."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: no augmentation at all (evaluation)")
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    vflip: float = Field(0.5, ge=0, le=1, description="probability of a vertical flip")
    rotate90: float = Field(
        0.0, ge=0, le=1, description="probability of a rotation by 90, 180 or 270 degrees "
        "(square inputs only); 1 with the flips draws every orientation equally often")
    rotate_limit: float = Field(
        20.0, ge=0, le=180, description="rotation drawn uniformly in ±rotate_limit degrees")
    scale: tuple[float, float] = Field(
        (0.9, 1.1), description="zoom factor range of the rotate/scale step")
    affine_p: float = Field(0.5, ge=0, le=1, description="probability of the rotate/scale step")
    crop_scale: tuple[float, float] = Field(
        (0.5, 1.0), description="random-resized-crop area range (share of the image)")
    crop_ratio: tuple[float, float] = Field(
        (0.75, 4 / 3), description="random-resized-crop aspect-ratio range (w/h)")
    brightness: float = Field(0.2, ge=0, le=1, description="colour jitter: brightness ±")
    contrast: float = Field(0.2, ge=0, le=1, description="colour jitter: contrast ±")
    saturation: float = Field(0.1, ge=0, le=1, description="colour jitter: saturation ±")
    hue: float = Field(0.02, ge=0, le=0.5, description="colour jitter: hue ± (share of a turn)")
    color_p: float = Field(0.8, ge=0, le=1, description="probability of the colour jitter")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        for name in ("scale", "crop_scale", "crop_ratio"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        if self.crop_scale[1] > 1:
            raise ValueError(f"crop_scale must be within (0, 1], got {self.crop_scale}")
        return self

    @classmethod
    def eval(cls) -> AugmentConfig:  # noqa: A003 (the evaluation preset)
        """No augmentation."""
        return cls(enabled=False)


class DataConfig(_Strict):
    """Which data trains the model, and how it is fed to it."""

    source: str = Field("synthetic", description="registered source name")
    root: str | None = Field(None, description="dataset root (local path or fsspec URL)")
    source_options: dict[str, Any] = Field(default_factory=dict)
    prepared: str | None = Field(
        None, description="prepared folder to read/write (default runs/prepared/<source>-<hash>)")
    input_size: tuple[int, int] | None = Field(
        None, description="(height, width) fed to the model; default: the backbone's")
    crop_pct: float | None = Field(
        None, gt=0, le=1, description="centre-crop fraction at evaluation (default: the "
        "backbone's, e.g. 0.875); training crops randomly, then zooms the same way")
    metadata: MetadataFields | None = Field(
        default_factory=MetadataFields, description="null: image only")
    batch_size: int = Field(32, ge=1, description="training images per optimiser step, over "
                            "all processes (each of N processes loads batch_size / N)")
    eval_batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0, description="data-loading processes")
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle", description="balanced: capped oversampling by label x tone bucket")
    sampler_cap: float = Field(5.0, gt=0, description="max oversampling factor")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    lighting_degrade_p: float = Field(
        0.3, ge=0, le=1, description="share of training images degraded on the fly")
    meta_dropout: float = Field(0.15, ge=0, le=1, description="per-field metadata dropout")
    quality_labels: Literal["prepare", "degradations"] = Field(
        "prepare", description="what the photo-quality head learns from besides the on-the-fly "
        "degradations: prepare's lighting_ok checks, or nothing (every undegraded training photo "
        "counts as acceptable: for curated photos whose checks are biased, e.g. by skin tone)")
    label_groups: list[list[str]] = Field(
        default_factory=list, description="groups of near-synonym classes (e.g. [acne, "
        "acne-vulgaris]); group_smoothing moves that share of each training target's weight "
        "evenly onto the other classes of its group")
    group_smoothing: float = Field(0.0, ge=0, lt=1)


class ModelConfig(_Strict):
    """The network (see dermsight.models.DermNet)."""

    name: str = "dermnet"
    backbone: str = Field("efficientnet_lite0", description="timm name (see list_backbones)")
    pretrained: bool | str = Field(
        True, description="true: packaged weights; false; a checkpoint path; 'hub' (online)")
    fusion: Literal["none", "concat", "gated"] = "concat"
    color_calibration: bool = True
    drop_rate: float = Field(0.2, ge=0, lt=1)
    meta_hidden: int = Field(64, ge=1)
    meta_dropout: float = Field(
        0.1, ge=0, lt=1, description="training-time probability of hiding a whole record's "
        "metadata (the 'no metadata' embedding replaces it): what teaches the photo-alone path")
    lighting_head: bool = True


class LossConfig(_Strict):
    diagnosis_weight: float = Field(1.0, ge=0)
    lighting_weight: float = Field(0.2, ge=0)
    color_l2: float = Field(1e-3, ge=0, description="pull of the colour matrix to identity")
    label_smoothing: float = Field(0.05, ge=0, lt=1)
    class_weights: bool = Field(True, description="inverse-frequency class weights")
    class_weight_cap: float = Field(10.0, gt=0)
    class_weight_power: float = Field(
        1.0, ge=0, le=1, description="weights = frequency^-power: 1 inverse frequency (balanced "
        "accuracy), 0 plain cross-entropy (accuracy), 0.5 between")
    diagnosis_on_degraded: bool = Field(
        True, description="false: photos degraded on the fly past the poor-lighting severity "
        "teach only the lighting head, not the diagnosis")


TrainGroup = Literal["heads", "color", "backbone_top", "backbone_rest"]


class PhaseConfig(_Strict):
    """One phase of fine-tuning: which parameter groups train, for how long, how fast."""

    name: str
    train: list[TrainGroup]
    epochs: int = Field(ge=0)
    lr: float = Field(gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    top_fraction: float = Field(0.3, gt=0, le=1, description="share of backbone blocks in "
                                "'backbone_top'")
    schedule: Literal["onecycle", "plateau", "constant"] = "onecycle"
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    early_stop_patience: int | None = Field(3, ge=1)
    cached_features: bool | None = Field(
        None, description="train on cached backbone features (default: when only heads train)")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="keep an exponential moving average of the weights "
        "(Lightning's EMAWeightAveraging, updated every step); validation, checkpoint choice "
        "and the phase's result use the averaged weights. e.g. 0.998; null: off")

    def uses_cache(self) -> bool:
        return self.train == ["heads"] if self.cached_features is None else self.cached_features


def _default_phases() -> list[PhaseConfig]:
    return [
        PhaseConfig(name="A", train=["heads"], epochs=10, lr=3e-3),
        PhaseConfig(name="B", train=["heads", "color"], epochs=2, lr=1e-3),
        PhaseConfig(name="C", train=["heads", "color", "backbone_top"], epochs=4, lr=5e-4),
    ]


class TrainConfig(_Strict):
    """Training with PyTorch Lightning; scale-out keys are passed to lightning.Trainer."""

    output_dir: str = "experiments"
    run_name: str | None = Field(None, description="default: <source>-<backbone>-<time>")
    seed: int = 0
    init_from: str | None = Field(
        None, description="start from the weights of an earlier run (its folder or a best.pt); "
        "its classes, backbone and metadata encoding must match this run's")
    phases: list[PhaseConfig] = Field(default_factory=_default_phases)
    monitor: Literal["val_balanced_accuracy", "val_accuracy", "val_auroc_macro",
                     "val_f1_macro", "val_loss"] = "val_balanced_accuracy"
    tta: TTAMode = Field("none", description="test-time augmentation for validation and the "
                         "report: none, hflip (2 views), flips (4: h, v, both) or d4 (8: flips "
                         "and 90-degree rotations, square input_size only); true = hflip")

    @field_validator("tta", mode="before")
    @classmethod
    def _tta(cls, value: Any) -> str:
        return tta_mode(value)
    accelerator: str = Field("auto", description="Lightning's: auto, cpu, gpu, cuda, mps")
    devices: int | str = Field("auto", description="processes per node (one per device)")
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_false",
                      "ddp_find_unused_parameters_true"] = Field(
        "auto", description="ddp: one process per device, started by dermsight itself, torchrun "
        "or SLURM (see README, Scale-out); auto: ddp when devices x num_nodes > 1")
    process_group_backend: Literal["gloo", "nccl", "mpi", "ucc"] | None = Field(
        None, description="torch.distributed backend of ddp; null: nccl on CUDA GPUs, gloo "
        "otherwise")
    precision: str = Field("32-true", description="Lightning precision; 'bf16-mixed' is about "
                           "1.4x faster on CPUs with AVX512-BF16 or AMX, much slower without")
    channels_last: bool = Field(True, description="NHWC memory layout for conv nets (about 2x "
                                "faster training on CPU)")
    deterministic: bool = True
    limit_train_batches: int | float | None = Field(None, description="for smoke runs")
    progress_bar: bool = True


class Config(_Strict):
    """The whole configuration. Stages read their own section."""

    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _square_only(self) -> Config:
        size = self.data.input_size
        if size is not None and size[0] != size[1]:
            if self.data.augment.rotate90 > 0:
                raise ValueError(f"data.augment.rotate90 needs a square data.input_size, got "
                                 f"{list(size)}: a 90-degree turn would change the shape")
            if self.train.tta == "d4":
                raise ValueError(f"train.tta d4 needs a square data.input_size, got {list(size)}")
        return self

    def data_prepare(self, out: str | None = None) -> PrepareConfig:
        """The ``prepare`` settings that produce ``data``'s manifest: ``prepare.*`` with
        ``data``'s source, root and options (and ``out``, default :meth:`prepared_dir`)."""
        return self.prepare.model_copy(update={
            "source": self.data.source, "root": self.data.root,
            "source_options": self.data.source_options,
            "out": out if out is not None else str(self.prepared_dir())})

    def prepared_dir(self) -> Path:
        """Where the prepared manifest of ``data`` lives: ``data.prepared``, or
        ``runs/prepared/<source>-<hash of what determines it>``."""
        if self.data.prepared:
            return Path(self.data.prepared)
        prep = self.data_prepare(out="-")
        key = json.dumps(prep.model_dump(mode="json", exclude={"out", "workers"}), sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        return Path("runs") / "prepared" / f"{self.data.source}-{digest}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` → (["a", "b", "c"], parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from None
    return key.split("."), value


def _set(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{'.'.join(path)}': '{part}' is not a section")
        node = child
    node[path[-1]] = value


def _format_error(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return f"invalid configuration ({origin}):\n" + "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Build the configuration: defaults < YAML file at ``path`` < ``overrides``."""
    tree: dict = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
        tree = loaded
        origin = str(path)
    for text in overrides or []:
        key, value = parse_override(text)
        _set(tree, key, value)
    if overrides:
        origin += " + command-line overrides"
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin)) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved configuration as YAML (what a run records)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
