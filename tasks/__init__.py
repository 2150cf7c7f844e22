"""Prefect tasks: thin wrappers over shots/, model/ and storage/ that record what happened."""
from tasks import prefect_defaults

prefect_defaults.apply()

from prefect.cache_policies import NO_CACHE  # noqa: E402

# What every task says of its result: kept in memory for the flow, neither cached nor persisted.
# Work is reused by content on the store (chunk results, versions), not by Prefect's cache; the shot
# outcome a flow returns is what Prefect persists.
IN_MEMORY = {"cache_policy": NO_CACHE, "persist_result": False}
