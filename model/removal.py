"""Run a removal backend on one prepared chunk, content-keyed so a rerun skips finished work.

The key covers everything that decides the output: the chunk's pixels (plate and mask), the
backend's identity (name and version, weights included), the prompt and the seed. A result
already on the store under that key is reused and the backend is never even loaded: `backend`
is a callable that loads (or returns the worker's already loaded) backend only when a chunk
must really run, and says how long that took (`WarmBackend`). A backend runs one chunk at a time
(`model.backend.exclusive`), whatever the number of threads that share it.

A two-pass chunk can run as one call or as two phases (`phase=1`, then `phase=2`): a worker that
runs the first passes of the chunks it holds before their second passes swaps the transformer's
weights twice, not twice per chunk. Each result says what it cost in loading and swapping.
"""
from __future__ import annotations

import hashlib
import logging
import os
import resource
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from model.backend import BackendIdentity, RemovalBackend, RemovalRequest, TwoPassBackend, enforce_keep, exclusive
from shots.extract import ChunkInput
from shots.media import read_video, write_video_lossless
from storage import layout
from storage.keys import content_key
from storage.store import ArtifactStore

log = logging.getLogger(__name__)


class RemovalError(RuntimeError):
    """A backend failed on a chunk; the message names the shot, the chunk and its frames."""


