"""One shot as its own deployment run on the GPU pool, and the batch-side helpers that fan shots out to it.

`gpu_shot` is what the `process-shot` deployment (pool `a100`) runs: the same work as the
in-process `process_shot` subflow, in a process (or pod) of its own, so `CUDA_VISIBLE_DEVICES`,
crashes and kills stay with the shot. The pool's concurrency limit (= number of GPUs) decides
how many run at once; the others wait as Scheduled runs.

The batch side: `dispatch_shots(jobs)` creates one `process-shot` run per shot (linked to the
calling flow as subflows), waits for all of them with one polling loop (not one thread per shot),
and returns what `process_shot` would have returned, read back from the manifest on the shared
output store: `{"row": ..., "deliverable": ...}`, or None for a shot that did not finish. A child
run that crashed, was cancelled or never finished leaves no row of its own; a `failed` row is
recorded for it here, so `rerun-failed` picks the shot up. `out` must be storage both sides see.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.process_shot import process_shot

SHOT_DEPLOYMENT = "process-shot/process-shot"  # flow name / deployment name, as in prefect.yaml
MODEL_DIR_ENV = "VOIDBATCH_MODEL_DIR"  # set on the GPU pool's jobs (job variable model_dir)


@flow(name="process-shot", flow_run_name="shot-{shot_id}", task_runner=ThreadPoolTaskRunner(max_workers=2))
def gpu_shot(shot_id: str, shot: dict, options: dict, run_id: str, edit: str, attempt: int = 1,
             force: bool = False) -> dict:
    """One shot in this process (a GPU pool job): prepare, remove each chunk, conform, record.

    The batch's options, except that a batch which named no model directory gets this machine's
    (`VOIDBATCH_MODEL_DIR`, set by the pool's `model_dir` job variable).
    """
    options = dict(options)
    if not options.get("model_dir") and os.environ.get(MODEL_DIR_ENV):
        options["model_dir"] = os.environ[MODEL_DIR_ENV]
    get_run_logger().info("shot %s attempt %d of batch %s on %s (CUDA_VISIBLE_DEVICES=%s)", shot_id, attempt,
                          run_id, os.uname().nodename, os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    return process_shot.fn(shot_id, shot, options, run_id, edit, attempt, force)


# -- the batch side -------------------------------------------------------------------------------
def shot_job(shot, options: dict, run_id: str, edit: str, attempt: int, force: bool = False) -> dict:
    """The parameters of one `process-shot` run (JSON: they travel through the API)."""
    return {"shot_id": shot.shot_id, "shot": shot.to_dict(), "options": dict(options), "run_id": run_id,
            "edit": edit, "attempt": attempt, "force": force}


def run_shot_deployment(job: dict, *, deployment: str | None = None, timeout: float | None = None,
                        poll_interval: float = 5.0, job_variables: dict | None = None) -> dict | None:
    """One shot through the GPU deployment: `process_shot`'s result, or None if it did not finish."""
    return dispatch_shots([job], deployment=deployment, timeout=timeout, poll_interval=poll_interval,
                          job_variables=job_variables)[job["shot_id"]]


def dispatch_shots(jobs: list[dict], *, deployment: str | None = None, timeout: float | None = None,
                   poll_interval: float = 5.0, job_variables: dict | None = None,
                   tags: list[str] | None = None) -> dict[str, dict | None]:
    """One `process-shot` deployment run per job; wait up to `timeout` s for all (None: no limit).

    Runs still unfinished at the timeout are cancelled and recorded as failed. Returns, per shot
    id, the `{"row", "deliverable"}` dict `process_shot` returns, or None (its failure is in the
    manifest). `deployment` defaults to $VOIDBATCH_SHOT_DEPLOYMENT or 'process-shot/process-shot'.
    """
    from prefect import get_client
    from prefect.deployments import run_deployment

    deployment = deployment or os.environ.get("VOIDBATCH_SHOT_DEPLOYMENT", SHOT_DEPLOYMENT)
    log = _logger()
    launched: dict[str, Any] = {}
    try:
        for job in jobs:
            # called inside a flow, the child shows as its subflow; timeout=0: create it, wait below
            launched[job["shot_id"]] = run_deployment(
                deployment, parameters=job, timeout=0, flow_run_name=f"shot-{job['shot_id']}",
                idempotency_key=f"voidbatch:{job['run_id']}:{job['shot_id']}:{job['attempt']}",
                job_variables=job_variables, tags=tags)
            log.info("shot %s -> %s run %s", job["shot_id"], deployment, launched[job["shot_id"]].name)
        final = _wait(launched, timeout, poll_interval)
    except BaseException:  # could not launch or wait for all of them: leave none running unwatched
        with get_client(sync_client=True) as client:
            for run in launched.values():
                with contextlib.suppress(Exception):
                    _cancel(client, client.read_flow_run(run.id))
        raise
    with get_client(sync_client=True) as client:
        for run in final.values():
            if not (run.state and run.state.is_final()):
                _cancel(client, run)
    recorded = _recorded_rows(jobs)
    return {job["shot_id"]: _outcome(job, final[job["shot_id"]], deployment, recorded) for job in jobs}


def shot_result(out: str, run_id: str, shot_id: str, attempt: int) -> dict | None:
    """`process_shot`'s return value rebuilt from the manifest: for a shot whose run state came back
    without its data (Prefect's MissingResult: results are not persisted), or from another process."""
    from storage.rows import deliverable_from_row
    from storage.store import ArtifactStore

    job = {"options": {"out": out}, "run_id": run_id, "shot_id": shot_id, "attempt": attempt}
    row = _recorded_rows([job]).get((out, run_id, shot_id, attempt))
    if row is None or row["status"] == "failed":
        return None
    deliverable = deliverable_from_row(row, ArtifactStore(out)) if row.get("output_uri") else None
    return {"row": row, "deliverable": asdict(deliverable) if deliverable else None}


def _wait(launched: dict[str, Any], timeout: float | None, poll_interval: float) -> dict[str, Any]:
    """Poll the runs (one query per 200) until every one is final or `timeout` passes."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    final = dict(launched)
    waiting = {run.id: shot_id for shot_id, run in launched.items()}
    deadline = None if timeout is None else time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while waiting:
            ids = list(waiting)
            for i in range(0, len(ids), 200):  # the API returns at most 200 runs per query
                for run in client.read_flow_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[i:i + 200])), limit=200):
                    final[waiting[run.id]] = run
                    if run.state and run.state.is_final():
                        del waiting[run.id]
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval,
                                                                           deadline - time.monotonic())))
    return final


def _cancel(client, run) -> None:
    """Stop a run we no longer wait for: a queued one is cancelled, a running one's worker kills it."""
    from prefect.states import Cancelled, Cancelling

    if run.state is not None and run.state.is_final():
        return
    state = Cancelled() if run.state is None or run.state.is_scheduled() or run.state.is_pending() \
        else Cancelling()
    state.message = "voidbatch: the batch stopped waiting for this shot"
    client.set_flow_run_state(run.id, state, force=True)


def _recorded_rows(jobs: list[dict]) -> dict[tuple, dict]:
    """The manifest rows of these jobs, by (run_id, shot_id, attempt); each output store read once."""
    from storage import manifest
    from storage.store import ArtifactStore

    rows: dict[tuple, dict] = {}
    for out in {job["options"]["out"] for job in jobs}:
        for r in manifest.read_shots(ArtifactStore(out)):
            rows[(out, r["run_id"], r["shot_id"], r["attempt"])] = r
    return rows


def _outcome(job: dict, run, deployment: str, recorded: dict[tuple, dict] | None = None) -> dict | None:
    """What `process_shot` returns, from the row the child recorded; a `failed` row when it recorded none."""
    from shots.shot import Shot
    from storage import manifest
    from storage.rows import deliverable_from_row, shot_row
    from storage.store import ArtifactStore

    recorded = _recorded_rows([job]) if recorded is None else recorded
    out = job["options"]["out"]
    store = ArtifactStore(out)
    row = recorded.get((out, job["run_id"], job["shot_id"], job["attempt"]))
    state = run.state.name if run.state else "unknown"
    if row is None:
        message = (run.state.message or "").strip() if run.state else ""
        error = f"shot {job['shot_id']}: {deployment} run {run.name} ended {state}" + (f": {message}" if message
                                                                                      else "")
        if not (run.state and run.state.is_final()):
            error = f"shot {job['shot_id']}: {deployment} run {run.name} did not finish in time ({state}); cancelled"
        elif run.state.is_completed():
            error = (f"shot {job['shot_id']}: {deployment} run {run.name} completed but its manifest row is not in "
                     f"{store.uri('manifest')}: is the output on storage both machines see at the same path?")
        manifest.record_shots(store, [shot_row(job["run_id"], job["attempt"], Shot.from_dict(job["shot"]),
                                               job["edit"], "failed", error=error)])
        _logger().error(error)
        return None
    if row["status"] == "failed":  # the manifest is the truth, whatever state the run ended in
        return None
    deliverable = deliverable_from_row(row, store) if row.get("output_uri") else None
    return {"row": row, "deliverable": asdict(deliverable) if deliverable else None}


def _logger():
    import logging

    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (a script, a test)
        return logging.getLogger(__name__)
