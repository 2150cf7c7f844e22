"""Prefect tasks: thin wrappers over shots/, model/ and storage/ that record what happened."""
from tasks import prefect_defaults

prefect_defaults.apply()
