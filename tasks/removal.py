"""The chunk task, and the worker's loaded backend: weights load once per process, never just to be named.

`backend_identity(spec)` names the backend without loading it (a chunk whose result is on the
store never loads anything); `loaded_backend(spec)` loads it once per process and keeps it warm
for the next chunk, shot after shot (`model.removal.WarmBackend`: one model per process, so two
5B models never share a GPU). On a farm this process is a warm GPU worker (`flows.farm`).
"""
from __future__ import annotations

import atexit
import os
import time
from functools import lru_cache
from typing import Callable

from prefect import get_run_logger, task

from model import removal, select
from model.backend import BackendIdentity, RemovalBackend
from model.isolate import Isolated
from shots.extract import ChunkInput
from storage.store import ArtifactStore
from tasks import IN_MEMORY
from tasks.spec import BackendSpec

CHUNK_TIMEOUT_ENV = "VOIDBATCH_CHUNK_TIMEOUT"  # seconds; VOID chunks then run in a child process

WARM = removal.WarmBackend()  # this process's loaded backend


def backend_args(spec: BackendSpec) -> tuple:
    return spec.name, spec.model_dir, spec.steps, spec.guidance, spec.passes


def backend_identity(spec: BackendSpec) -> BackendIdentity:
    """Name, version and weights hash of the backend `spec` asks for, without loading it (cheap: weight
    hashes are remembered by file identity)."""
    return select.backend_identity(*backend_args(spec))


def loaded_backend(spec: BackendSpec) -> tuple[RemovalBackend, float]:
    """(the backend for `spec`, seconds spent loading it now): loaded on first use in this process and
    kept for the next chunk (0.0 s then)."""
    return WARM.get(spec, lambda: select.load_backend(*backend_args(spec)))


@task(name="remove-chunk", retries=1, retry_delay_seconds=5, **IN_MEMORY,
      task_run_name=lambda parameters: _run_name(parameters))
def remove_chunk(chunk: ChunkInput, shot_id: str, work_key: str, prompt: str, backend: BackendSpec,
                 store: ArtifactStore, seed: int, rate, progress=None, phase: int | None = None) -> removal.ChunkResult:
    """One chunk through the removal backend; a stored result with the same content key is reused.

    `phase` 1 or 2 runs one pass of a two-pass backend (`model.removal.remove_chunk`).

    With VOIDBATCH_CHUNK_TIMEOUT set (seconds), VOID chunks run in a child process with that hard
    timeout: a hung CUDA call is killed and the task's retry runs in a fresh child.
    """
    args = (chunk, shot_id, work_key, prompt, backend, store, seed, rate, phase)
    what = f"shot {shot_id} chunk {chunk.chunk.index} (frames {chunk.chunk.start}-{chunk.chunk.end - 1})" \
        + (f" pass {phase}" if phase else "")
    log, t0 = get_run_logger(), time.perf_counter()
    log.info("%s: starts on %s", what, backend_identity(backend).name)
    progress = logged_progress(progress, lambda pct: log.info("%s: %d%%", what, pct))
    timeout = os.environ.get(CHUNK_TIMEOUT_ENV)
    if not timeout or backend_identity(backend).name == "classical":
        result = _remove(*args, progress=progress)
    else:
        result = _gpu_child().call(_remove, *args, timeout=float(timeout), progress=progress, what=what)
    log.info("%s: %s in %.1f s", what, "reused" if result.cached else "done", time.perf_counter() - t0)
    return result


def logged_progress(progress, say: Callable[[int], None], step: int = 10):
    """`progress` that also says each `step`% it passes (long work is visible in the run's logs)."""
    said = [0]

    def report(fraction: float) -> None:
        pct = int(100 * fraction) // step * step
        if pct > said[0]:
            said[0] = pct
            say(pct)
        if progress is not None:
            progress(fraction)

    return report


def _remove(chunk, shot_id, work_key, prompt, backend: BackendSpec, store, seed, rate, phase,
            progress=None) -> removal.ChunkResult:
    return removal.remove_chunk(chunk, backend_identity(backend), lambda: loaded_backend(backend), store, work_key,
                                shot_id, prompt, seed, rate, progress=progress, phase=phase)


def _run_name(p: dict) -> str:
    """remove-sh010-c0, or remove-sh010-c0-p1 / -p2 for the passes of a two-pass chunk run in phases."""
    return f"remove-{p['shot_id']}-c{p['chunk'].chunk.index}" + (f"-p{p['phase']}" if p.get("phase") else "")


@lru_cache(maxsize=1)
def _gpu_child() -> Isolated:
    """One child per worker process: the model loads once in it; after a timeout the next call starts afresh.

    Closed at exit, or multiprocessing would wait on the (non-daemon) child when the process ends.
    """
    child = Isolated()
    atexit.register(child.close)
    return child
