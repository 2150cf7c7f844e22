"""Progress and artifacts for people: the Prefect UI, and listeners in this process (the CLI's bars)."""
from __future__ import annotations

import re
from typing import Callable

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, \
    update_progress_artifact

# (shot_id, stage, fraction) -> None; the CLI registers one to draw progress bars.
_listeners: list[Callable[[str, str, float], None]] = []


def add_listener(fn: Callable[[str, str, float], None]) -> None:
    _listeners.append(fn)


def remove_listener(fn: Callable[[str, str, float], None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")[:100]


class ShotProgress:
    """One progress artifact per shot, fed by each stage's fraction (weights say what a stage is worth)."""

    STAGES = {"mask": 0.1, "prepare": 0.1, "remove": 0.6, "conform": 0.2}

    def __init__(self, shot_id: str):
        self.shot_id = shot_id
        self.done = {s: 0.0 for s in self.STAGES}
        self._last = -1.0
        self._artifact = create_progress_artifact(progress=0.0, key=artifact_key("progress", shot_id),
                                                  description=f"{shot_id}: prepare, remove, conform")

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


def shot_artifact(row: dict) -> None:
    """A markdown card per shot: status, timings, where the output and contact sheet are."""
    lines = [f"## {row['shot_id']}: {row['status']}", "",
             "| field | value |", "|---|---|"]
    for k in ("clip_name", "frames", "source_tc_in", "source_tc_out", "roi", "mask_source", "mask_reasoner",
              "mask_degraded_reason", "backend", "version", "output_uri", "contact_sheet_uri", "seconds", "error"):
        if row.get(k) not in (None, ""):
            lines.append(f"| {k} | {str(row[k]).replace('|', '/')} |")
    if row.get("contact_sheet_uri"):
        lines += ["", f"Before/after stills: `{row['contact_sheet_uri']}`"]
    create_markdown_artifact(key=artifact_key("shot", row["shot_id"]), markdown="\n".join(lines),
                             description=f"voidbatch shot {row['shot_id']}")


class BatchProgress:
    """The batch's own progress artifact: shots finished out of shots to process."""

    def __init__(self, run_id: str, total: int):
        self.total, self.done = max(total, 1), 0
        self._artifact = create_progress_artifact(progress=0.0, key=artifact_key("batch-progress", run_id),
                                                  description=f"voidbatch {run_id}: shots finished")

    def shot_finished(self) -> None:
        self.done += 1
        update_progress_artifact(artifact_id=self._artifact, progress=100.0 * self.done / self.total)


def batch_table(rows: list[dict], key: str = "batch") -> None:
    table = [{k: r.get(k) for k in ("shot_id", "status", "frames", "seconds", "output_uri", "error")} for r in rows]
    create_table_artifact(key=artifact_key(key), table=table, description="voidbatch: shots of this batch")
