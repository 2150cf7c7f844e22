"""One shot: mask, prepare, remove each chunk, conform, record; returns its ShotOutcome. Fails alone.

The same flow runs as a subflow of the batch (the shot is handed over as planned) and as the
`process-shot` deployment on the GPU pool, where it plans the shot from the edit at run time: a
retry from the UI after the media was fixed sees the fix. The outcome is persisted by Prefect, so
the batch gets it back with `state.result()` either way; it is also recorded in the manifest
here, so a shot that ends is accounted for even if the batch process is gone.
"""
from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import replace

from prefect import flow, get_run_logger
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows import farm
from model.masks.batch import needs_generated_mask
from model.backend import PASS1_SHARE
from model.removal import ChunkResult
from shots.extract import NothingToRemove, ShotError
from shots.shot import Shot
from storage.store import ArtifactStore, DiskFull
from tasks.edit import plan_edit
from tasks.masks import build_mask
from tasks.outcome import ShotOutcome, Unsuccessful, utcnow
from tasks.removal import backend_identity, remove_chunk
from tasks.report import ShotProgress, make_previews
from tasks.shot import conform_shot, prepare_shot, record_outcome
from tasks.spec import RunSpec

MODEL_DIR_ENV = "VOIDBATCH_MODEL_DIR"  # a GPU pool's own weights, for batches that named none


@flow(name="process-shot", flow_run_name="{shot_id}", task_runner=ThreadPoolTaskRunner(max_workers=2),
      persist_result=True)
def process_shot(edit: str, spec: RunSpec, shot_id: str, run_id: str, attempt: int = 1,
                 shot: dict | None = None) -> ShotOutcome:
    """Process one shot of `edit` with `spec`; a failed shot ends Failed with its outcome as the data.

    `shot` is the planned shot when the batch runs it in-process; without it (a deployment run) the
    shot is planned from the edit now.
    """
    spec = _with_pool_weights(spec)
    store = spec.store()
    planned = Shot.from_dict(shot) if shot is not None else _plan_one(edit, spec, shot_id)
    outcome = run_shot(edit, spec, planned, run_id, attempt, store)
    record_outcome(store, outcome)
    make_previews(store, outcome)
    if outcome.status == "failed":
        return Failed(message=outcome.error, data=Unsuccessful(outcome.error, outcome))
    return outcome


def run_shot(edit: str, spec: RunSpec, shot: Shot, run_id: str, attempt: int, store: ArtifactStore) -> ShotOutcome:
    """The shot's work, step by step; any failure is this shot's alone and ends up in its outcome."""
    started, progress = utcnow(), ShotProgress(spec.out, shot.shot_id)
    done: dict = {}  # what exists so far: a failed shot's row still says what was made

    def outcome(status: str, error: str | None = None, **more) -> ShotOutcome:
        progress.finish()
        return ShotOutcome(run_id, attempt, shot, edit, status, error, passes=spec.backend.passes,
                           seed=spec.seed, started_at=started, **{**done, **more})

    try:
        done["backend"] = backend_identity(spec.backend)
        if needs_generated_mask(shot):
            shot, done["mask"], done["mask_uri"] = build_mask(shot, store, spec.masks, progress.stage("mask"))
        done["prepared"] = prepared = prepare_shot(shot, store, spec, progress.stage("prepare"))
        done["chunks"] = remove_chunks(prepared, spec, store, progress)
        deliverable, key, reused = conform_shot(prepared, list(done["chunks"]), store, spec, progress.stage("conform"))
    except NothingToRemove as e:
        return outcome("skipped", str(e))
    except Exception as e:  # noqa: BLE001 - any failure is this shot's alone
        get_run_logger().error(message := _failure(shot, e, store))
        return outcome("failed", message)
    mask = done.get("mask")
    status = "up_to_date" if reused else "degraded" if mask is not None and mask.degraded else "done"
    return outcome(status, deliverable=deliverable, content_key=key)


def remove_chunks(prepared, spec: RunSpec, store: ArtifactStore, progress: ShotProgress) -> tuple[ChunkResult, ...]:
    """Every chunk through the backend, at once on the flow's task runner (threads here, GPUs on a farm).

    A two-pass backend runs every chunk's pass 1 before any pass 2: the worker holding them swaps
    the transformer's weights twice per shot, not twice per chunk. On a farm each chunk holds one
    GPU, and progress moves as chunks come back (a callback cannot travel to another machine).
    """
    shot, farm_address = prepared.shot, spec.farm_address
    bars = progress.chunks(len(prepared.chunks))
    phases = ((1, 0.0, PASS1_SHARE), (2, PASS1_SHARE, 1.0)) if spec.backend.passes == 2 else ((None, 0.0, 1.0),)
    results: dict[int | None, list[ChunkResult]] = {}
    for phase, lo, hi in phases:
        with farm.on_a_gpu(phase) if farm_address else contextlib.nullcontext():
            futures = [remove_chunk.submit(c, shot.shot_id, prepared.work_key, shot.instructions.prompt or "",
                                           spec.backend, store, spec.seed, shot.rate, phase=phase,
                                           progress=None if farm_address else _within(bar, lo, hi))
                       for c, bar in zip(prepared.chunks, bars)]
        results[phase] = []
        for bar in bars:  # a future is let go once read: a lost farm worker's finished chunks are not redone
            results[phase].append(futures.pop(0).result())
            bar(hi)
    if spec.backend.passes == 2:
        return tuple(replace(second, pass1=first) for first, second in zip(results[1], results[2]))
    return tuple(results[None])


def _within(bar, lo: float, hi: float):
    return lambda fraction: bar(lo + (hi - lo) * fraction)


def _failure(shot: Shot, e: Exception, store: ArtifactStore) -> str:
    """One line: the shot, and what went wrong (a full disk is named)."""
    if isinstance(e, (ShotError, DiskFull)):
        return str(e)
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"shot {shot.shot_id}: the output disk {store.disk()} is full: {e}"
    return f"shot {shot.shot_id}: {type(e).__name__}: {e}"


def _plan_one(edit: str, spec: RunSpec, shot_id: str) -> Shot:
    shots = {s.shot_id: s for s in plan_edit(edit, spec.ingest)}
    if shot_id not in shots:
        raise ShotError(shot_id, f"not in {edit} any more (its clips: {', '.join(sorted(shots)) or 'none'})")
    return shots[shot_id]


def _with_pool_weights(spec: RunSpec) -> RunSpec:
    """A batch that named no model directory gets this machine's (VOIDBATCH_MODEL_DIR, set by a GPU pool)."""
    if spec.backend.model_dir or not os.environ.get(MODEL_DIR_ENV):
        return spec
    backend = spec.backend.model_copy(update={"model_dir": os.environ[MODEL_DIR_ENV]})
    return spec.model_copy(update={"backend": type(spec.backend).model_validate(backend.model_dump())})
