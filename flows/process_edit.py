"""The batch: plan the edit, process every flagged shot, conform the edit; every shot accounted for.

The body reads as the batch does: hold the output folder, plan, record the plan (a `planned` row
per shot), run the shots (subflows here, or runs on the GPU pool), record each outcome as it
arrives, conform the edit, report. A batch stopped midway (SIGTERM, Cancel in the UI) records its
unfinished shots as `interrupted` on the way out; one killed outright leaves `planned` rows that
`status` shows as interrupted and `rerun` picks up.
"""
from __future__ import annotations

import contextvars
import signal
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Cancelled, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows import farm
from flows.dispatch import ShotJob, dispatch_shots
from flows.process_shot import process_shot
from shots.shot import Shot
from storage import manifest
from storage.atomic import sweep_partials
from storage.lock import OutputLock
from storage.store import ArtifactStore
from tasks.edit import conform_edit, plan_edit, start_run
from tasks.outcome import ShotOutcome, Unsuccessful, outcome_of, utcnow
from tasks.report import BatchProgress, BatchTable, update_review
from tasks.shot import record_outcome
from tasks.spec import RunSpec, absolute


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


class BatchCancelled(Exception):
    """Cancel was asked for in the Prefect UI while the batch ran in a process no worker supervises."""


@dataclass(repr=False)
class BatchOutcome:
    """What a batch did: one outcome per planned shot, and the conformed edit if one was written."""

    run_id: str
    edit: str
    outcomes: list[ShotOutcome] = field(default_factory=list)
    conform_uri: str | None = None
    conform_error: str | None = None  # the shots are done, but the conformed edit could not be written

    def __repr__(self) -> str:
        counts = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return f"BatchOutcome({self.run_id}: {', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'no shots'})"

    def with_status(self, *statuses: str) -> list[str]:
        return [o.shot.shot_id for o in self.outcomes if o.status in statuses]


def batch_run_name() -> str:
    """`{edit}-{date}`: what people look for in the UI in the morning."""
    from prefect.runtime import flow_run

    edit = flow_run.parameters.get("edit") or "edit"
    return f"{Path(edit).stem}-{datetime.now():%Y-%m-%d}"


@flow(name="process-edit", flow_run_name=batch_run_name, task_runner=ThreadPoolTaskRunner(max_workers=2),
      persist_result=True)
def process_edit(edit: Annotated[str, Field(min_length=1)], spec: RunSpec, only_shots: list[str] | None = None,
                 run_id: str | None = None):
    """Remove the flagged objects from every shot of `edit` (or `only_shots`), as `spec` says.

    Shots whose inputs, results and format match a version already delivered are reported
    `up_to_date` and get no new version, unless `spec.force`. With `spec.dispatch == "deployment"`
    each shot is a `process-shot` run on the GPU pool; with "farm" its chunks run on warm GPU workers.
    """
    edit, run_id, store = absolute(edit), run_id or new_run_id(), spec.store()
    _tag_run(edit, spec)
    with OutputLock(store, run_id):
        _tidy(store)
        edit_shots = plan_edit(edit, spec.ingest)
        shots = [s for s in edit_shots if only_shots is None or s.shot_id in only_shots]
        batch = BatchOutcome(run_id, edit)
        attempts = start_run(store, run_id, edit, spec, shots)
        progress = BatchProgress(run_id, len(shots))
        table = BatchTable(run_id, spec.out, [o.shot_row(store) for o in _planned(batch, shots, attempts)])
        title = f"{Path(edit).name} into {spec.out}"
        try:
            for outcome in _run_shots(edit, spec, shots, run_id, attempts, store):
                batch.outcomes.append(outcome)
                progress.shot_finished()
                table.update([o.shot_row(store) for o in _planned(batch, shots, attempts)])
                update_review(store, title)
        except BaseException as stop:  # SIGTERM (Prefect's TerminationSignal), a cancel, Ctrl-C
            _record_interrupted(store, batch, shots, attempts, stop)
            if isinstance(stop, BatchCancelled):
                message = f"cancelled: {', '.join(batch.with_status('interrupted'))} interrupted"
                return Cancelled(message=message, data=Unsuccessful(message, batch))
            raise
        if any(o.status in ("done", "degraded") for o in batch.outcomes):  # new versions: a new conform
            _conform(batch, spec, store, edit_shots)
        table.update([o.shot_row(store) for o in batch.outcomes])
        update_review(store, title)
        manifest.compact(store)  # journals stay only where a batch was stopped
    failed = batch.with_status("failed")
    if failed or batch.conform_error:
        problems = [f"{len(failed)} of {len(batch.outcomes)} shots failed: {', '.join(failed)}"] if failed else []
        message = "; ".join(problems + [batch.conform_error or ""]).strip("; ")
        return Failed(message=message, data=Unsuccessful(message, batch))
    return batch


