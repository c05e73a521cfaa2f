"""Every registered source follows the contract (parametrized over the registry)."""

from __future__ import annotations

import sys

import pytest

from dermsight.errors import ConfigError
from dermsight.sources import Source, SourceOptions, create_source, get_source, list_sources

SOURCES = list_sources()


def test_expected_sources_registered():
    assert {"ham10000", "fitzpatrick17k", "scin", "pad-ufes-20", "folder"} <= set(SOURCES)


def test_unknown_source():
    with pytest.raises(ConfigError, match="unknown source 'nope'"):
        get_source("nope")


@pytest.mark.parametrize("name", SOURCES)
def test_source_contract(name, tmp_path):
    cls = get_source(name)
    assert issubclass(cls, Source)
    assert cls.name == name
    assert issubclass(cls.Options, SourceOptions)
    assert sys.modules[cls.__module__].__doc__, "a source module documents its layout"
    src = create_source(name, str(tmp_path))
    assert isinstance(src, cls)
    assert src.root == str(tmp_path)
    assert src.issues == []


@pytest.mark.parametrize("name", SOURCES)
def test_options_reject_unknown_keys(name, tmp_path):
    with pytest.raises(ConfigError, match="not_an_option"):
        create_source(name, str(tmp_path), not_an_option=1)
