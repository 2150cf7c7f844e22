"""model.isolate: calls in a spawned child with a hard timeout; hung calls are killed, nothing is left behind."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from model.isolate import Isolated, IsolatedError, IsolatedTimeout, run_isolated

ROOT = Path(__file__).resolve().parents[1]


def _state(pid: int) -> str | None:
    """The process state letter from /proc (R, S, Z...), None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _assert_no_children_left() -> None:
    assert multiprocessing.active_children() == []
    me = os.getpid()
    mine = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                mine.append((int(d.name), fields[0]))
    assert not [p for p, st in mine if st == "Z"], f"zombie children: {mine}"


# -- callables run in the child (module level: the child imports this module) -----------------
def scaled(frames: np.ndarray, factor: float) -> dict:
    return {"pid": os.getpid(), "frames": frames * factor, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}


def hang_forever() -> None:
    while True:
        time.sleep(3600)


def hang_ignoring_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    hang_forever()


def start_grandchild_and_hang(pid_file: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    Path(pid_file).write_text(str(p.pid))
    hang_forever()


def fail_with(message: str) -> None:
    raise ValueError(message)


class Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("no pickling")


def fail_unpicklable() -> None:
    raise Unpicklable("CUDA error: an illegal memory access was encountered", handle=object())


def die(code: int) -> None:
    os._exit(code)


def report_progress(n: int, progress=None) -> int:
    for i in range(n):
        progress((i + 1) / n)
    return n


def my_pid() -> int:
    return os.getpid()


# -- tests ------------------------------------------------------------------------------------
def test_result_comes_back_with_env_applied():
    frames = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = run_isolated(scaled, frames, 2.0, timeout=60, env={"CUDA_VISIBLE_DEVICES": "3"})
    assert out["pid"] != os.getpid() and out["cuda"] == "3"
    np.testing.assert_array_equal(out["frames"], frames * 2)
    assert _gone(out["pid"])
    _assert_no_children_left()


def test_exception_comes_back_with_its_type_message_and_traceback():
    with pytest.raises(ValueError, match="shot sh010: chunk 2 failed") as info:
        run_isolated(fail_with, "shot sh010: chunk 2 failed", timeout=60)
    assert any("fail_with" in note for note in info.value.__notes__)  # the child's traceback
    with pytest.raises(IsolatedError, match=r"remove sh020 c1: Unpicklable: CUDA error: an illegal memory access"):
        run_isolated(fail_unpicklable, timeout=60, what="remove sh020 c1")
    _assert_no_children_left()


def test_hung_call_is_killed_within_the_timeout():
    t0 = time.monotonic()
    with pytest.raises(IsolatedTimeout, match=r"shot sh030 chunk 0 timed out after 3 s") as info:
        run_isolated(hang_forever, timeout=3, grace=1, what="shot sh030 chunk 0")
    elapsed = time.monotonic() - t0
    assert isinstance(info.value, TimeoutError)
    assert 3 <= elapsed < 3 + 1 + 2, elapsed  # timeout, then at most the grace period (and a reap)
    pid = int(str(info.value).split("process ")[1].split()[0])
    assert _state(pid) is None  # killed and reaped: not even a zombie
    _assert_no_children_left()


def test_sigterm_is_not_enough_sigkill_follows(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(IsolatedTimeout):
        run_isolated(hang_ignoring_sigterm, timeout=2, grace=1)
    assert time.monotonic() - t0 < 2 + 1 + 2
    _assert_no_children_left()


def test_what_the_child_started_dies_with_it(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    with pytest.raises(IsolatedTimeout):
        run_isolated(start_grandchild_and_hang, str(pid_file), timeout=4, grace=1)
    assert _gone(int(pid_file.read_text()))
    _assert_no_children_left()


def test_a_child_that_dies_says_how():
    with pytest.raises(IsolatedError, match=r"died without an answer \(exit status 3\)"):
        run_isolated(die, 3, timeout=60, what="decode")
    _assert_no_children_left()


def test_progress_arrives_in_the_parent():
    seen: list[float] = []
    assert run_isolated(report_progress, 4, timeout=60, progress=seen.append) == 4
    assert seen == [0.25, 0.5, 0.75, 1.0]


def test_one_child_serves_several_calls_and_is_replaced_after_a_timeout():
    with Isolated(grace=1) as child:
        first = child.call(my_pid, timeout=60)
        assert child.call(my_pid, timeout=60) == first  # the same process: a loaded model stays loaded
        with pytest.raises(ValueError):
            child.call(fail_with, "bad", timeout=60)
        assert child.call(my_pid, timeout=60) == first  # an exception does not cost the process
        with pytest.raises(IsolatedTimeout):
            child.call(hang_forever, timeout=2)
        assert _state(first) is None
        second = child.call(my_pid, timeout=60)
        assert second != first
    assert _gone(second)
    _assert_no_children_left()


def test_the_child_dies_when_its_parent_is_killed(tmp_path):
    """A worker SIGKILLed mid-chunk leaves no orphan holding the GPU."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})
        from model.isolate import Isolated
        from test_isolate import hang_forever, my_pid
        with Isolated() as child:
            open({str(pid_file)!r}, "w").write(str(child.call(my_pid, timeout=60)))
            child.call(hang_forever, timeout=3600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert _state(child) not in (None, "Z")
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _gone(child, within=10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
