"""Run a removal backend on one prepared chunk, content-keyed so a rerun skips finished work.

The key covers everything that decides the output: the chunk's pixels (plate and mask), the
backend's identity (name and version, weights included), the prompt and the seed. A result
already on the store under that key is reused and the backend is never even loaded: `backend`
is a callable that loads (or returns the worker's already loaded) backend only when a chunk
must really run. A backend runs one chunk at a time (`model.backend.exclusive`), whatever the
number of threads that share it.
"""
from __future__ import annotations

import hashlib
import logging
import resource
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def remove_chunk(chunk: ChunkInput, identity: BackendIdentity, backend: Callable[[], RemovalBackend],
                 store: ArtifactStore, work_key: str, shot_id: str, prompt: str = "", base_seed: int = 0, rate=24,
                 progress: Callable[[float], None] | None = None) -> ChunkResult:
    """Remove the object from one chunk and store the result; reuse a stored result with the same key."""
    started, t0 = _now(), time.perf_counter()
    index = chunk.chunk.index
    seed = chunk_seed(shot_id, index, base_seed)
    key = chunk_content_key(chunk, identity, prompt, seed)
    out_key = layout.chunk_result(work_key, index, identity.name, key)
    p1_key = None
    if identity.pass1 is not None:  # pass 1 is stored under its own key: shared with --passes 1 runs
        p1 = chunk_content_key(chunk, identity.pass1, prompt, seed)
        p1_key = layout.chunk_result(work_key, index, identity.pass1.name, p1)

    def result(cached: bool) -> ChunkResult:
        return ChunkResult(index, out_key, key, cached, time.perf_counter() - t0, peak_rss_mb(), seed, identity,
                           started, _now(), p1_key)

    if store.exists(out_key) and (p1_key is None or store.exists(p1_key)):
        log.info("shot %s chunk %d: reusing %s", shot_id, index, out_key)
        return result(cached=True)
    frames = np.stack(list(read_video(store.local_path(chunk.plate_key))))
    mask = np.stack(list(read_video(store.local_path(chunk.mask_key))))
    request = RemovalRequest(frames=frames, quadmask=mask, prompt=prompt, seed=seed)
    try:
        loaded = backend()
        with exclusive(loaded):
            log.info("shot %s chunk %d: %s on %d frames", shot_id, index, identity.name, len(frames))
            output = _run(loaded, request, store, p1_key, rate, progress)
    except Exception as e:
        c = chunk.chunk
        raise RemovalError(f"shot {shot_id}: chunk {c.index} (frames {c.start}-{c.end - 1}) failed in the "
                           f"{identity.name} backend: {type(e).__name__}: {e}") from e
    with store.writing(out_key) as tmp:
        write_video_lossless(tmp, output, rate)
    return result(cached=False)


def _run(backend: RemovalBackend, request: RemovalRequest, store: ArtifactStore, p1_key: str | None, rate,
         progress) -> np.ndarray:
    """The backend's output for `request`, keep pixels exact; a two-pass backend stores pass 1 as it goes."""
    if p1_key is None:
        return enforce_keep(request, backend.remove(request, progress=progress))
    if not isinstance(backend, TwoPassBackend):
        raise TypeError(f"{backend.name} is not a two-pass backend")
    if store.exists(p1_key):
        pass1 = np.stack(list(read_video(store.local_path(p1_key))))
        return enforce_keep(request, backend.remove_pass2(request, pass1, progress=progress))
    both = backend.remove_two_pass(request, progress=progress)
    with store.writing(p1_key) as tmp:
        write_video_lossless(tmp, enforce_keep(request, both.pass1), rate)
    return enforce_keep(request, both.pass2)
