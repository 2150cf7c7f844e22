"""Shots as `process-shot` deployment runs on the GPU pool: launch them all, wait once, take their outcomes.

Each shot runs in a process (or pod) of its own, so `CUDA_VISIBLE_DEVICES`, crashes and kills stay
with the shot; the pool's concurrency limit (= number of GPUs) decides how many run at once and the
others wait as Scheduled runs. Runs are created with `timeout=0` (linked to the batch as subflows)
and waited for with one polling loop, not one thread per shot.

Outcomes come back as each run's persisted result (`state.result()`): the runs are told to keep
their results under the output folder (`PREFECT_RESULTS_LOCAL_STORAGE_PATH`), which both sides
see, so the batch reads them wherever the shot ran. A run that crashed, was cancelled or never
finished has no outcome; the batch gets a `failed` one naming the run and how it ended.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from shots.shot import Shot
from storage import layout
from storage.store import ArtifactStore
from tasks.outcome import ShotOutcome, outcome_of
from tasks.spec import RunSpec

log = logging.getLogger(__name__)

SHOT_DEPLOYMENT = "process-shot/process-shot"  # flow name / deployment name, as in prefect.yaml
DEPLOYMENT_ENV = "VOIDBATCH_SHOT_DEPLOYMENT"


@dataclass(frozen=True)
class ShotJob:
    """One shot to run on the pool, and the parameters its run gets (JSON: they travel through the API)."""

    shot: Shot
    edit: str
    spec: RunSpec
    run_id: str
    attempt: int

    @property
    def parameters(self) -> dict:
        return {"edit": self.edit, "spec": self.spec.model_dump(mode="json"), "shot_id": self.shot.shot_id,
                "run_id": self.run_id, "attempt": self.attempt}

    def failed(self, error: str) -> ShotOutcome:
        return ShotOutcome(self.run_id, self.attempt, self.shot, self.edit, "failed", error)


def dispatch_shots(jobs: list[ShotJob], store: ArtifactStore, *, deployment: str | None = None,
                   timeout: float | None = None, poll_interval: float = 5.0, job_variables: dict | None = None,
                   tags: list[str] | None = None) -> dict[str, ShotOutcome]:
    """One `process-shot` run per job; wait up to `timeout` s for all (None: no limit); outcomes by shot id.

    Runs still unfinished at the timeout are cancelled and come back failed.
    """
    from prefect import get_client
    from prefect.deployments import run_deployment

    deployment = deployment or os.environ.get(DEPLOYMENT_ENV, SHOT_DEPLOYMENT)
    variables = _with_results_under(store, job_variables)
    launched: dict[str, Any] = {}
    try:
        for job in jobs:
            shot_id = job.shot.shot_id
            launched[shot_id] = run_deployment(
                deployment, parameters=job.parameters, timeout=0, flow_run_name=shot_id, tags=tags,
                idempotency_key=f"voidbatch:{job.run_id}:{shot_id}:{job.attempt}", job_variables=variables)
            log.info("shot %s -> %s run %s", shot_id, deployment, launched[shot_id].name)
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
    return {job.shot.shot_id: shot_outcome(job, final[job.shot.shot_id], deployment) for job in jobs}


def _with_results_under(store: ArtifactStore, job_variables: dict | None) -> dict:
    """Job variables that keep the runs' results under the output folder (local stores; remote ones need a
    shared PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK on the pool)."""
    variables = dict(job_variables or {})
    if store.is_local:
        variables["env"] = {**variables.get("env", {}),
                            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": store.path(layout.RESULTS)}
    return variables


def shot_outcome(job: ShotJob, run, deployment: str) -> ShotOutcome:
    """The outcome the run persisted, or a failed one saying how the run ended without one."""
    state = run.state
    name = state.name if state else "unknown"
    if state is not None and state.is_final():
        try:
            result = outcome_of(state)
        except Exception as e:  # noqa: BLE001 - no persisted result (crashed before returning, storage unseen)
            result = e
        if isinstance(result, ShotOutcome):
            return result
        message = (state.message or "").strip()
        error = f"shot {job.shot.shot_id}: {deployment} run {run.name} ended {name}" + (f": {message}" if message
                                                                                       else "")
        if state.is_completed():
            error += (f"; its result could not be read ({type(result).__name__}: {result}): is the output on "
                      f"storage both machines see at the same path?")
    else:
        error = f"shot {job.shot.shot_id}: {deployment} run {run.name} did not finish in time ({name}); cancelled"
    log.error(error)
    return job.failed(error)


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
