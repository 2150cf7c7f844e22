"""Re-run the shots whose latest attempt failed or was interrupted, each with its own batch's spec.

The morning after: every such shot goes again with exactly what its batch was asked to do (the
stored spec, dispatch to the GPU pool included), except a `relink` folder or a corrected shot
list when the fix lives there. The edit is planned again from its stored absolute path, so media
fixed in place is picked up; each rerun writes a conformed edit that points every processed clip
at its latest good version.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.states import Failed
from pydantic import Field

from flows.process_edit import BatchOutcome, new_run_id, process_edit
from storage import manifest
from storage.lock import live_run
from storage.store import ArtifactStore
from tasks.edit import read_run
from tasks.outcome import Unsuccessful, outcome_of
from tasks.report import link_rerun
from tasks.spec import RunSpec


class RerunError(RuntimeError):
    """A batch's failed shots could not be run again; the message says which batch and why."""


def shots_to_rerun(store: ArtifactStore) -> dict[str, list[str]]:
    """Shot ids whose latest attempt failed or was interrupted, grouped by the batch that planned them."""
    live = live_run(store)
    rows = manifest.with_interrupted(manifest.read_shots(store), [live] if live else [])
    by_run: dict[str, list[str]] = defaultdict(list)
    for row in manifest.latest_by_shot(rows).values():
        if row["status"] in manifest.NEEDS_RERUN:
            by_run[row["run_id"]].append(row["shot_id"])
    return {run: sorted(ids) for run, ids in sorted(by_run.items())}


def fixed_spec(spec: RunSpec, relink: str | None, shots_file: str | None) -> RunSpec:
    """The batch's spec with a new relink folder or shot list, validated again."""
    ingest = spec.ingest.model_dump()
    ingest.update({k: v for k, v in {"relink": relink, "shots_file": shots_file}.items() if v})
    return RunSpec.model_validate({**spec.model_dump(), "ingest": ingest})


def rerun_run_name() -> str:
    from prefect.runtime import flow_run

    return f"rerun-{Path(flow_run.parameters.get('out') or 'out').name}-{datetime.now():%Y-%m-%d}"


@flow(name="rerun-failed", flow_run_name=rerun_run_name, persist_result=True)
def rerun_failed(out: Annotated[str, Field(min_length=1)], relink: str | None = None,
                 shots_file: str | None = None) -> list[BatchOutcome]:
    """Process again exactly the failed and interrupted shots of `out`; one batch per original batch."""
    store = ArtifactStore(out, create=False)
    batches = []
    for old_run, shot_ids in shots_to_rerun(store).items():
        record, run_id = read_run(store, old_run), new_run_id()
        link_rerun(run_id, record.flow_run_id, old_run)
        state = process_edit(record.edit, fixed_spec(record.spec, relink, shots_file), only_shots=shot_ids,
                             run_id=run_id, return_state=True)
        result = outcome_of(state)
        if not isinstance(result, BatchOutcome):  # it failed before any shot ran (the edit is gone, say)
            raise RerunError(f"the rerun of batch {old_run} ({record.edit}) could not run: {result}")
        batches.append(result)
    failed = [s for b in batches for s in b.with_status("failed", "interrupted")]
    if failed:
        message = f"still failing: {', '.join(failed)}"
        return Failed(message=message, data=Unsuccessful(message, batches))
    return batches
