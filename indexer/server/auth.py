"""Optional API key: with ``server.api_key`` set, every path but the open ones needs
``Authorization: Bearer KEY``. A pure ASGI middleware, so it guards the docs and unknown paths too,
and answers before any request body is read."""

from __future__ import annotations

import hashlib
import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from indexer.server.errors import error_body

# The web page and its assets hold no data: they load without the key, then ask for it.
OPEN_PATHS = frozenset({"/health", "/"})
OPEN_PREFIXES = ("/static/",)


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        # Digests of equal length make the comparison's time independent of the key's length too.
        self._digest = hashlib.sha256(api_key.encode("utf-8")).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            error_body(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer KEY' (server.api_key)",
                code="invalid_api_key",
            ),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(hashlib.sha256(token.strip()).digest(), self._digest)