def _conform(batch: BatchOutcome, spec: RunSpec, store: ArtifactStore, edit_shots: list[Shot]) -> None:
    """Write the conformed edit (every clip at its latest good version) and put its URI on the shots' rows."""
    try:
        batch.conform_uri = conform_edit(batch.edit, spec, store, edit_shots)
    except Exception as e:  # noqa: BLE001 - the shots stay delivered; the batch says what is missing
        batch.conform_error = f"the conformed edit could not be written: {type(e).__name__}: {e}"
        get_run_logger().error(batch.conform_error)
        return
    batch.outcomes = [replace(o, conform_uri=batch.conform_uri) if o.delivered else o for o in batch.outcomes]
    manifest.record(store, shots=[o.shot_row(store) for o in batch.outcomes if o.delivered])


def _planned(batch: BatchOutcome, shots: list[Shot], attempts: dict[str, int]) -> list[ShotOutcome]:
    """Every shot of the batch as it stands: its outcome, or planned."""
    ended = {o.shot.shot_id: o for o in batch.outcomes}
    return [ended.get(s.shot_id) or ShotOutcome(batch.run_id, attempts[s.shot_id], s, batch.edit, manifest.PLANNED)
            for s in shots]


def _tag_run(edit: str, spec: RunSpec) -> None:
    """Tags that say what the batch is: the edit, the output folder, the backend (filterable in the UI)."""
    from prefect import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    tags = [f"edit:{Path(edit).name}", f"out:{spec.out}", f"backend:{spec.backend.name}"]
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run.id).tags
        client.update_flow_run(flow_run.id, tags=sorted(set(current) | set(tags)))


def _run_shots(edit: str, spec: RunSpec, shots: list[Shot], run_id: str, attempts: dict[str, int],
               store: ArtifactStore):
    """Each planned shot's outcome, as it ends: skipped and unprocessable ones first, then the rest."""
    todo = []
    for shot in shots:
        skip, problem = shot.skip_reason, shot.problem
        if skip or problem:
            outcome = ShotOutcome(run_id, attempts[shot.shot_id], shot, edit, "skipped" if skip else "failed",
                                  skip or f"shot {shot.shot_id}: {problem}")
            record_outcome(store, outcome)
            yield outcome
        else:
            todo.append(shot)
    if spec.dispatch == "deployment":
        jobs = [ShotJob(s, edit, spec, run_id, attempts[s.shot_id]) for s in todo]
        outcomes = dispatch_shots(jobs, store, timeout=spec.shot_timeout)
        for job in jobs:
            outcome = outcomes[job.shot.shot_id]
            record_outcome(store, outcome)  # the run recorded its own, unless it never returned: record again
            yield outcome
        return
    if spec.dispatch == "farm":
        yield from _run_on_farm(edit, spec, todo, run_id, attempts, store)
        return
    for shot in todo:
        _stop_if_cancel_requested()
        yield _run_subflow(process_shot, edit, spec, shot, run_id, attempts, store)


def _run_subflow(flow_, edit: str, spec: RunSpec, shot: Shot, run_id: str, attempts: dict[str, int],
                 store: ArtifactStore) -> ShotOutcome:
    """One shot as a subflow of the batch, and its outcome."""
    # No heartbeat of its own (the batch run's covers this process): Prefect 3.8.8 joins a flow's
    # heartbeat thread at exit and that thread sleeps in whole seconds, so each subflow ended ~1 s late.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        state = flow_(edit, spec, shot.shot_id, run_id, attempts[shot.shot_id], shot=shot.to_dict(),
                      return_state=True)
    return _subflow_outcome(state, ShotJob(shot, edit, spec, run_id, attempts[shot.shot_id]), store)


