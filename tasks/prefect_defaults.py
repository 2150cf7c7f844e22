"""Embedded Prefect defaults, applied before Prefect is first imported.

With no PREFECT_API_URL and no PREFECT_HOME set, runs go to an ephemeral local server whose
SQLite database lives in a project-local `.voidbatch/prefect` (never the user's ~/.prefect);
a user who has set either gets their own server or home. Telemetry stays off (no network here),
and the ephemeral server gets enough time to start on a small machine.
"""
import os
from pathlib import Path


def apply() -> None:
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        home = Path.cwd() / ".voidbatch" / "prefect"
        home.mkdir(parents=True, exist_ok=True)  # Prefect makes only the last level, then fails to start
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "shots,model,storage")
    # Thread pools are unbounded by default in Prefect 3 (one thread per task): bound them.
    os.environ.setdefault("PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS", "8")
