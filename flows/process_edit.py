"""The batch: plan the edit, process every flagged shot, conform the edit, report."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from prefect import flow
from prefect.exceptions import MissingResult
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.gpu_shot import dispatch_shots, shot_job, shot_result
from flows.process_shot import process_shot
from shots.conform import Deliverable
from storage import manifest
from storage.rows import shot_row
from storage.store import ArtifactStore
from tasks.edit import conform_edit, plan_edit, record_run
from tasks.options import RunOptions
from tasks.report import BatchProgress, batch_table
from tasks.shot import record_shot


DISPATCH = ("local", "deployment")


def _rows(out: str, run_id: str) -> list[dict]:
    return [r for r in manifest.read_shots(ArtifactStore(out)) if r["run_id"] == run_id]


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@flow(name="process-edit", task_runner=ThreadPoolTaskRunner(max_workers=2))
def process_edit(edit: str, out: str, backend: str = "auto", passes: int = 1, format: str = "png",
                 rate: str | None = None, handles: int = 8, shots_file: str | None = None,
                 relink: str | None = None, seed: int = 0, model_dir: str | None = None, steps: int = 50,
                 guidance: float = 1.0, model_size: str = "384x672", segmenter: str = "auto",
                 reasoner: str = "auto", sam2_dir: str | None = None, run_id: str | None = None,
                 only_shots: list[str] | None = None, force: bool = False, dispatch: str = "local",
                 shot_timeout: float | None = None):
    """Remove the flagged objects from every shot of `edit` (or `only_shots`); results under `out`.

    Shots whose inputs, results and format match a version already delivered are reported
    `up_to_date` and get no new version, unless `force`. `dispatch="deployment"` runs each shot as a
    `process-shot` deployment run on the GPU pool (all queued at once; the pool's concurrency limit
    decides how many run) and waits up to `shot_timeout` seconds for them (None: no limit).
    """
    if dispatch not in DISPATCH:
        raise ValueError(f"dispatch must be one of {', '.join(DISPATCH)}, got {dispatch!r}")
    options = RunOptions(out=out, backend=backend, passes=passes, format=format, rate=rate, handles=handles,
                         shots_file=shots_file, relink=relink, seed=seed, model_dir=model_dir, steps=steps,
                         guidance=guidance, model_size=model_size, segmenter=segmenter, reasoner=reasoner,
                         sam2_dir=sam2_dir)
    run_id = run_id or new_run_id()
    record_run(run_id, edit, options)
    shots = [s for s in plan_edit(edit, options) if only_shots is None or s.shot_id in only_shots]
    attempts = manifest.next_attempts(ArtifactStore(out), [s.shot_id for s in shots])
    delivered: dict[str, tuple] = {}
    progress = BatchProgress(run_id, sum(s.flagged for s in shots))
    for shot in shots:
        if not shot.flagged:
            record_shot(out, shot_row(run_id, attempts[shot.shot_id], shot, edit, "skipped",
                                      error="no removal instructions"), [])
    flagged = [s for s in shots if s.flagged]
    if dispatch == "deployment":
        remote = dispatch_shots([shot_job(s, options.to_dict(), run_id, edit, attempts[s.shot_id], force)
                                 for s in flagged], timeout=shot_timeout)
    for shot in flagged:
        result = remote[shot.shot_id] if dispatch == "deployment" else \
            _run_shot_here(shot, options, run_id, edit, attempts[shot.shot_id], force)
        if result and result["deliverable"]:
            delivered[shot.shot_id] = (shot, Deliverable(**result["deliverable"]), result["row"]["status"])
        progress.shot_finished()
        batch_table(_rows(out, run_id), key=f"batch-{run_id}")  # the UI table fills in as shots finish
    rows = _rows(out, run_id)
    if any(status in ("done", "degraded") for *_, status in delivered.values()):  # new versions: new conform
        conform_uri = conform_edit(edit, options, {k: v[:2] for k, v in delivered.items()})
        rows = [{**r, "conform_uri": conform_uri} if r["shot_id"] in delivered else r for r in rows]
        manifest.record_shots(ArtifactStore(out), rows)
    batch_table(rows, key=f"batch-{run_id}")
    failed = [r["shot_id"] for r in rows if r["status"] == "failed"]
    summary = {"run_id": run_id, "shots": len(rows), "failed": failed}
    if failed:
        return Failed(message=f"{len(failed)} of {len(rows)} shots failed: {', '.join(failed)}", data=summary)
    return summary


def _run_shot_here(shot, options: RunOptions, run_id: str, edit: str, attempt: int, force: bool) -> dict | None:
    """`process_shot` as a subflow in this process: its result, or None when the shot failed."""
    # No heartbeat of its own (the batch run's covers this process): Prefect 3.8.8 joins a flow's
    # heartbeat thread at exit and that thread sleeps in whole seconds, so each subflow ended ~1 s late.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        state = process_shot(shot.shot_id, shot.to_dict(), options.to_dict(), run_id, edit, attempt, force,
                             return_state=True)
    if not state.is_completed():
        return None
    try:
        return state.result()
    except MissingResult:  # the final state came back from the API without its data: read the manifest
        return shot_result(options.out, run_id, shot.shot_id, attempt)
