"""The Host allow-list, against DNS rebinding.

A web page the user visits can make its own domain resolve to 127.0.0.1 and then read a no-key
server on loopback as "same origin". The browser still sends the page's domain in ``Host``, so a
request whose Host is not a name this server is known by gets 400 before anything else runs.
Allowed: the bound address, ``localhost``, ``127.0.0.1`` and ``::1`` (any port), and
``server.allowed_hosts`` (a leading ``*.`` allows sub-domains, ``*`` allows every host).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from indexer.server.errors import error_body

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
# Binding to these means "every interface": no name to allow follows from it.
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def host_name(header: str) -> str:
    """The name part of a Host header (no port, no IPv6 brackets), lower case."""
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def allowed_names(bound_host: str | None, extra: Iterable[str]) -> list[str]:
    names = list(LOCAL_NAMES)
    if bound_host and host_name(bound_host) not in _WILDCARD_BINDS:
        names.append(host_name(bound_host))
    names += [name if name == "*" else host_name(name) for name in extra]
    return list(dict.fromkeys(names))


class HostAllowListMiddleware:
    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        names = list(allowed)
        self.any = "*" in names
        self.exact = frozenset(n for n in names if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:
            return False
        name = host_name(header)
        return name in self.exact or (bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"host":
                header = value.decode("latin-1")
                break
        if self.allows(header):
            await self.app(scope, receive, send)
            return
        shown = (header or "(none)")[:100].encode("ascii", "backslashreplace").decode("ascii")
        response = JSONResponse(
            error_body(
                400,
                f"Host {shown!r} is not a name this server answers to: add it to server.allowed_hosts "
                "if you reach the server under that name",
                param="Host",
                code="invalid_host",
            ),
            status_code=400,
        )
        await response(scope, receive, send)
