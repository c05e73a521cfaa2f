"""What one stage writes for another: typed, versioned schemas (pydantic; no torch, no numpy).

=============================  ==================  ====================  ======================
file                           written by          read by               schema
=============================  ==================  ====================  ======================
``<run>/calibration.json``     ``evaluate``        ``evaluate``, export  :class:`Calibration`
``<run>/eval-*/report.json``   ``evaluate``        ``export``            :class:`EvalReport`
``<run>/report.json``          ``train``           ``export``            :class:`TrainReport`
``<model>/model.json``         ``export``          ``serve``             :class:`ModelJson`
``<router>/router.json``       ``export`` (router) ``serve``             :class:`RouterJson`
=============================  ==================  ====================  ======================

A served ``models/`` folder holds several model folders (each ``model.json`` names the
``photo_type`` it answers) and one router folder (``router.json`` names the photo types it
tells apart); :mod:`dermsight.serve.served` composes them.

Every file carries ``format_version``. ``Schema.parse(data, where)`` / :func:`read_json` check
it and validate; an old, newer or broken file raises :class:`~dermsight.errors.ConfigError`
naming the file and the field, and what to do. One exception is read on purpose: the
``calibration.json`` files written before this module name the same version ``version: 1``;
they are read as ``format_version`` 1. The committed ``model.json`` and ``router.json`` files have
always carried ``format_version: 1``.

Fields a stage may add without a format change are kept (``extra="allow"``), so a new metric in
a report section reaches every file that carries the section. ``dump()`` writes back what was
set, in field order, so a file read and written again is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dermsight.errors import ConfigError

__all__ = [
    "DISPLAY_NAMES", "Calibration", "ConformalSettings", "EvalReport", "FairnessAttribute",
    "FairnessGroup", "FileEntry", "FittedOn", "ModelJson", "PathCalibration", "RouterJson",
    "ServedConformal", "ServedPath", "ToneGroups", "TrainReport", "ValMetrics",
    "display_names", "read_json",
]

Method = Literal["lac", "aps"]
Mode = Literal["marginal", "class", "group"]


class _Schema(BaseModel):
    """Base: unknown fields are kept; ``dump`` gives back what was set."""

    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        """JSON-ready dict of the fields that were set (read from a file or passed), in field
        order, then the extra fields."""
        return self.model_dump(mode="json", exclude_unset=True)


class _File(_Schema):
    """A file with a ``format_version``; subclasses name the version and the remedy."""

    FORMAT_VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "file"
    REMEDY: ClassVar[str] = ""

    @classmethod
    def _upgrade(cls, data: dict) -> dict:
        """Older spellings of this version, read on purpose (none by default)."""
        return data

    @classmethod
    def parse(cls, data: Any, where: str | Path | None = None):
        """Validate ``data`` (a parsed JSON object); ``where`` names the file in errors."""
        where = str(where or cls.WHAT)
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}"
                              f"{cls.REMEDY}")
        data = cls._upgrade(dict(data))
        version = data.get("format_version")
        if version is None:
            raise ConfigError(f"{where}: field 'format_version' is missing: the file is older "
                              f"than this dermsight's format (version {cls.FORMAT_VERSION})"
                              f"{cls.REMEDY}")
        if version != cls.FORMAT_VERSION:
            raise ConfigError(f"{where}: field 'format_version' is {version!r}; this dermsight "
                              f"reads version {cls.FORMAT_VERSION}{cls.REMEDY}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_first_error(exc)}{cls.REMEDY}") from None

    def dump(self) -> dict[str, Any]:
        """As :meth:`_Schema.dump`, always with ``format_version`` (first when it was not set)."""
        out = super().dump()
        return out if "format_version" in out else {"format_version": self.FORMAT_VERSION, **out}


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    err = errors[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    got = repr(err.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"field '{field}': {err['msg']}, got {got}{more}"


def read_json(schema: type[_File], path: str | Path):
    """Read and validate the JSON file at ``path`` with ``schema``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    return schema.parse(data, path)


# ---- calibration.json ---------------------------------------------------------------------------
class ConformalSettings(_Schema):
    """calibration.json ``conformal``: split-conformal thresholds on calibrated probabilities.

    A threshold written as ``null`` is +inf (too few calibration rows: every class is in the
    set), since JSON has no infinity."""

    method: Method
    mode: Mode
    target: float
    alpha: float
    randomized: bool = False
    #: the marginal threshold
    qhat: float | None
    #: class names ("class" mode) or group labels ("group" mode) → threshold
    thresholds: dict[str, float | None] = Field(default_factory=dict)
    #: the column giving a row's group in "group" mode
    group_by: str | None = None
    fallback: list[str] = Field(default_factory=list)
    n_calibration: int = 0
    score: str | None = None


class ValMetrics(_Schema):
    """Figures on the calibration (validation) rows; NaN is written as null."""

    n: int
    accuracy: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    coverage: float | None = None
    mean_set_size: float | None = None


class FittedOn(_Schema):
    """The rows a calibration was fitted on (the run's validation split)."""

    split: str
    n: int
    manifest: str | None = None
    source: str | None = None
    root: str | None = None
    tta: str | bool | None = None
    created: str | None = None


