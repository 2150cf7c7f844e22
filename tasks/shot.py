"""Tasks for one shot: prepare chunks, remove, conform, record. Each calls one library function."""
from __future__ import annotations

import atexit
import os
from functools import lru_cache

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from model import removal
from model.isolate import Isolated
from model.select import load_backend, resolve_backend
from shots import conform, extract
from storage import manifest
from storage.rows import deliverable_from_row
from storage.store import ArtifactStore


@task(name="prepare-shot", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def prepare_shot(shot, out: str, model_size: tuple[int, int], progress=None) -> extract.PreparedShot:
    """Validate the mask, choose the ROI, write model-size plate and mask chunks to the store."""
    prepared = extract.prepare_shot(shot, ArtifactStore(out), progress=progress, model_size=tuple(model_size))
    get_run_logger().info("shot %s: %d chunks, ROI %s", shot.shot_id, len(prepared.chunks), prepared.roi.as_list())
    return prepared


@task(name="remove-chunk", tags=["removal"], retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE,
      task_run_name="remove-{shot_id}-c{chunk.chunk.index}")
def remove_chunk(chunk: extract.ChunkInput, shot_id: str, work_key: str, prompt: str, backend: tuple, out: str,
                 seed: int, rate, progress=None) -> removal.ChunkResult:
    """One chunk through the removal backend; a stored result with the same content key is reused.

    With VOIDBATCH_CHUNK_TIMEOUT set (seconds), VOID chunks run in a child process with that hard
    timeout: a hung CUDA call is killed and the task's retry runs in a fresh child (the model then
    loads in the child as well as in the flow's process, which reads its name and version).
    """
    args = (chunk, shot_id, work_key, prompt, backend, out, seed, rate)
    timeout = os.environ.get("VOIDBATCH_CHUNK_TIMEOUT")
    if not timeout or resolve_backend(backend[0], backend[1]) != "void":
        return _remove(*args, progress=progress)
    return _gpu_child().call(_remove, *args, timeout=float(timeout), progress=progress,
                             what=f"shot {shot_id} chunk {chunk.chunk.index}")


def _remove(chunk, shot_id, work_key, prompt, backend, out, seed, rate, progress=None) -> removal.ChunkResult:
    return removal.remove_chunk(chunk, load_backend(*backend), ArtifactStore(out), work_key, shot_id, prompt,
                                seed, rate, progress=progress)


@lru_cache(maxsize=1)
def _gpu_child() -> Isolated:
    """One child per worker process: the model loads once in it; after a timeout the next call starts afresh.

    Closed at exit, or multiprocessing would wait on the (non-daemon) child when the process ends.
    """
    child = Isolated()
    atexit.register(child.close)
    return child


@task(name="conform-shot", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def conform_shot(prepared: extract.PreparedShot, results: list[removal.ChunkResult], out: str, fmt: str,
                 force: bool = False, progress=None) -> tuple[conform.Deliverable, str, bool]:
    """Stitch, composite into the full-resolution plate, publish a new version; or reuse an identical one.

    Returns (deliverable, render key, reused): a shot whose content, results and format match a
    version already delivered is up to date and gets no new version unless `force`.
    """
    store = ArtifactStore(out)
    key = conform.render_key(prepared, [r.output_key for r in results], fmt)
    if not force and (row := manifest.find_current(store, prepared.shot.shot_id, key)):
        get_run_logger().info("shot %s: up to date as v%03d", prepared.shot.shot_id, row["version"])
        return deliverable_from_row(row, store), key, True
    outputs = {r.chunk_index: r.output_key for r in results}
    return conform.conform_shot(prepared, outputs, store, fmt, progress=progress), key, False


@task(name="record-shot", cache_policy=NO_CACHE)
def record_shot(out: str, shot_row: dict, chunk_rows: list[dict]) -> None:
    """Merge this shot's rows into the manifest now, so a batch killed later loses nothing."""
    store = ArtifactStore(out)
    if chunk_rows:
        manifest.record_chunks(store, chunk_rows)
    manifest.record_shots(store, [shot_row])
