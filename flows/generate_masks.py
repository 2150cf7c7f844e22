"""Masks only: build every flagged shot's quadmask with a preview, for review before the GPU pass.

Each shot's mask is recorded in `manifest/masks.parquet` (how it was made, whether reasoning
degraded and why), and `voidbatch run` later finds the same mask by content and reuses it.
"""
from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.process_edit import new_run_id
from model.masks.batch import needs_generated_mask
from storage import manifest
from storage.lock import OutputLock
from tasks.edit import plan_edit
from tasks.masks import build_mask
from tasks.outcome import mask_row
from tasks.spec import RunSpec, absolute


@flow(name="generate-masks", task_runner=ThreadPoolTaskRunner(max_workers=1), persist_result=True)
def generate_masks(edit: str, spec: RunSpec) -> list[dict]:
    """One masks.parquet row per flagged shot: its quadmask and how it was made, or why it failed."""
    edit, run_id, store = absolute(edit), new_run_id(), spec.store()
    rows = []
    with OutputLock(store, run_id):
        for shot in plan_edit(edit, spec.ingest):
            if shot.skip_reason:
                continue
            if shot.problem:
                rows.append(mask_row(run_id, shot, edit, "failed", f"shot {shot.shot_id}: {shot.problem}"))
            elif shot.instructions.quadmask:
                rows.append(mask_row(run_id, shot, edit, "user quadmask", mask_uri=shot.instructions.quadmask))
            elif not needs_generated_mask(shot):
                rows.append(mask_row(run_id, shot, edit, "failed",
                                     f"shot {shot.shot_id}: no matte, clicks or boxes to build a mask from"))
            else:
                state = build_mask(shot, store, spec.masks, return_state=True)
                if state.is_completed():
                    _, result, uri = state.result()
                    rows.append(mask_row(run_id, shot, edit, "degraded" if result.degraded else "done",
                                         result.reason, result, uri))
                else:
                    rows.append(mask_row(run_id, shot, edit, "failed", f"shot {shot.shot_id}: {state.message}"))
            manifest.record(store, masks=rows[-1:])
    return rows
