"""Prefect flows (the batch over an edit, one shot) and the `voidbatch` command line."""
from tasks import prefect_defaults

prefect_defaults.apply()