def _run_on_farm(edit: str, spec: RunSpec, shots: list[Shot], run_id: str, attempts: dict[str, int],
                 store: ArtifactStore):
    """Shots as subflows here, a few at once, their chunks on the farm's warm GPU workers; outcomes as they end.

    One shot more than there are GPUs runs at a time, so a GPU finds the next shot's chunks ready
    while a shot prepares or conforms here.
    """
    address = spec.farm_address
    gpus = farm.gpu_workers(address)
    get_run_logger().info("farm %s: %d GPU workers (%s)", address, len(gpus), ", ".join(gpus) or "none yet: chunks "
                          "wait for one")
    on_farm = process_shot.with_options(task_runner=farm.task_runner(address))
    pool, running = ThreadPoolExecutor(max_workers=len(gpus) + 1, thread_name_prefix="shot"), set()
    try:
        for shot in shots:
            _stop_if_cancel_requested()
            context = contextvars.copy_context()  # the shot is a subflow of this batch run, in its thread too
            running.add(pool.submit(context.run, _run_subflow, on_farm, edit, spec, shot, run_id, attempts, store))
            if len(running) > len(gpus):
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
        for future in as_completed(running):
            yield future.result()
    finally:  # a stopped batch does not wait here for its shots: they are recorded as interrupted
        pool.shutdown(wait=False, cancel_futures=True)


def _subflow_outcome(state, job: ShotJob, store: ArtifactStore) -> ShotOutcome:
    """The outcome a shot subflow returned, or a failed one (recorded here) when it crashed before returning.

    When a batch run is retried (the UI's Retry), Prefect hands back the outcome of a shot subflow that
    completed in the earlier try instead of running it again: this try records it as its own attempt,
    reused (`up_to_date`, chunks cached), so every planned row ends.
    """
    try:
        result = outcome_of(state)
    except Exception as e:  # noqa: BLE001 - the result itself is unreadable
        result = e
    if isinstance(result, ShotOutcome):
        if (result.run_id, result.attempt) != (job.run_id, job.attempt):
            result = replace(result, run_id=job.run_id, attempt=job.attempt, finished_at=utcnow(),
                             status="up_to_date" if result.delivered else result.status,
                             chunks=tuple(replace(c, cached=True) for c in result.chunks))
            record_outcome(store, result)
        return result
    outcome = job.failed(f"shot {job.shot.shot_id}: the shot run ended {state.name} without an outcome: "
                         f"{type(result).__name__}: {result}")
    record_outcome(store, outcome)
    return outcome


def _record_interrupted(store: ArtifactStore, batch: BatchOutcome, shots: list[Shot], attempts: dict[str, int],
                        stop: BaseException) -> None:
    """Every planned shot without an outcome becomes `interrupted`, saying what stopped the batch."""
    ended = {o.shot.shot_id for o in batch.outcomes}
    why = _stopped_by(stop)
    for shot in shots:
        if shot.shot_id not in ended:
            batch.outcomes.append(ShotOutcome(batch.run_id, attempts[shot.shot_id], shot, batch.edit, "interrupted",
                                              f"shot {shot.shot_id}: {why} before it ended"))
    interrupted = [o for o in batch.outcomes if o.status == "interrupted"]
    manifest.record(store, shots=[o.shot_row(store) for o in interrupted])
    get_run_logger().warning("batch %s stopped: %d shots recorded as interrupted", batch.run_id, len(interrupted))


def _stopped_by(stop: BaseException) -> str:
    if isinstance(stop, BatchCancelled):
        return "the batch was cancelled in the Prefect UI"
    if isinstance(stop, KeyboardInterrupt):
        return "the batch was interrupted (Ctrl-C)"
    signal_number = getattr(stop, "signal", None)  # Prefect's TerminationSignal: SIGTERM, from a kill or a worker
    if signal_number is not None:
        return f"the batch was stopped by {signal.Signals(signal_number).name}"
    return f"the batch was stopped ({type(stop).__name__}: {stop})"


def _stop_if_cancel_requested() -> None:
    """Between shots: a run cancelled in the UI while no worker supervises this process stops here."""
    from prefect import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    if state is not None and state.is_cancelling():
        raise BatchCancelled(f"flow run {flow_run.name} was cancelled")


def _tidy(store: ArtifactStore) -> None:
    """Before planning: merge the journals a stopped batch left, record its unfinished shots as interrupted,
    and remove its half-written files."""
    merged = manifest.compact(store)
    closed = manifest.close_planned(store)
    swept = sweep_partials(store.root) if store.is_local else []
    if merged or closed or swept:
        get_run_logger().warning("%s: a batch was stopped here before: merged %d journal rows, recorded %d of its "
                                 "shots as interrupted, removed %d half-written files", store.root_uri, merged,
                                 closed, len(swept))
