"""What people see: artifacts in the Prefect UI, the review page, and listeners in this process (the CLI's bars).

Every key names the output folder as well as the shot (`shot-{out tag}-{shot}`), so the cards of
batches writing different folders never mix. A batch has one table, created when it starts and
updated in place as its shots end. A shot's card shows its before/after stills and its quadmask as
pictures: small JPEGs inline as data URIs, because the UI needs a URL and an output folder is rarely
served over HTTP. A rerun and the batch it repairs link to each other.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Callable

import cv2
from prefect import get_client, task
from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

from shots import review
from storage import layout
from storage.keys import content_key, short
from storage.store import ArtifactStore
from tasks import IN_MEMORY

# (shot_id, stage, fraction) -> None; the CLI registers one to draw progress bars.
_listeners: list[Callable[[str, str, float], None]] = []
CARD_WIDTH = 720


def add_listener(fn: Callable[[str, str, float], None]) -> None:
    _listeners.append(fn)


def remove_listener(fn: Callable[[str, str, float], None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")[:100]


def out_tag(out: str) -> str:
    """A short, stable name for an output folder, for artifact keys."""
    return short(content_key("out", out), 8)


class ShotProgress:
    """One progress artifact per shot, fed by each stage's fraction (weights say what a stage is worth)."""

    STAGES = {"mask": 0.1, "prepare": 0.1, "remove": 0.6, "conform": 0.2}

    def __init__(self, out: str, shot_id: str):
        self.shot_id = shot_id
        self.done = {s: 0.0 for s in self.STAGES}
        self._last = -1.0
        self._artifact = create_progress_artifact(progress=0.0, key=artifact_key("progress", out_tag(out), shot_id),
                                                  description=f"{shot_id}: prepare, remove, conform ({out})")

    def __call__(self, stage: str, fraction: float) -> None:
        self.done[stage] = max(self.done[stage], min(1.0, fraction))
        for fn in list(_listeners):
            fn(self.shot_id, stage, fraction)
        total = 100.0 * sum(self.STAGES[s] * f for s, f in self.done.items())
        if total - self._last >= 5.0 or total >= 100.0:  # don't flood the API with tiny updates
            self._last = total
            update_progress_artifact(artifact_id=self._artifact, progress=total)

    def finish(self) -> None:
        """The shot is over (done, skipped or failed): the bar reads 100, whatever stages it skipped."""
        for fn in list(_listeners):
            fn(self.shot_id, "done", 1.0)
        update_progress_artifact(artifact_id=self._artifact, progress=100.0)

    def stage(self, stage: str) -> Callable[[float], None]:
        return lambda f: self(stage, f)

    def chunks(self, n: int) -> list[Callable[[float], None]]:
        """One callback per chunk of the removal stage; together they fill it."""
        parts = [0.0] * n

        def make(i):
            def update(f):
                parts[i] = f
                self("remove", sum(parts) / n)
            return update

        return [make(i) for i in range(n)]


def _jpeg_uri(path: str, width: int = CARD_WIDTH) -> str | None:
    """A picture as a data URI the UI can show, scaled to `width`; None when it is not there."""
    img = cv2.imread(path) if path and Path(path).is_file() else None
    if img is None:
        return None
    if img.shape[1] > width:
        img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return f"data:image/jpeg;base64,{base64.b64encode(data.tobytes()).decode()}" if ok else None