def chunk_seed(shot_id: str, chunk_index: int, base_seed: int = 0) -> int:
    """A chunk's seed from shot id and chunk index: results never depend on batch order."""
    digest = hashlib.sha256(f"{base_seed}:{shot_id}:{chunk_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def chunk_content_key(chunk: ChunkInput, identity: BackendIdentity, prompt: str, seed: int) -> str:
    return content_key("chunk-result", chunk.content_sha256, identity.name, identity.version, prompt, seed)


@dataclass(frozen=True)
class ChunkResult:
    """What became of one chunk: where its result is, what made it, whether it was reused, timings."""

    chunk_index: int
    output_key: str
    content_key: str
    cached: bool
    seconds: float
    peak_rss_mb: float
    seed: int
    backend: BackendIdentity
    started_at: datetime
    finished_at: datetime
    pass1_output_key: str | None = None  # two-pass backends: pass 1 kept as its own output, for comparison
    model_load_s: float = 0.0  # loading the backend for this chunk; 0.0 when the worker already held it
    weights_swaps: int = 0  # weight sets copied into the model for this chunk (two-pass: pass 1 <-> pass 2)
    weights_swap_s: float = 0.0
    worker: str = ""  # where it ran: host:pid:device
    pass1: ChunkResult | None = None  # a two-pass chunk run in phases: its first phase's own result


class WarmBackend:
    """The one backend a worker process keeps loaded for the next chunk, shot after shot.

    `get(settings, load)` returns (backend, seconds this call spent loading it): 0.0 when the
    process already held a backend for `settings`. Other settings release the old backend first,
    so two large models never share a device. `loads` counts real loads (logs, tests, benches).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._settings: object = None
        self._backend: RemovalBackend | None = None
        self.loads = 0

    def get(self, settings, load: Callable[[], RemovalBackend]) -> tuple[RemovalBackend, float]:
        with self._lock:  # two chunk threads asking at once still load it once
            if self._backend is not None and self._settings == settings:
                return self._backend, 0.0
            self._backend = self._settings = None  # release the previous one before loading another
            t0 = time.perf_counter()
            self._backend, self._settings = load(), settings
            self.loads += 1
            seconds = time.perf_counter() - t0
            log.info("backend %s loaded in %.1f s (load %d in process %d)",
                     getattr(self._backend, "name", type(self._backend).__name__), seconds, self.loads, os.getpid())
            return self._backend, seconds


def already_loaded(backend: RemovalBackend) -> Callable[[], tuple[RemovalBackend, float]]:
    """A loader for a backend the caller built itself (benches, tests): no load time."""
    return lambda: (backend, 0.0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def remove_chunk(chunk: ChunkInput, identity: BackendIdentity, backend: Callable[[], tuple[RemovalBackend, float]],
                 store: ArtifactStore, work_key: str, shot_id: str, prompt: str = "", base_seed: int = 0, rate=24,
                 progress: Callable[[float], None] | None = None, phase: int | None = None) -> ChunkResult:
    """Remove the object from one chunk and store the result; reuse a stored result with the same key.

    `backend()` returns (loaded backend, seconds spent loading it now). For a two-pass identity,
    `phase=1` runs and stores pass 1 alone (its result names pass 1's identity) and `phase=2` the
    rest (pass 2 from the stored pass 1); None runs whatever is missing in one call.
    """
    started, t0 = _now(), time.perf_counter()
    index = chunk.chunk.index
    seed = chunk_seed(shot_id, index, base_seed)
    if phase not in (None, 1, 2) or (phase is not None and identity.pass1 is None):
        raise ValueError(f"phase {phase!r}: phases 1 and 2 are for two-pass backends; {identity.name} is not one")
    key = chunk_content_key(chunk, identity, prompt, seed)
    out_key = layout.chunk_result(work_key, index, identity.name, key)
    p1_key = None
    if identity.pass1 is not None:  # pass 1 is stored under its own key: shared with --passes 1 runs
        p1 = chunk_content_key(chunk, identity.pass1, prompt, seed)
        p1_key = layout.chunk_result(work_key, index, identity.pass1.name, p1)
        if phase == 1:
            identity, key, out_key, p1_key = identity.pass1, p1, p1_key, None
    costs = {"worker": f"{socket.gethostname()}:{os.getpid()}"}

    def result(cached: bool) -> ChunkResult:
        return ChunkResult(index, out_key, key, cached, time.perf_counter() - t0, peak_rss_mb(), seed, identity,
                           started, _now(), p1_key, **costs)

    if store.exists(out_key) and (p1_key is None or store.exists(p1_key)):
        log.info("shot %s chunk %d: reusing %s", shot_id, index, out_key)
        return result(cached=True)
    frames = np.stack(list(read_video(store.local_path(chunk.plate_key))))
    mask = np.stack(list(read_video(store.local_path(chunk.mask_key))))
    request = RemovalRequest(frames=frames, quadmask=mask, prompt=prompt, seed=seed)
    try:
        loaded, costs["model_load_s"] = backend()
        costs["worker"] += f":{loaded.device}"
        with exclusive(loaded):
            log.info("shot %s chunk %d: %s on %d frames", shot_id, index, identity.name, len(frames))
            swaps, swap_s = _swaps(loaded)
            output = _run(loaded, request, store, p1_key, rate, progress, pass1_only=phase == 1)
            swaps_after, swap_s_after = _swaps(loaded)
            costs["weights_swaps"], costs["weights_swap_s"] = swaps_after - swaps, swap_s_after - swap_s
    except Exception as e:
        c = chunk.chunk
        raise RemovalError(f"shot {shot_id}: chunk {c.index} (frames {c.start}-{c.end - 1}) failed in the "
                           f"{identity.name} backend: {type(e).__name__}: {e}") from e
    with store.writing(out_key) as tmp:
        write_video_lossless(tmp, output, rate)
    return result(cached=False)


def _swaps(backend: RemovalBackend) -> tuple[int, float]:
    """(weight swaps, seconds swapping) the backend has done so far; (0, 0.0) for one that never swaps."""
    return getattr(backend, "weights_swaps", 0), getattr(backend, "weights_swap_s", 0.0)


def _run(backend: RemovalBackend, request: RemovalRequest, store: ArtifactStore, p1_key: str | None, rate,
         progress, pass1_only: bool = False) -> np.ndarray:
    """The backend's output for `request`, keep pixels exact; a two-pass backend stores pass 1 as it goes."""
    if p1_key is None and not pass1_only:
        return enforce_keep(request, backend.remove(request, progress=progress))
    if not isinstance(backend, TwoPassBackend):
        raise TypeError(f"{backend.name} is not a two-pass backend")
    if pass1_only:
        return enforce_keep(request, backend.remove_pass1(request, progress=progress))
    if store.exists(p1_key):
        pass1 = np.stack(list(read_video(store.local_path(p1_key))))
        return enforce_keep(request, backend.remove_pass2(request, pass1, progress=progress))
    both = backend.remove_two_pass(request, progress=progress)
    with store.writing(p1_key) as tmp:
        write_video_lossless(tmp, enforce_keep(request, both.pass1), rate)
    return enforce_keep(request, both.pass2)
