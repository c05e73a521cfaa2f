"""REST API of dermsight (FastAPI): ``create_app(engine, settings)``; see ``app.py``."""

from dermsight.serve.api.app import create_app, create_app_from_env
from dermsight.serve.api.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "create_app_from_env"]
