"""The HTTP edges of the studio: request guards (host, origin, body size), security headers,
error responses, and the names the API puts on downloads."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .._common import track_name
from ..errors import DependencyError, UnbakeError
from .services import NotInside, public_message

CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
       "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def install(app: FastAPI, *, root: Path, allowed_hosts: tuple[str, ...] | None, max_body_bytes: int,
            upload_path: str) -> None:
    """Guards and error handlers of the studio ``app``."""

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = host_name(request.headers.get("host", ""))
        if allowed_hosts is not None and host not in allowed_hosts:
            return JSONResponse({"detail": f"host {host!r} is not served; open the studio at 127.0.0.1"},
                                status_code=421)
        # a page from another site may POST here (a "simple" request needs no preflight); browsers
        # mark such requests with an Origin that is not ours
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None \
                and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, exempt=(("POST", upload_path),))

    @app.exception_handler(UnbakeError)
    async def unbake_error(request: Request, exc: UnbakeError):
        status = 404 if isinstance(exc, NotInside) else 501 if isinstance(exc, DependencyError) else 400
        return JSONResponse({"detail": public_message(str(exc), root)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=400)


def validation_message(errors) -> str:
    """One line for the first problem FastAPI found in a request: where, then what."""
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the request body must be JSON"
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    if not loc:
        return "the request body must be a JSON object" if first.get("loc", ("",))[0] == "body" \
            else str(first.get("msg"))
    return f"{'.'.join(loc)}: {first.get('msg')}"


class BodyLimit:
    """Refuses (413) request bodies above ``max_bytes``, by their declared length or while they
    arrive; ``exempt`` (method, path) pairs stream their bodies and check sizes themselves."""

    def __init__(self, app, *, max_bytes: int, exempt: tuple[tuple[str, str], ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = set(exempt)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.exempt:
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        # read the body here (it is small by definition) and hand it on in one piece
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        payload = json.dumps({"detail": f"the request body is larger than {mib(self.max_bytes)} "
                                        "(settings and project files are much smaller)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_name(name: str) -> str:
    """A display name from the client's file name: its last part, printable, at most 120 characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("", name).strip().strip(".")
    return (name or "upload")[:120]


def song_name(job) -> str:
    """The song's name for download file names (the display name without its extension)."""
    return track_name(job.name) or "song"


def attachment(filename: str) -> str:
    ascii_name = filename.encode("ascii", "ignore").decode().replace('"', "") or "download"
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(filename)}'