class PathCalibration(_Schema):
    """One prediction path's calibration: temperature, conformal thresholds, val figures."""

    temperature: float = Field(gt=0)
    conformal: ConformalSettings
    val_metrics: ValMetrics | None = None


class Calibration(_File):
    """``<run>/calibration.json``, written by ``dermsight evaluate``: calibrated probabilities
    are ``softmax(logits / temperature)``; ``without_metadata`` is the photo-alone path of a
    model with metadata, fitted for itself."""

    FORMAT_VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "calibration.json"
    REMEDY: ClassVar[str] = "; run `dermsight evaluate --recalibrate` to fit it again"

    format_version: Literal[1] = 1
    classes: list[str] = Field(min_length=1)
    temperature: float = Field(gt=0)
    fitted_on: FittedOn | None = None
    conformal: ConformalSettings
    val_metrics: ValMetrics | None = None
    without_metadata: PathCalibration | None = None

    @classmethod
    def _upgrade(cls, data: dict) -> dict:
        if "format_version" not in data and data.get("version") == 1:
            data["format_version"] = data.pop("version")  # written before this module
        return data

    def path(self, without_metadata: bool = False) -> PathCalibration:
        """The calibration of the main path, or of the photo-alone path."""
        if without_metadata:
            if self.without_metadata is None:
                raise ConfigError("calibration.json has no 'without_metadata' section"
                                  f"{self.REMEDY}")
            return self.without_metadata
        return PathCalibration(temperature=self.temperature, conformal=self.conformal,
                               val_metrics=self.val_metrics)


# ---- report sections (evaluate's report.json, train's report.json) ------------------------------
class FairnessGroup(_Schema):
    """One group's row of a fairness attribute: ``n``, ``small``, and every metric evaluate
    reports (``<metric>`` and ``<metric>_ci95``), kept as they are: a metric added to evaluate
    reaches model.json. ``ci_skipped``: bootstrap resamples skipped per metric (diagnostics)."""

    n: int
    small: bool = False
    ci_skipped: dict[str, int] | None = None


class FairnessAttribute(_Schema):
    """evaluate's ``fairness[<attribute>]``: metrics per group and the largest gap."""

    groups: dict[str, FairnessGroup] = Field(default_factory=dict)
    gap_metric: str | None = None
    min_n: int | None = None
    n_resamples: int | None = None
    max_gap: float | None = None
    max_gap_ci95: list[float | None] | None = None
    max_gap_groups: list[Any] | None = None
    n_missing: int | None = None


class _Report(_Schema):
    """A report's sections (reports carry no format version: their sections are read)."""

    REMEDY: ClassVar[str] = ""

    @classmethod
    def parse(cls, data: Any, where: str | Path | None = None):
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where or 'report.json'}: {_first_error(exc)}{cls.REMEDY}"
                              ) from None


class EvalReport(_Report):
    """The sections of ``dermsight evaluate``'s report.json that export reads."""

    REMEDY: ClassVar[str] = "; run `dermsight evaluate` again"

    split: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)
    conformal: dict[str, Any] = Field(default_factory=dict)
    fairness: dict[str, FairnessAttribute] = Field(default_factory=dict)
    #: the photo-alone path of a model with metadata (metrics, ece_after, coverage, ...)
    without_metadata: dict[str, Any] | None = None


class TrainReport(_Report):
    """The figures of a run's own ``report.json`` (written by ``dermsight train``) that export
    copies into model.json."""

    metrics: dict[str, Any] = Field(default_factory=dict)
    split: str | None = None
    auroc_per_class: dict[str, Any] | None = None
    n_train: int | None = None
    n_val: int | None = None


class ToneGroups(_Schema):
    """model.json ``skin_tone_groups``: one fairness attribute's groups (validation split),
    or a run's own ``groups.json``."""

    attribute: str | None = None
    source: str | None = None
    split: str | None = None
    n_resamples: int | None = None
    groups: dict[str, FairnessGroup] = Field(default_factory=dict)
    gap_metric: str | None = None
    max_gap: float | None = None
    max_gap_groups: list[Any] | None = None
    max_gap_ci95: list[float | None] | None = None
    min_n: int | None = None

    @classmethod
    def from_attribute(cls, attribute: str, section: FairnessAttribute, *, source: str,
                       split: str | None) -> ToneGroups:
        """The groups of evaluate's fairness ``section`` (bootstrap diagnostics stay in the
        report)."""
        groups = {g: FairnessGroup.model_validate(row.model_dump(exclude={"ci_skipped"},
                                                                 exclude_unset=True))
                  for g, row in section.groups.items()}
        return cls(attribute=attribute, source=source, split=split,
                   n_resamples=section.n_resamples, groups=groups,
                   gap_metric=section.gap_metric, max_gap=section.max_gap,
                   max_gap_groups=section.max_gap_groups, max_gap_ci95=section.max_gap_ci95,
                   min_n=section.min_n)


# ---- model.json ---------------------------------------------------------------------------------
class FileEntry(_Schema):
    """A graph file of a model or router folder, with its sha256."""

    path: str
    sha256: str | None = None
    bytes: int | None = None
    included: bool = True


