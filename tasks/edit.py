"""Tasks over the whole edit: plan the shots, write the conformed edit."""
from __future__ import annotations

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
