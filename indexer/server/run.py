"""``indexer serve``: load the index and model, then run the app with uvicorn."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
from typing import Any

from indexer.api import Indexer
from indexer.errors import IndexerError

log = logging.getLogger("indexer.server")


def require_server_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise IndexerError(
            f"`indexer serve` needs the server extra ({exc.name} is missing): pip install 'indexer[server]'"
        ) from None


def bind(host: str, port: int) -> socket.socket:
    """Listen now, so a port in use is a clear error before the model loads (and no race after)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise IndexerError(f"cannot listen on {host}:{port} (--host / server.host): {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = " (the port is in use: pick another with --port)" if exc.errno == errno.EADDRINUSE else ""
        raise IndexerError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(indexer: Indexer, host: str | None = None, port: int | None = None, *, watch: bool = False) -> None:
    """``watch``: keep the index in step with its folder while serving (``indexer.watch``); each
    committed build is served from the next request on."""
    require_server_extra()
    watcher = None
    if watch:
        from indexer.watch import FolderWatcher

        watcher = FolderWatcher(indexer, on_sync=_log_sync)
    import uvicorn

    from indexer.server.app import create_app

    settings = indexer.config.server
    host = host or settings.host
    port = port or settings.port
    sock = bind(host, port)
    try:
        if not is_loopback(host) and not settings.api_key:
            log.warning(
                "listening on %s without an API key: anyone who can reach this address can query "
                "your documents; set server.api_key",
                host,
            )
        if host in ("0.0.0.0", "::") and not settings.allowed_hosts:
            log.warning(
                "listening on every interface: requests are answered only when addressed to localhost "
                "names; list the names clients use (e.g. this machine's) in server.allowed_hosts"
            )
        if watcher is not None:
            watcher.sync()  # build or catch up first, so there is an index to serve from the start
        app = create_app(indexer, bound_host=host)
        config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5, server_header=False)
        server = uvicorn.Server(config)
        print(
            f"indexer: serving {indexer.config.vector_store.collection!r} on http://{host}:{port}", flush=True
        )
        stop = watcher.start_in_thread() if watcher is not None else None
        # uvicorn re-raises Ctrl-C after its graceful shutdown: by then we are done.
        try:
            with contextlib.suppress(KeyboardInterrupt):
                server.run(sockets=[sock])
        finally:
            if stop is not None:
                stop.set()
    finally:
        sock.close()


def _log_sync(result: Any) -> None:
    if result.error:
        log.warning("watch: sync failed: %s", result.error)
        return
    from indexer.watch import describe_sync

    s = result.summary
    # A sync is news, not a problem: info (``indexer serve`` shows this logger's info lines).
    if s.added or s.updated or s.deleted:
        log.info("watch: %s", describe_sync(s))
    for skipped in s.skipped:  # the CLI's handler prints each distinct line once per run
        log.warning("watch: skipped %s: %s", skipped["file"], skipped["reason"])