class ServedConformal(_Schema):
    """model.json ``conformal``: what the engine builds each photo's set from (the rule is
    :mod:`dermsight.predsets`). ``threshold``: the marginal threshold; ``thresholds``: one per
    class ("class" mode); ``group_thresholds``: one per skin-tone group, picked from the tone
    the engine measures (``group_by``), the marginal one where it cannot ("group" mode)."""

    method: Method = "lac"
    threshold: float | None = None
    alpha: float | None = None
    coverage: float | None = None
    mode: Mode = "marginal"
    source: str | None = None
    fitted_on: dict[str, Any] | None = None
    val_coverage: float | None = None
    val_mean_set_size: float | None = None
    thresholds: dict[str, float] | None = None
    group_by: Literal["tone_bucket", "ita_category"] | None = None
    group_thresholds: dict[str, float] | None = None
    n_calibration: int | None = None
    exported_val_coverage: float | None = None
    exported_val_mean_set_size: float | None = None


class ServedPath(_Schema):
    """model.json ``without_metadata``: the photo-alone path's own calibration."""

    temperature: float = Field(gt=0)
    conformal: ServedConformal | None = None
    val_metrics: dict[str, Any] | None = None


class ModelJson(_File):
    """``<model>/model.json``, written by ``dermsight export``, read by the serving engine.

    ``photo_type`` names the kind of photo the model answers (``dermoscopy`` / ``clinical``);
    a models folder serves one model per kind behind the router (:class:`RouterJson`)."""

    FORMAT_VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "model.json"
    REMEDY: ClassVar[str] = "; export the model again (`dermsight export`)"

    format: Literal["dermsight-model"] = "dermsight-model"
    format_version: Literal[1] = 1
    name: str | None = None
    version: str | None = None
    dermsight_version: str | None = None
    created: str | None = None
    source_run: str | None = None
    task: str | None = None
    photo_type: str | None = None
    classes: list[str] = Field(min_length=1)
    display_names: dict[str, str] = Field(default_factory=dict)
    hierarchy: dict[str, Any] | None = None
    synonyms: list[list[str]] | None = None
    input_size: list[int] | None = None
    preprocess: dict[str, Any]
    #: ``{"encoder": MetadataEncoder.to_dict(), "schema": {fields, numeric, categorical,
    #: multi_label}}``, or None for a model without metadata
    metadata: dict[str, Any] | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    opset: int | None = None
    cam: dict[str, Any] | None = None
    temperature: float | None = None
    temperature_source: str | None = None
    conformal: ServedConformal | None = None
    conformal_coverage: float | None = None
    without_metadata: ServedPath | None = None
    quality_thresholds: dict[str, Any] | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    metrics_split: str | None = None
    auroc_per_class: dict[str, Any] | None = None
    n_train: int | None = None
    n_val: int | None = None
    skin_tone_groups: ToneGroups | None = None
    label_levels: dict[str, Any] | None = None
    #: ``{"source", "split", "with_metadata": {...}, "without_metadata": {...}}``: the
    #: evaluation's figures for each path of a model with metadata (model card)
    metadata_paths: dict[str, Any] | None = None
    parity: dict[str, Any] = Field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    files: dict[str, FileEntry] = Field(default_factory=dict)
    export_seconds: float | None = None
    rebuild: dict[str, Any] | None = None


# ---- router.json --------------------------------------------------------------------------------
class RouterJson(_File):
    """``<router>/router.json``, written by ``dermsight fit-router``: the photo-type
    router in front of the models (see :mod:`dermsight.serve.router`)."""

    FORMAT_VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "router.json"
    REMEDY: ClassVar[str] = "; export the router again"

    format: Literal["dermsight-router"] = "dermsight-router"
    format_version: Literal[1] = 1
    kind: Literal["router"]
    dermsight_version: str | None = None
    created: str | None = None
    backbone: str | None = None
    weights: str | None = None
    #: in the order of the graph's ``type_logits``
    photo_types: list[str]
    refuse_threshold: float
    preprocess: dict[str, Any]
    imagenet_classes: list[str] = Field(default_factory=list)
    files: dict[str, FileEntry] = Field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    #: the learned Fitzpatrick head (weight, bias, classes, served, out_of_fold, goals)
    skin_type: dict[str, Any] | None = None
    fit: dict[str, Any] = Field(default_factory=dict)


# ---- class display names ------------------------------------------------------------------------
#: Plain-language names of well-known class codes (HAM10000's).
DISPLAY_NAMES = {
    "akiec": "actinic keratosis / intraepithelial carcinoma",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevus (mole)",
    "vasc": "vascular lesion",
}


def display_names(classes: list[str], given: dict[str, str] | None = None) -> dict[str, str]:
    """The words shown for each class: ``given`` (model.json's ``display_names``) when it names
    the class, else :data:`DISPLAY_NAMES`, else the code with ``_`` and ``-`` as spaces."""
    given = given or {}
    return {c: str(given.get(c) or DISPLAY_NAMES.get(c)
                   or c.replace("_", " ").replace("-", " ")) for c in classes}
