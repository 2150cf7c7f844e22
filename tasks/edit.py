"""Tasks over the whole edit: plan its shots, record what the batch set out to do, conform the edit."""
from __future__ import annotations

import json
from dataclasses import dataclass

from prefect import get_run_logger, task

from shots import conform, ingest
from shots.shot import Shot
from storage import layout, manifest
from storage.store import ArtifactStore, StoreError
from tasks import IN_MEMORY
from tasks.outcome import ShotOutcome, deliverable_from_row, utcnow
from tasks.spec import IngestSpec, RunSpec


@task(name="plan-edit", **IN_MEMORY)
def plan_edit(edit: str, spec: IngestSpec) -> list[Shot]:
    """Every video clip of the edit as a Shot; flagged ones carry removal instructions."""
    shots = ingest.ingest(edit, spec.options())
    get_run_logger().info("%s: %d clips, %d flagged", edit, len(shots), sum(s.flagged for s in shots))
    return shots


@dataclass(frozen=True)
class RunRecord:
    """What a batch was asked to do (`runs/{run_id}.json`): the edit, the whole spec, its shots and attempts."""

    run_id: str
    edit: str
    spec: RunSpec
    attempts: dict[str, int]
    flow_run_id: str | None = None  # the Prefect run of the batch, for links from a rerun

    def to_json(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "edit": self.edit, "spec": self.spec.model_dump(mode="json"),
                           "attempts": self.attempts, "flow_run_id": self.flow_run_id,
                           "started": utcnow().isoformat()}, indent=1).encode()


def read_run(store: ArtifactStore, run_id: str) -> RunRecord:
    """The record of an earlier batch in this output folder."""
    try:
        doc = json.loads(store.get_bytes(layout.run_record(run_id)))
    except (StoreError, ValueError) as e:
        raise StoreError(f"cannot read the record of batch {run_id} in {store.root_uri}: {e}") from None
    return RunRecord(doc["run_id"], doc["edit"], RunSpec.model_validate(doc["spec"]), doc["attempts"],
                     doc.get("flow_run_id"))


@task(name="start-run", **IN_MEMORY)
def start_run(store: ArtifactStore, run_id: str, edit: str, spec: RunSpec, shots: list[Shot]) -> dict[str, int]:
    """Record the batch and a `planned` row per shot before any work, so a killed batch is accounted for.

    Returns each shot's attempt number (one more than its last in this output folder).
    """
    manifest.reserve_space(store)
    attempts = manifest.next_attempts(manifest.read_shots(store), [s.shot_id for s in shots])
    from prefect.runtime import flow_run

    record = RunRecord(run_id, edit, spec, attempts, str(flow_run.id) if flow_run.id else None)
    store.put_bytes(layout.run_record(run_id), record.to_json())
    planned = [ShotOutcome(run_id, attempts[s.shot_id], s, edit, manifest.PLANNED, started_at=utcnow()) for s in shots]
    manifest.record(store, shots=[o.shot_row(store) for o in planned])
    return attempts


@task(name="conform-edit", **IN_MEMORY)
def conform_edit(edit: str, spec: RunSpec, store: ArtifactStore, shots: list[Shot]) -> str | None:
    """The edit with every processed clip pointing at its latest good version (from any batch); None if none."""
    good = manifest.latest_good(store)
    delivered = {s.shot_id: (s, deliverable_from_row(good[s.shot_id], store)) for s in shots if s.shot_id in good}
    if not delivered:
        return None
    return store.uri(conform.conform_edit(edit, spec.ingest.edit_rate, delivered, store))
