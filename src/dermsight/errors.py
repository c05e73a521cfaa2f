"""Errors users see. Every message names the file, column or field at fault."""


class DermsightError(Exception):
    """Base class: the CLI prints these without a traceback and exits with code 2."""


class DataError(DermsightError, ValueError):
    """A dataset, table or image is missing, malformed or inconsistent."""


class ConfigError(DermsightError, ValueError):
    """A configuration file or override is invalid."""
