"""The removal-backend interface: one chunk in, the same chunk with the object gone out.

Backends differ wildly (VOID on a GPU, a classical CPU fallback) but the pipeline must not care:
it hands a `RemovalRequest` at model resolution to whatever `get_backend` returns and relies on
the contract below. `version` goes into the manifest and the cache keys, so a backend must change
it whenever its output for the same request could change.

Contract every backend keeps:
- the output has the input's shape, dtype uint8;
- pixels where the quadmask is 255 (keep) are bit-identical to the input.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from model.registry import BACKENDS

QUADMASK_VALUES = (0, 63, 127, 255)
PASS1_SHARE = 0.45  # of a two-pass chunk's progress (and time, roughly) that is its first pass
KEEP = 255

_VALID = np.zeros(256, bool)
_VALID[list(QUADMASK_VALUES)] = True


@dataclass(frozen=True)
class BackendIdentity:
    """What produced a result, known before any weights load: manifest columns and part of cache keys.

    `version` changes whenever output for the same request could change (code revision, settings,
    weights); `weights_sha256` is the main checkpoint's hash (None for weight-free backends).
    Two-pass backends also name their first pass, whose output is kept as its own result.
    """

    name: str
    version: str
    weights_sha256: str | None = None
    pass1: BackendIdentity | None = None


@dataclass(frozen=True)
class RemovalRequest:
    """One chunk at model resolution: frames, quadmask, the prompt for the scene after removal, seed."""

    frames: np.ndarray  # (T,H,W,3) uint8 RGB
    quadmask: np.ndarray  # (T,H,W) uint8 in {0, 63, 127, 255}
    prompt: str = ""  # what the scene looks like after removal (VOID uses it; classical ignores it)
    seed: int = 0

    def __post_init__(self):
        f, q = self.frames, self.quadmask
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"frames must be a (T,H,W,3) uint8 array, got {_describe(f)}")
        if not isinstance(q, np.ndarray) or q.dtype != np.uint8 or q.shape != f.shape[:3]:
            raise ValueError(
                f"quadmask must be a (T,H,W) uint8 array matching frames {f.shape[:3]}, got {_describe(q)}")
        if f.shape[0] < 1:
            raise ValueError("a request needs at least one frame")
        # A lossy-decoded mask (values like 3 or 250) would silently turn keep pixels into holes;
        # readers must re-quantize (<=31 -> 0, <=95 -> 63, <=191 -> 127, else 255) first.
        if not _VALID[q].all():
            bad = np.unique(q[~_VALID[q]])[:8].tolist()
            raise ValueError(f"quadmask values must be in {QUADMASK_VALUES}; found {bad} (re-quantize it first)")

    @property
    def keep(self) -> np.ndarray:
        """(T,H,W) bool: pixels the backend must return unchanged."""
        return self.quadmask == KEEP


@runtime_checkable
class RemovalBackend(Protocol):
    """What the pipeline needs from a backend; see the module docstring for the contract."""

    name: str
    version: str
    identity: BackendIdentity
    device: str  # where it computes: 'cpu', 'cuda:0'

    def remove(self, request: RemovalRequest, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(T,H,W,3) uint8: `request.frames` with the removal region regenerated."""
        ...


@runtime_checkable
class TwoPassBackend(RemovalBackend, Protocol):
    """A backend whose second pass refines its first; the first pass's output is kept as its own result."""

    def remove_two_pass(self, request: RemovalRequest, progress: Callable[[float], None] | None = None):
        """(pass1, pass2) frames, each (T,H,W,3) uint8 with keep pixels exact."""
        ...

    def remove_pass1(self, request: RemovalRequest, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Pass 1 alone (a worker runs its chunks' first passes before their second: fewer weight swaps)."""
        ...

    def remove_pass2(self, request: RemovalRequest, pass1_frames: np.ndarray,
                     progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Pass 2 alone, from a stored pass-1 result."""
        ...


class ExclusiveLock:
    """A lock that also says how many threads wait for it (logs, and tests that make chunks collide)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state = threading.Condition()
        self.waiting = 0

    def __enter__(self) -> ExclusiveLock:
        with self._state:
            self.waiting += 1
            self._state.notify_all()
        try:
            self._lock.acquire()
        finally:
            with self._state:
                self.waiting -= 1
                self._state.notify_all()
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def wait_for_waiters(self, n: int, timeout: float) -> bool:
        """Block until at least `n` threads wait for the lock (True), or `timeout` s pass (False)."""
        with self._state:
            return self._state.wait_for(lambda: self.waiting >= n, timeout)


_EXCLUSIVE: dict[object, ExclusiveLock] = {}
_EXCLUSIVE_GUARD = threading.Lock()


def exclusive(backend: RemovalBackend) -> ExclusiveLock:
    """The lock a chunk holds while it runs on `backend`: one per accelerator, else one per instance.

    A backend instance holds per-chunk state (weights swapped in place, RAFT buffers, offload hooks),
    and a GPU fits one chunk: two chunks must never run on either at once, whatever the threads.
    """
    key = backend.device if not backend.device.startswith("cpu") else id(backend)
    with _EXCLUSIVE_GUARD:
        return _EXCLUSIVE.setdefault(key, ExclusiveLock())


def known_backends() -> tuple[str, ...]:
    return BACKENDS.names()


def get_backend(name: str, **options) -> RemovalBackend:
    """The backend called `name`, built with `options` (backend-specific keyword arguments)."""
    return BACKENDS.build(name, **options)


def enforce_keep(request: RemovalRequest, output: np.ndarray) -> np.ndarray:
    """Copy keep pixels from the input into `output` (in place) so the contract holds exactly.

    Backends that work in another colour space or resolution (VAE round trips) call this last.
    """
    if output.shape != request.frames.shape or output.dtype != np.uint8:
        raise ValueError(f"backend output {_describe(output)} does not match input {request.frames.shape} uint8")
    np.copyto(output, request.frames, where=request.keep[..., None])
    return output


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array shape={a.shape} dtype={a.dtype}"
    return type(a).__name__
