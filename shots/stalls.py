"""A watchdog for media I/O: storage that stops answering (a hung network mount, a FIFO nobody
writes) fails one call with a MediaError instead of hanging a batch.

Opens and reads run in a daemon worker thread and are given up after VOIDBATCH_MEDIA_TIMEOUT
seconds (default 120, read at each call) without progress. The readers report progress with
`opening` and `beat`. A worker stuck in the kernel cannot be cancelled; it is left behind and
exits if the call ever returns.
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from shots.mediaerror import MediaError

TIMEOUT_ENV = "VOIDBATCH_MEDIA_TIMEOUT"
DEFAULT_TIMEOUT = 120.0  # seconds an open or a read may wait on storage without progress
_STALL_HINT = f"(stalled storage? {TIMEOUT_ENV} sets the limit)"


def media_timeout() -> float:
    """Seconds an open or a read may wait on storage: $VOIDBATCH_MEDIA_TIMEOUT (default 120), read at each call."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return value


class _Watch:
    """What a media worker thread has got done, for the thread waiting on it."""

    def __init__(self, path):
        self.file = str(path)  # the file being opened or read now
        self.opened = False
        self.progress = time.monotonic()  # when the last open, packet or frame arrived


_worker = threading.local()  # .watch: the _Watch of the current worker thread, if any


def opening(path) -> None:
    """Tell the watchdog this worker now opens `path`: a stall until it opens says 'did not open'."""
    watch = getattr(_worker, "watch", None)
    if watch is not None:
        watch.file, watch.opened = str(path), False


def beat(opened: bool = False) -> None:
    """Tell the watchdog this worker made progress (a packet, a frame, or `opened` the file)."""
    watch = getattr(_worker, "watch", None)
    if watch is not None:
        watch.progress = time.monotonic()
        watch.opened = watch.opened or opened


def _stalled(watch: _Watch, timeout: float, frame: int | None = None) -> MediaError:
    if not watch.opened:
        return MediaError(watch.file, f"did not open within {timeout:g} s {_STALL_HINT}")
    return MediaError(watch.file, f"stalled: no data for {timeout:g} s {_STALL_HINT}", frame)


def _wait(watch: _Watch, ready: Callable[[float], bool], timeout: float) -> bool:
    """Wait for ready(seconds) while the worker makes progress; False once `timeout` passed without any.

    The clock starts when the wait does: a worker idle because nobody asked for its next item is not stalled.
    """
    began = time.monotonic()
    while True:
        left = max(began, watch.progress) + timeout - time.monotonic()
        if left <= 0:
            return False
        if ready(left):
            return True


def bounded(path, fn: Callable[[], object]):
    """fn() in a daemon worker thread; MediaError naming the file when it stalls for the media timeout.

    fn opens and closes what it uses itself, so a worker given up on owns everything it touches.
    """
    timeout = media_timeout()
    watch = _Watch(path)
    done = threading.Event()
    outcome: list = []

    def work():
        _worker.watch = watch
        try:
            outcome.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, e))
        finally:
            done.set()

    threading.Thread(target=work, name=f"voidbatch-media {Path(str(path)).name}", daemon=True).start()
    if not _wait(watch, done.wait, timeout) and not done.is_set():
        raise _stalled(watch, timeout)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


_END = object()


def bounded_iter(path, make: Callable[[], Iterator], first_frame: int) -> Iterator:
    """The items of make() produced by a daemon worker thread; MediaError when the next one stalls.

    The worker starts on the first next() and runs at most one item ahead, so memory stays bounded;
    closing this iterator stops it (and it closes what it opened) after its current item.
    """
    timeout = media_timeout()
    watch = _Watch(path)
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work():
        _worker.watch = watch
        try:
            items = make()
            try:
                for item in items:
                    handoff.put((True, item))
                    del item
                    if stop.is_set():
                        return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            handoff.put((False, e))
            return
        handoff.put((True, _END))

    threading.Thread(target=work, name=f"voidbatch-media {Path(str(path)).name}", daemon=True).start()
    got: list = []

    def ready(seconds: float) -> bool:
        try:
            got.append(handoff.get(timeout=seconds))
        except queue.Empty:
            return False
        return True

    delivered = 0
    try:
        while True:
            if not _wait(watch, ready, timeout):
                raise _stalled(watch, timeout, first_frame + delivered if watch.opened else None)
            ok, item = got.pop()
            if not ok:
                raise item
            if item is _END:
                return
            box = [item]
            del item
            yield box.pop()  # hold no reference while the consumer has the frame
            delivered += 1
    finally:
        stop.set()
        try:  # free the slot so a worker blocked handing over an item sees `stop`
            handoff.get_nowait()
        except queue.Empty:
            pass
