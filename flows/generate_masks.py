"""Masks only: build every flagged shot's quadmask with a preview, for review before the GPU pass."""
from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from model.masks.batch import needs_generated_mask
from tasks.edit import plan_edit
from tasks.masks import build_mask
from tasks.options import RunOptions


@flow(name="generate-masks", task_runner=ThreadPoolTaskRunner(max_workers=1))
def generate_masks(edit: str, out: str, segmenter: str = "auto", reasoner: str = "auto", sam2_dir: str | None = None,
                   rate: str | None = None, handles: int = 8, shots_file: str | None = None,
                   relink: str | None = None) -> list[dict]:
    """One row per flagged shot: its quadmask, preview and how it was made (or why it failed)."""
    options = RunOptions(out=out, rate=rate, handles=handles, shots_file=shots_file, relink=relink,
                         segmenter=segmenter, reasoner=reasoner, sam2_dir=sam2_dir)
    rows = []
    for shot in plan_edit(edit, options):
        if not shot.flagged:
            continue
        if shot.instructions.quadmask:
            rows.append({"shot_id": shot.shot_id, "status": "user quadmask", "mask": shot.instructions.quadmask})
            continue
        if shot.problem or not needs_generated_mask(shot):
            rows.append({"shot_id": shot.shot_id, "status": "failed",
                         "error": shot.problem or "no matte, clicks or boxes to build a mask from"})
            continue
        state = build_mask(shot, out, segmenter, reasoner, sam2_dir, return_state=True)
        if state.is_completed():
            _, result, uri = state.result()
            rows.append({"shot_id": shot.shot_id, "status": "degraded" if result.degraded else "done", "mask": uri,
                         "source": f"{result.source} + {result.reasoner}", "error": result.reason})
        else:
            rows.append({"shot_id": shot.shot_id, "status": "failed", "error": state.message})
    return rows
