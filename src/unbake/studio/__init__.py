"""unbake studio: a local web app to separate songs, mix the stems in the browser and export.

Needs the ``studio`` extra (fastapi, uvicorn); start it with ``unbake studio``.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):
    # fastapi is imported only when the app is built, so `import unbake.studio` stays cheap
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'unbake.studio' has no attribute {name!r}")
