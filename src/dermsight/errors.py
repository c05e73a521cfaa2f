"""Errors users see. Every message names the file, column or field at fault."""


class DermsightError(Exception):
    """Base class: the CLI prints these without a traceback and exits with code 2."""


class DataError(DermsightError, ValueError):
    """A dataset, table or image is missing, malformed or inconsistent."""


class ConfigError(DermsightError, ValueError):
    """A configuration file or override is invalid."""


class ApiError(DermsightError):
    """A request that cannot be served: an HTTP status, a stable machine-readable code, the field
    at fault and optional response headers. Raised by the serving app and by the tracking
    service alike; the app answers ``body()`` as JSON with ``status`` and ``headers``
    (:func:`dermsight.serve.api.errors.api_response`)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}
