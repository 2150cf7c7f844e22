"""The Prefect API of a command-line run: the user's server, or a local one that lives exactly as long as the run.

With PREFECT_API_URL set, runs go to that server. Otherwise `voidbatch` starts `prefect server
start` on a free loopback port, its SQLite database in the project's `.voidbatch/prefect`, and
stops it when the command ends. Prefect's own ephemeral server is not used: it is stopped by an
`atexit` hook, so a SIGTERMed or SIGKILLed run left it running. This one is also told by the
kernel to stop when its parent dies (PR_SET_PDEATHSIG), so no kill of a `voidbatch` process can
leave its server behind.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent(parent: int):
    def set_death_signal() -> None:  # runs in the child between fork and exec
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
    return set_death_signal


@contextlib.contextmanager
def prefect_api(log_dir: Path) -> Iterator[str | None]:
    """The API URL runs go to while the block runs: the user's (None: already configured) or our own server's."""
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = str(Path(sys.executable).with_name("prefect"))
    with open(log_dir / "server.log", "ab") as log:
        server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  preexec_fn=_die_with_parent(os.getpid()))
    try:
        _wait_healthy(server, url, log_dir / "server.log")
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_logs()
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _drain_logs() -> None:
    """Send the run logs still queued while the server is up (else they fail loudly at exit)."""
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):
        APILogWorker.drain_all(timeout=10)


def _wait_healthy(server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the local Prefect server exited ({server.returncode}); see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
    raise RuntimeError(f"the local Prefect server did not answer within {START_TIMEOUT_S} s; see {log}")
