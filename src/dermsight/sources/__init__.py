"""Dataset sources: each turns a dataset format into manifest rows. See ``base.Source``."""

from dermsight.sources.base import (
    Source,
    SourceOptions,
    create_source,
    get_source,
    list_sources,
    register_source,
)

# Importing a module registers its source.
from dermsight.sources import (  # noqa: E402,F401  isort: skip
    fitzpatrick17k,
    folder,
    ham10000,
    pad_ufes20,
    scin,
    synthetic,
)

__all__ = ["Source", "SourceOptions", "create_source", "get_source", "list_sources",
           "register_source"]
