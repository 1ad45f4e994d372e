"""Python processes forked from one that has already imported the heavy libraries, for tests that
run many short programs (the documentation's examples): each program still runs in a process of
its own, with its own arguments, working directory, environment and standard streams, and exits
with its own status, but skips the seconds of CPU that importing torch, transformers, LlamaIndex
and Chroma costs a new interpreter.

``python warm_python.py serve SOCKET MODULE...`` imports the MODULEs, then forks a child per
connection. ``python warm_python.py run SOCKET -m MODULE ARGS...`` (or ``SCRIPT ARGS...``) is what
a caller starts in place of ``python -m MODULE ARGS...`` (or ``python SCRIPT ARGS...``): it hands
its arguments, directory, environment and its stdin, stdout and stderr to a child and exits as the
child did. The server forks only while it runs no thread of its own, and the child runs the program
as the interpreter's main code, so its exit, ``atexit`` handlers and stream flushes are a normal
interpreter's. Standard library only: the client must start in milliseconds.
"""

from __future__ import annotations

import gc
import importlib
import io
import json
import os
import runpy
import signal
import socket
import struct
import sys
from typing import Any

_LENGTH = struct.Struct("!Q")
_STATUS = struct.Struct("!i")


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client went away")
        data += chunk
    return bytes(data)


def _serve(path: str, modules: list[str]) -> dict[str, Any]:
    """Import ``modules``, then fork a child per request and report its exit status; returns, in
    the child only, the request it is to run."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)  # clients queue in the backlog while the imports run
    listener.listen(8)
    for name in modules:
        importlib.import_module(name)
    # The imported objects out of the collector's reach: its passes in a child would otherwise touch,
    # and so copy, every page of them (seconds of CPU per child).
    gc.freeze()
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        header, fds, _, _ = socket.recv_fds(conn, _LENGTH.size, 3)
        request = json.loads(_recv_exactly(conn, _LENGTH.unpack(header)[0]))
        pid = os.fork()
        if pid == 0:
            listener.close()
            conn.close()
            _adopt(request, fds)
            return request
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(status)))
        conn.close()


def _adopt(request: dict[str, Any], fds: list[int]) -> None:
    """Make this child the process the client would have started."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # New stream objects over the client's descriptors, buffered as a new interpreter's are.
    encoding = sys.stdout.encoding
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding=encoding, line_buffering=os.isatty(1)
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding=encoding, errors="backslashreplace", line_buffering=True
    )


def _run(request: dict[str, Any]) -> None:
    """Run the request's program as ``python -m MODULE`` or ``python SCRIPT`` would."""
    if request["module"] is not None:
        sys.path[0] = os.getcwd()
        sys.argv = ["-m", *request["args"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    else:
        script = request["script"]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        sys.argv = [script, *request["args"]]
        runpy.run_path(script, run_name="__main__")


def _client(path: str, argv: list[str]) -> int:
    if argv[0] == "-m":
        module, script, args = argv[1], None, argv[2:]
    else:
        module, script, args = None, argv[0], argv[1:]
    request = {"module": module, "script": script, "args": args, "cwd": os.getcwd(), "env": dict(os.environ)}
    payload = json.dumps(request).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        socket.send_fds(conn, [_LENGTH.pack(len(payload))], [0, 1, 2])
        conn.sendall(payload)
        code = _STATUS.unpack(_recv_exactly(conn, _STATUS.size))[0]
    if code < 0:  # killed by a signal: so is this process, as a caller waiting on it would see
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def main() -> int | None:
    command, path, *rest = sys.argv[1:]
    if command == "run":
        return _client(path, rest)
    _run(_serve(path, rest))  # returns in a forked child only
    return None


if __name__ == "__main__":
    sys.exit(main())
