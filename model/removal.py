"""Run a removal backend on one prepared chunk, content-keyed so a rerun skips finished work.

The key covers everything that decides the output: the chunk's pixels (plate and mask), the
backend and its version, the prompt, the seed and backend parameters. An output already on the
store under that key is reused, never recomputed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from model.backend import RemovalBackend, RemovalRequest, enforce_keep
from shots.extract import ChunkInput
from shots.media import read_video, write_video_lossless
from storage.store import ArtifactStore

log = logging.getLogger(__name__)


class RemovalError(RuntimeError):
    """A backend failed on a chunk; the message names the shot, the chunk and its frames."""


def chunk_seed(shot_id: str, chunk_index: int, base_seed: int = 0) -> int:
    """A chunk's seed from shot id and chunk index: results never depend on batch order."""
    digest = hashlib.sha256(f"{base_seed}:{shot_id}:{chunk_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def chunk_content_key(chunk: ChunkInput, backend_name: str, backend_version: str, prompt: str, seed: int,
                      params: dict | None = None) -> str:
    ident = json.dumps({"pixels": chunk.content_sha256, "backend": backend_name, "version": backend_version,
                        "prompt": prompt, "seed": seed, "params": params or {}}, sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()


@dataclass(frozen=True)
class ChunkResult:
    chunk_index: int
    output_key: str
    content_key: str
    cached: bool
    seconds: float
    peak_rss_mb: float
    seed: int
    pass1_output_key: str | None = None  # two-pass backends: pass 1 kept as its own output, for comparison


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def remove_chunk(chunk: ChunkInput, backend: RemovalBackend, store: ArtifactStore, work_key: str, shot_id: str,
                 prompt: str = "", base_seed: int = 0, rate=24,
                 progress: Callable[[float], None] | None = None) -> ChunkResult:
    """Remove the object from one chunk and store the result; reuse a stored result with the same key."""
    t0 = time.perf_counter()
    seed = chunk_seed(shot_id, chunk.chunk.index, base_seed)
    key = chunk_content_key(chunk, backend.name, backend.version, prompt, seed)
    out_key = f"{work_key}/c{chunk.chunk.index:03d}.{backend.name}-{key[:12]}.mkv"
    two_pass = hasattr(backend, "remove_two_pass")
    p1_key = None
    if two_pass:  # pass 1 is stored under its own key: shared with --passes 1 runs of the same settings
        p1 = chunk_content_key(chunk, backend.pass1_name, backend.pass1_version, prompt, seed)
        p1_key = f"{work_key}/c{chunk.chunk.index:03d}.{backend.pass1_name}-{p1[:12]}.mkv"
    if store.exists(out_key) and (p1_key is None or store.exists(p1_key)):
        log.info("shot %s chunk %d: reusing %s", shot_id, chunk.chunk.index, out_key)
        return ChunkResult(chunk.chunk.index, out_key, key, True, time.perf_counter() - t0, peak_rss_mb(), seed,
                           p1_key)
    frames = np.stack(list(read_video(store.local_path(chunk.plate_key))))
    mask = np.stack(list(read_video(store.local_path(chunk.mask_key))))
    request = RemovalRequest(frames=frames, quadmask=mask, prompt=prompt, seed=seed)
    log.info("shot %s chunk %d: %s on %d frames", shot_id, chunk.chunk.index, backend.name, len(frames))
    try:
        if not two_pass:
            output = enforce_keep(request, backend.remove(request, progress=progress))
        elif store.exists(p1_key):
            pass1 = np.stack(list(read_video(store.local_path(p1_key))))
            output = enforce_keep(request, backend.remove_pass2(request, pass1, progress=progress))
        else:
            both = backend.remove_two_pass(request, progress=progress)
            with store.writing(p1_key) as tmp:
                write_video_lossless(tmp, enforce_keep(request, both.pass1), rate)
            output = enforce_keep(request, both.pass2)
    except Exception as e:
        c = chunk.chunk
        raise RemovalError(f"shot {shot_id}: chunk {c.index} (frames {c.start}-{c.end - 1}) failed in the "
                           f"{backend.name} backend: {type(e).__name__}: {e}") from e
    with store.writing(out_key) as tmp:
        write_video_lossless(tmp, output, rate)
    return ChunkResult(chunk.chunk.index, out_key, key, False, time.perf_counter() - t0, peak_rss_mb(), seed, p1_key)
