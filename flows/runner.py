"""Running the batch flow from the command line: progress bars in the terminal, rows back."""
from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from flows.process_edit import new_run_id, process_edit
from storage import manifest
from storage.store import ArtifactStore
from tasks import report


def _with_progress(run, out: str, run_id: str) -> tuple[list[dict], list[str]]:
    """Call `run()` with progress bars fed by the shots' progress; returns this run's rows and failures."""
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
            run()
        finally:
            report.remove_listener(on_progress)
    rows = [r for r in manifest.read_shots(ArtifactStore(out)) if r["run_id"] == run_id]
    return rows, [r["shot_id"] for r in rows if r["status"] == "failed"]


def run_batch(**params) -> tuple[list[dict], list[str]]:
    """Run `process_edit` in this process; returns this run's shot rows and the failed shot ids."""
    run_id = new_run_id()
    return _with_progress(lambda: process_edit(**params, run_id=run_id, return_state=True), params["out"], run_id)


def run_rerun(out: str, relink: str | None, shots_file: str | None) -> tuple[list[dict], list[str]]:
    """Run `rerun_failed`; returns the rows it wrote and the shots still failing."""
    from flows.rerun_failed import rerun_failed

    before = {r["run_id"] for r in manifest.read_shots(ArtifactStore(out))}
    _with_progress(lambda: rerun_failed(out=out, relink=relink, shots_file=shots_file, return_state=True), out, "")
    rows = [r for r in manifest.read_shots(ArtifactStore(out)) if r["run_id"] not in before]
    return rows, [r["shot_id"] for r in rows if r["status"] == "failed"]


def run_demo(out: str) -> tuple[list[dict], dict, list[str]]:
    """Generate the sample edit under `out/sample`, run it, and score each shot against its truth."""
    import numpy as np

    from shots.media import read_frames
    from shots.sample_edit import HANDLES, score_against_truth, write_sample_edit

    edit, samples = write_sample_edit(Path(out) / "sample")
    rows, failed = run_batch(edit=str(edit), out=out)
    store = ArtifactStore(out)
    scores = {}
    by_id = {r["shot_id"]: r for r in rows}
    for sample in samples:
        row = by_id.get(sample.clip_name)
        if not row or row["status"] not in ("done", "up_to_date", "degraded"):
            continue
        pattern = f"{store.path(store.key_of(row['output_uri']))}/{sample.clip_name}_void_v{row['version']:03d}.####.png"
        frames = list(read_frames(pattern, 0, row["frames"]))
        assert row["source_in"] - HANDLES >= 0
        scores[sample.clip_name] = score_against_truth(sample, frames)
        del frames
    np.seterr(all="ignore")
    return rows, scores, failed
