"""The batch: plan the edit, process every flagged shot, conform the edit, report."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from prefect import flow
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.process_shot import process_shot
from shots.conform import Deliverable
from storage import manifest
from storage.rows import shot_row
from storage.store import ArtifactStore
from tasks.edit import conform_edit, plan_edit
from tasks.options import RunOptions
from tasks.report import batch_table
from tasks.shot import record_shot


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@flow(name="process-edit", task_runner=ThreadPoolTaskRunner(max_workers=2))
def process_edit(edit: str, out: str, backend: str = "auto", passes: int = 1, format: str = "png",
                 rate: str | None = None, handles: int = 8, shots_file: str | None = None,
                 relink: str | None = None, seed: int = 0, run_id: str | None = None):
    """Remove the flagged objects from every shot of `edit`; results and manifest under `out`."""
    options = RunOptions(out=out, backend=backend, passes=passes, format=format, rate=rate, handles=handles,
                         shots_file=shots_file, relink=relink, seed=seed)
    run_id = run_id or new_run_id()
    shots = plan_edit(edit, options)
    delivered: dict[str, tuple] = {}
    for shot in shots:
        if not shot.flagged:
            record_shot(out, shot_row(run_id, 1, shot, edit, "skipped", error="no removal instructions"), [])
            continue
        state = process_shot(shot.shot_id, shot.to_dict(), options.to_dict(), run_id, edit, return_state=True)
        if state.is_completed() and (result := state.result())["deliverable"]:
            delivered[shot.shot_id] = (shot, Deliverable(**result["deliverable"]))
    conform_uri = conform_edit(edit, options, delivered)
    rows = [r for r in manifest.read_shots(ArtifactStore(out)) if r["run_id"] == run_id]
    if conform_uri:
        rows = [{**r, "conform_uri": conform_uri} if r["status"] == "done" else r for r in rows]
        manifest.record_shots(ArtifactStore(out), rows)
    batch_table(rows, key=f"batch-{run_id}")
    failed = [r["shot_id"] for r in rows if r["status"] == "failed"]
    summary = {"run_id": run_id, "conform_uri": conform_uri, "shots": len(rows), "failed": failed}
    if failed:
        return Failed(message=f"{len(failed)} of {len(rows)} shots failed: {', '.join(failed)}", data=summary)
    return summary
