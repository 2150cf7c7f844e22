"""Running flows from the command line: checks before anything starts, progress bars, outcomes back.

`preflight` finds what is wrong before a shot starts (an unreadable edit, a bad shot list, an
output folder that cannot be written or is busy, a farm that does not answer) and raises `UsageError` with one line naming
the file or the option: the CLI exits 2 on it. Flows run in this process against `prefect_api`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from flows import farm
from flows.embedded import prefect_api
from flows.process_edit import BatchOutcome, new_run_id, process_edit
from shots import ingest, sidecar
from storage import lock
from storage.store import ArtifactStore, StoreError
from tasks import report
from tasks.outcome import outcome_of
from tasks.spec import RunSpec


class UsageError(Exception):
    """Something is wrong before any shot started; the message names the file or the option."""


def preflight(edit: str, spec: RunSpec) -> None:
    """Raise UsageError for an edit, shot list or output folder the batch could not use."""
    try:
        ingest.read_edit(edit, spec.ingest.edit_rate)
        if spec.ingest.shots_file:
            sidecar.read_from_file(spec.ingest.shots_file)
    except (ingest.EditError, sidecar.SidecarError) as e:
        raise UsageError(str(e)) from None
    if spec.farm_address:
        try:
            farm.gpu_workers(spec.farm_address, timeout=10)
        except farm.FarmError as e:
            raise UsageError(f"--farm: {e}") from None
    check_writable(spec)


def check_writable(spec: RunSpec) -> None:
    """The output folder exists or can be made, takes a file, and no other live batch holds it."""
    try:
        store = spec.store()
        if store.is_local:
            probe = Path(store.root) / f".voidbatch-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
    except (StoreError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UsageError(f"--out {spec.out}: cannot write there ({reason})") from None
    holder = lock.holder(store)
    if holder is not None and holder.alive() is not False:
        raise UsageError(f"--out {spec.out} is in use by voidbatch {holder.describe()}")


def _progress_bars(run: Callable[[], object]) -> object:
    """Call `run()` with a progress bar per shot, fed by the shots' progress reports."""
    with Progress(TextColumn("{task.description:<24}"), BarColumn(), TextColumn("{task.fields[stage]:<8}"),
                  TimeElapsedColumn(), transient=False) as bars:
        tasks: dict[str, int] = {}
        weights = report.ShotProgress.STAGES
        state: dict[str, dict[str, float]] = {}

        def on_progress(shot_id: str, stage: str, fraction: float) -> None:
            if shot_id not in tasks:
                tasks[shot_id] = bars.add_task(shot_id, total=1.0, stage=stage)
                state[shot_id] = {s: 0.0 for s in weights}
            if stage == "done":
                bars.update(tasks[shot_id], completed=1.0, stage="done")
                return
            state[shot_id][stage] = max(state[shot_id][stage], fraction)
            done = sum(weights[s] * f for s, f in state[shot_id].items())
            bars.update(tasks[shot_id], completed=done, stage=stage)

        report.add_listener(on_progress)
        try:
            return run()
        finally:
            report.remove_listener(on_progress)


def _result(state):
    """A flow's outcome, however it ended; UsageError when it failed before it had one (an exception)."""
    result = outcome_of(state)
    if isinstance(result, BaseException):
        raise UsageError(str(result) or type(result).__name__)
    return result


def run_batch(edit: str, spec: RunSpec, run_id: str | None = None) -> BatchOutcome:
    """`process_edit` in this process, after the checks; its outcome."""
    preflight(edit, spec)
    with prefect_api(Path.cwd() / ".voidbatch" / "server"):
        state = _progress_bars(lambda: process_edit(edit, spec, run_id=run_id or new_run_id(), return_state=True))
    return _result(state)


def run_masks(edit: str, spec: RunSpec) -> list[dict]:
    """`generate_masks` in this process, after the checks; its masks.parquet rows."""
    from flows.generate_masks import generate_masks

    preflight(edit, spec)
    with prefect_api(Path.cwd() / ".voidbatch" / "server"):
        state = _progress_bars(lambda: generate_masks(edit, spec, return_state=True))
    return _result(state)


def run_rerun(out: str, relink: str | None = None, shots_file: str | None = None) -> list[BatchOutcome]:
    """`rerun_failed` in this process; the batches it ran (empty when nothing failed)."""
    from flows.rerun_failed import rerun_failed, shots_to_rerun

    store = ArtifactStore(out, create=False)
    if not store.exists("manifest") and not store.exists("runs"):
        raise UsageError(f"--out {out}: no voidbatch manifest there")
    if not shots_to_rerun(store):
        return []
    check_writable(RunSpec(out=out))
    with prefect_api(Path.cwd() / ".voidbatch" / "server"):
        state = _progress_bars(lambda: rerun_failed(out, relink, shots_file, return_state=True))
    result = _result(state)
    if not isinstance(result, list):
        raise UsageError(state.message or "the rerun could not run")
    return result


def run_demo(out: str) -> tuple[BatchOutcome, dict]:
    """Generate the sample edit under `out/sample`, run it, and score each shot against its truth."""
    from shots.media import read_frames
    from shots.sample_edit import score_against_truth, write_sample_edit
    from storage import layout

    edit, samples = write_sample_edit(Path(out) / "sample")
    batch = run_batch(str(edit), RunSpec(out=out))
    store = RunSpec(out=out).store()
    scores = {}
    by_id = {o.shot.shot_id: o for o in batch.outcomes}
    for sample in samples:
        o = by_id.get(sample.clip_name)
        if o is None or not o.delivered:
            continue
        d = o.deliverable
        pattern = f"{store.path(d.output_key)}/{layout.frame_pattern(d.shot_id, d.version, 'png')}"
        scores[sample.clip_name] = score_against_truth(sample, list(read_frames(pattern, 0, d.frames)))
    return batch, scores
