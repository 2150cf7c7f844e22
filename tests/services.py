"""Processes the tests start (Prefect servers and workers, PostgreSQL, Dask): started with their own
logs, stopped by PID with everything they started, waited for without sleeps standing in for checks."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT

PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """All descendants of `pid` (from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class Proc:
    """A background process we started, stopped by PID with everything it started (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], env: dict, log: Path, cwd: Path = ROOT):
        self.log = log
        self._log = open(log, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill_hard(self) -> list[int]:
        """SIGKILL it and every descendant at once, like a host losing power; returns the PIDs killed."""
        pids = [self.popen.pid] + children(self.popen.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(30)
        return pids

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            family = [self.popen.pid] + children(self.popen.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass  # workers ignore SIGTERM for a long time (see reference): SIGKILL below
            for pid in family + children(self.popen.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(30)
        self._log.close()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace")


def wait_for(what: str, predicate, timeout: float, every: float = 0.5, on_timeout=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{on_timeout()}")


@contextlib.contextmanager
def prefect_server(home: Path, database: str | None = None):
    """`prefect server start` on a free loopback port with its own PREFECT_HOME, on SQLite there or on the
    `database` URL (PostgreSQL); yields (api, env, home, proc) and stops it by PID."""
    import httpx

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VOIDBATCH_"))}
    env = {**base, "PREFECT_HOME": str(home), "PREFECT_API_URL": api, "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
           "PREFECT_SERVER_UI_API_URL": api}
    server_env = {**env, "PREFECT_SERVER_DATABASE_CONNECTION_URL": database} if database else env
    proc = Proc([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], server_env,
                home / "server.log")
    try:
        def healthy():
            assert proc.popen.poll() is None, proc.tail()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{api}/health", timeout=2).status_code == 200

        wait_for("the Prefect server", healthy, 180, on_timeout=proc.tail)
        yield SimpleNamespace(api=api, env=env, home=home, proc=proc)
    finally:
        proc.stop()


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server programs (`make test` installs the `postgresql` package), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres():
    """A PostgreSQL cluster of its own on a free loopback port; yields its asyncpg URL for Prefect.

    PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user, its
    programs run as that user, and it lives in a folder of its own that user can reach (pytest's
    are private to root). Stopped by PID and removed at the end.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="voidbatch-pg-"))
    data = folder / "pgdata"
    data.mkdir()
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "prefect", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=300)
    port = free_port()
    proc = Proc([*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                 "-k", str(data), "-c", "fsync=off"], dict(os.environ), folder / "postgres.log")
    try:
        def ready():
            assert proc.popen.poll() is None, proc.tail()
            return subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                  capture_output=True).returncode == 0

        wait_for("PostgreSQL", ready, 120, on_timeout=proc.tail)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/postgres"
    finally:
        proc.stop()
        shutil.rmtree(folder, ignore_errors=True)