def shot_card(store: ArtifactStore, row: dict) -> None:
    """A markdown card per shot and output folder: status, reason, timings, and the pictures."""
    lines = [f"## {row['shot_id']}: {row['status']}", ""]
    if row.get("error"):
        lines += [f"> {row['error']}", ""]
    lines += ["| field | value |", "|---|---|"]
    for k in ("clip_name", "frames", "source_tc_in", "source_tc_out", "roi", "mask_source", "mask_reasoner",
              "mask_degraded_reason", "backend", "version", "output_uri", "qc_keep_max_diff", "provenance"):
        if row.get(k) not in (None, ""):
            lines.append(f"| {k} | {str(row[k]).replace('|', '/')} |")
    if row.get("seconds"):
        lines.append(f"| time | {row['seconds']:.1f} s |")
    if row.get("version"):
        stills = _jpeg_uri(row.get("contact_sheet_uri"))
        mask = _jpeg_uri(store.path(layout.review_mask(row["shot_id"], row["version"])))
        lines += ["", "### Before / after", f"![before and after]({stills})" if stills else "(no contact sheet)",
                  "", "### Quadmask", f"![quadmask over the plate]({mask})" if mask else "(no mask still)"]
    create_markdown_artifact(key=artifact_key("shot", out_tag(store.root_uri), row["shot_id"]),
                             markdown="\n".join(lines),
                             description=f"voidbatch shot {row['shot_id']} in {store.root_uri}")


class BatchTable:
    """The batch's one table artifact: created when the batch starts, updated in place as shots end."""

    COLUMNS = ("shot_id", "status", "version", "time", "frames", "reason", "output_uri")

    def __init__(self, run_id: str, out: str, rows: list[dict]):
        self._id = create_table_artifact(key=artifact_key("batch", run_id), table=self._table(rows),
                                         description=f"voidbatch batch {run_id} into {out}")

    @classmethod
    def _table(cls, rows: list[dict]) -> list[dict]:
        return [{"shot_id": r["shot_id"], "status": r["status"],
                 "version": f"v{r['version']:03d}" if r.get("version") else "",
                 "time": f"{r['seconds']:.1f} s" if r.get("seconds") else "", "frames": r.get("frames"),
                 "reason": r.get("error") or "", "output_uri": r.get("output_uri") or ""} for r in rows]

    def update(self, rows: list[dict]) -> None:
        with get_client(sync_client=True) as client:
            client.update_artifact(self._id, ArtifactUpdate(data=json.dumps(self._table(rows))))


class BatchProgress:
    """The batch's own progress artifact: shots finished out of shots to process."""

    def __init__(self, run_id: str, total: int):
        self.total, self.done = max(total, 1), 0
        self._artifact = create_progress_artifact(progress=0.0, key=artifact_key("batch-progress", run_id),
                                                  description=f"voidbatch {run_id}: shots finished")

    def shot_finished(self) -> None:
        self.done += 1
        update_progress_artifact(artifact_id=self._artifact, progress=100.0 * self.done / self.total)


def link_rerun(rerun_run_id: str, repaired_flow_run_id: str | None, repaired_run_id: str) -> None:
    """Link a rerun to the batch it repairs, and that batch back to the rerun (an artifact on its run)."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    if not repaired_flow_run_id or not ui:
        return
    create_link_artifact(link=f"{ui}/runs/flow-run/{repaired_flow_run_id}",
                         link_text=f"repairs batch {repaired_run_id}", key=artifact_key("repairs", repaired_run_id),
                         description=f"rerun {rerun_run_id} of the shots that failed in batch {repaired_run_id}")
    rerun_url = f"{ui}/runs/flow-run/{flow_run.id}"
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            type="markdown", key=artifact_key("repaired-by", repaired_run_id), flow_run_id=repaired_flow_run_id,
            data=f"Repaired by rerun {rerun_run_id}: [{rerun_url}]({rerun_url})",
            description="the rerun of this batch's failed shots"))


@task(name="review-previews", **IN_MEMORY)
def make_previews(store: ArtifactStore, outcome) -> None:
    """A delivered shot's review proxies and mask still, then its card in the UI."""
    if outcome.delivered and outcome.prepared is not None:
        review.make_previews(store, outcome.prepared, outcome.deliverable)
    shot_card(store, outcome.shot_row(store))


@task(name="review-page", **IN_MEMORY)
def update_review(store: ArtifactStore, title: str) -> str | None:
    """`OUT/review/index.html` again, from each shot's latest row."""
    return review.write_page(store, review.page_rows(store), title)
