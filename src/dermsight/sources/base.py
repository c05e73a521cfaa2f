"""The contract every dataset source follows, and the registry that names them.

A source turns a dataset root (local path or fsspec URL) in its native format into manifest rows.
It never decodes images: ``prepare`` validates and measures every image afterwards.
Adding a source is one module with one ``@register_source`` class, imported in ``__init__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from dermsight.errors import ConfigError, DataError
from dermsight.io import check_root
from dermsight.manifest import conform

_REGISTRY: dict[str, type[Source]] = {}


class SourceOptions(BaseModel):
    """Per-source options (``prepare.source_options`` in the config). Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Source(ABC):
    """Reads one dataset format. Subclasses set ``name``, optionally ``Options``, and ``read``."""

    name: ClassVar[str]
    Options: ClassVar[type[SourceOptions]] = SourceOptions
    #: the kind of photo the dataset holds (:data:`dermsight.phototype.PHOTO_TYPES`): the kind
    #: a model trained on it answers; None when the format does not say (folder, synthetic)
    photo_type: ClassVar[str | None] = None

    def __init__(self, root: str, **options: Any) -> None:
        self.root = str(root)
        try:
            self.options = self.Options(**options)
        except ValidationError as exc:
            raise ConfigError(f"source '{self.name}' options: {exc}") from None
        #: problems found while reading that are not fatal (e.g. listed-but-missing images):
        #: dicts with at least ``image_id`` or ``path`` and ``reason``; ``prepare`` audits them.
        self.issues: list[dict[str, Any]] = []

    def load(self) -> pd.DataFrame:
        """Read the dataset and return manifest rows conforming to the schema."""
        self.check_root()
        frame = self.read()
        if len(frame) == 0:
            raise DataError(f"{self.name}: dataset at '{self.root}' has no images")
        return conform(frame, source=self.name)

    def check_root(self) -> None:
        check_root(self.root, source=self.name)

    @abstractmethod
    def read(self) -> pd.DataFrame:
        """Return a frame whose columns are a subset of ``manifest.SOURCE_COLUMNS``."""


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make a source buildable by its ``name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a class attribute 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"source '{cls.name}' is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def list_sources() -> list[str]:
    return sorted(_REGISTRY)


def get_source(name: str) -> type[Source]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown source '{name}'; known: {list_sources()}") from None


def create_source(name: str, root: str, **options: Any) -> Source:
    return get_source(name)(root, **options)
