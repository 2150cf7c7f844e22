"""Run a callable in a child process with a hard timeout: a hung CUDA call is killed, not waited on.

Prefect's `timeout_seconds` cannot interrupt a blocking C call (a CUDA kernel, `synchronize()`,
a stuck read): the timeout is only delivered when the call returns. A process boundary can:

    result = run_isolated(removal.remove_chunk, chunk, ..., timeout=1800, what="shot sh010 chunk 2")

The child is started with the *spawn* method (no forked CUDA context; the callable and its
arguments must be picklable, so a module-level function), in its own process group, so anything
it started dies with it. On timeout the group gets SIGTERM, then SIGKILL after `grace` seconds,
the child is reaped (no zombie) and `IsolatedTimeout` (a `TimeoutError`) names what timed out;
the caller's retry policy then runs the chunk again in a fresh process.

An exception raised in the child is raised again in the parent: the same exception when it can
be pickled, else `IsolatedError` with its type and message; the child's traceback is attached
as a note. A child that dies without answering (segfault, OOM killer) raises `IsolatedError`
with its exit status.

`Isolated()` keeps one child for several calls, so a model loaded in the child (an
`lru_cache`d backend) is loaded once per child rather than once per call; after a timeout or a
crash the next call starts a fresh child.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from typing import Any, Callable

import cloudpickle  # functions defined anywhere (not only at module level) can be sent

_SPAWN = multiprocessing.get_context("spawn")


class IsolatedTimeout(TimeoutError):
    """A call in a child process ran past its timeout; the child was killed."""


class IsolatedError(RuntimeError):
    """A call in a child process failed with an exception that could not be sent back, or the child died."""


def run_isolated(fn: Callable[..., Any], *args: Any, timeout: float, what: str | None = None, grace: float = 5.0,
                 env: dict[str, str] | None = None, progress: Callable[[float], None] | None = None,
                 **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` in a fresh spawned child; its result, or its exception, or IsolatedTimeout.

    `env` is applied in the child before the call (e.g. CUDA_VISIBLE_DEVICES). With `progress`,
    `fn` is called with a `progress=` callback whose fractions arrive here, in the calling thread.
    """
    with Isolated(grace=grace, env=env) as child:
        return child.call(fn, *args, timeout=timeout, what=what, progress=progress, **kwargs)


class Isolated:
    """One spawned child that runs calls one at a time; killed on timeout, replaced on the next call."""

    def __init__(self, grace: float = 5.0, env: dict[str, str] | None = None):
        self.grace = grace
        self.env = dict(env or {})
        self._proc = None
        self._conn = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float, what: str | None = None,
             progress: Callable[[float], None] | None = None, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` in the child within `timeout` seconds (the child's start-up included)."""
        what = what or getattr(fn, "__qualname__", repr(fn))
        with self._lock:
            deadline = time.monotonic() + timeout
            self._start()
            answered = False
            try:
                try:
                    job = cloudpickle.dumps((fn, args, kwargs, progress is not None))
                except Exception as e:  # the call cannot be pickled: nothing ran
                    raise IsolatedError(f"{what}: cannot send the call to a child process: "
                                        f"{type(e).__name__}: {e}") from e
                self._conn.send_bytes(job)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._conn.poll(left):
                        pid = self._proc.pid
                        self._kill()
                        raise IsolatedTimeout(f"{what} timed out after {timeout:g} s; its process {pid} was killed")
                    try:
                        kind, *payload = pickle.loads(self._conn.recv_bytes())
                    except (EOFError, OSError):
                        code = self._reap()
                        raise IsolatedError(f"{what}: the child process died without an answer "
                                            f"({_describe_exit(code)})") from None
                    if kind == "progress":
                        if progress is not None:
                            progress(payload[0])
                        continue
                    answered = True
                    if kind == "ok":
                        return payload[0]
                    raise _rebuild(what, *payload)
            finally:
                if not answered:  # timed out, died, or interrupted here: never leave it running
                    self._kill()

    def close(self) -> None:
        """Stop the child: ask it to exit, then kill it if it does not."""
        if self._proc is None:
            return
        try:
            self._conn.send_bytes(b"")
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._proc.join(self.grace)
        self._kill()

    # -- process management --------------------------------------------------------------
    def _start(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self._kill()
        parent, child = _SPAWN.Pipe(duplex=True)
        proc = _SPAWN.Process(target=_serve, args=(child, self.env, os.getpid()), name="voidbatch-isolated")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def _kill(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after the grace period, then reap."""
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            return
        if proc.is_alive():
            group = _leads_group(proc.pid)
            _signal(proc.pid, group, signal.SIGTERM)
            proc.join(self.grace)
            if proc.is_alive():
                _signal(proc.pid, group, signal.SIGKILL)
            proc.join()
            if group:  # anything it started and left behind in its group
                _signal(proc.pid, group, signal.SIGKILL)
        proc.join()
        proc.close()

    def _reap(self) -> int | None:
        proc = self._proc
        if proc is not None:
            proc.join(self.grace)
        code = proc.exitcode if proc is not None else None
        self._kill()
        return code


def _leads_group(pid: int) -> bool:
    """True once the child has made itself the leader of its own process group."""
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def _signal(pid: int, group: bool, sig: int) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _rebuild(what: str, pickled: bytes | None, type_name: str, message: str, tb: str) -> BaseException:
    """The child's exception, or an IsolatedError carrying its type and message; the child traceback as a note."""
    exc = None
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
        except Exception:  # noqa: BLE001 - its class cannot be rebuilt here
            exc = None
    if not isinstance(exc, BaseException):
        exc = IsolatedError(f"{what}: {type_name}: {message}")
    exc.add_note(f"raised in an isolated child process ({what}):\n{tb}")
    return exc


# -- the child ------------------------------------------------------------------------------
def _orphan_watch(parent_pid: int, every: float = 1.0) -> None:
    """If the parent dies (a worker SIGKILLed), take this process group down: no GPU job left holding a card."""
    while True:
        time.sleep(every)
        if os.getppid() != parent_pid:
            try:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            finally:
                os._exit(137)


def _serve(conn, env: dict[str, str], parent_pid: int) -> None:
    """Child main loop: run calls until told to stop; its own process group so a kill takes everything."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    threading.Thread(target=_orphan_watch, args=(parent_pid,), daemon=True, name="orphan-watch").start()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process stops
    os.environ.update(env)
    send_lock = threading.Lock()

    def send(msg) -> None:
        data = cloudpickle.dumps(msg)
        with send_lock:
            conn.send_bytes(data)

    while True:
        try:
            job = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not job:
            return
        try:
            fn, args, kwargs, wants_progress = cloudpickle.loads(job)  # imports fn's module here
            if wants_progress:
                kwargs = {**kwargs, "progress": lambda f: send(("progress", float(f)))}
            result = fn(*args, **kwargs)
            reply = cloudpickle.dumps(("ok", result))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            reply = _error_reply(e, traceback.format_exc())
        with send_lock:
            conn.send_bytes(reply)


def _error_reply(e: BaseException, tb: str) -> bytes:
    try:
        pickled = cloudpickle.dumps(e)
        pickle.loads(pickled)  # only an exception the parent can rebuild
    except Exception:  # noqa: BLE001
        pickled = None
    return cloudpickle.dumps(("error", pickled, type(e).__qualname__, str(e), tb))
