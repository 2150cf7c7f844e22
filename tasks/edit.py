"""Tasks over the whole edit: plan the shots, write the conformed edit."""
from __future__ import annotations

import json

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from shots import conform, ingest
from storage.store import ArtifactStore


@task(name="plan-edit", cache_policy=NO_CACHE)
def plan_edit(edit: str, options) -> list:
    """Every video clip of the edit as a Shot; flagged ones carry removal instructions."""
    shots = ingest.ingest(edit, options.ingest_options())
    get_run_logger().info("%s: %d clips, %d flagged", edit, len(shots), sum(s.flagged for s in shots))
    return shots


@task(name="conform-edit", cache_policy=NO_CACHE)
def conform_edit(edit: str, options, delivered: dict) -> str | None:
    """The input edit with each processed clip pointing at its new version; None if nothing was made."""
    if not delivered:
        return None
    store = ArtifactStore(options.out)
    return store.uri(conform.conform_edit(edit, options.edit_rate, delivered, store))


@task(name="record-run", cache_policy=NO_CACHE)
def record_run(run_id: str, edit: str, options) -> str:
    """Keep what a batch was asked to do, so `rerun` can repeat it for the shots that failed."""
    store = ArtifactStore(options.out)
    return store.put_bytes(f"runs/{run_id}.json", json.dumps({"edit": edit, "options": options.to_dict()},
                                                            indent=1).encode())


def read_run(out: str, run_id: str) -> tuple[str, dict]:
    """(edit, options) of an earlier batch in `out`."""
    doc = json.loads(ArtifactStore(out).get_bytes(f"runs/{run_id}.json"))
    return doc["edit"], doc["options"]
