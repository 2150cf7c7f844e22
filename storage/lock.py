"""One writer per output folder: `OUT/.voidbatch.lock` names the process that holds it.

Two batches writing one output folder would race for version numbers and attempt numbers, so a
batch takes the lock before it plans anything and gives it back when it ends. The lock file holds
who has it (run id, PID, host, since when): a second process is refused with that, not left to
guess. A lock left by a dead process on this host (a SIGKILLed run) is taken over with a warning;
one held on another host cannot be checked from here and is refused (remove the file by hand
once that host is known to be down).
"""
from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from storage import layout
from storage.store import ArtifactStore, StoreError

log = logging.getLogger(__name__)


class LockHeld(StoreError):
    """Another live process writes this output folder."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    pid: int
    host: str
    started: str

    def alive(self) -> bool | None:
        """True/False for a process on this host; None when it runs elsewhere (cannot be checked)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _not_zombie(self.pid)

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.started})"


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return True  # no /proc: trust kill(0)


def holder(store: ArtifactStore) -> Holder | None:
    """Who holds the output folder's lock, if anyone (the file may name a dead process)."""
    try:
        return Holder(**json.loads(store.get_bytes(layout.LOCK)))
    except (StoreError, ValueError, TypeError):
        return None


def live_run(store: ArtifactStore) -> str | None:
    """The run id of a batch that is running in this folder now (as far as this host can tell)."""
    h = holder(store)
    return h.run_id if h is not None and h.alive() is not False else None


class OutputLock:
    """`with OutputLock(store, run_id):` holds the folder for one batch; refuses a live holder."""

    def __init__(self, store: ArtifactStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.me = Holder(run_id, os.getpid(), socket.gethostname(),
                         datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def acquire(self) -> OutputLock:
        data = json.dumps(asdict(self.me)).encode()
        for _ in range(3):
            try:
                self.store.put_bytes(layout.LOCK, data, mode="create")
                return self
            except StoreError:
                current = holder(self.store)
                if current is None:  # unreadable: being written right now, or damaged
                    raise LockHeld(f"{self.store.uri(layout.LOCK)} exists but cannot be read; if no voidbatch "
                                   f"process uses {self.store.root_uri}, remove that file") from None
                if current.run_id == self.run_id and current.pid == self.me.pid:
                    return self  # re-entered by the same run (a rerun inside a batch process)
                if current.alive() is not False:
                    where = "" if current.alive() else " (on another host: remove the lock file once it is down)"
                    raise LockHeld(f"{self.store.root_uri} is in use by voidbatch {current.describe()}{where}") \
                        from None
                log.warning("taking over the lock of %s in %s: that process is gone", current.describe(),
                            self.store.root_uri)
                self.store.remove(layout.LOCK)
        raise LockHeld(f"could not take the lock {self.store.uri(layout.LOCK)}")

    def release(self) -> None:
        current = holder(self.store)
        if current is not None and current.run_id == self.run_id and current.pid == self.me.pid:
            self.store.remove(layout.LOCK)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
