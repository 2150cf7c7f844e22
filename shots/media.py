"""Frame-exact, streaming frame I/O for plates, masks and lossless intermediates.

Movies are decoded with PyAV, in process: a seek lands on a keyframe at or before the wanted frame
and frames are then dropped by their integer pts index, so a range is exact on long-GOP H.264 with
B-frames and at 24000/1001 (no float `-ss` rounding, no pipes to deadlock, no child processes).
Colour conversion and resizing run in one libavfilter graph (`scale=...:flags=area`, the CLI's own
path: its pixels match `ffmpeg -vf scale=W:H:flags=area` bit for bit and it is cheaper than
`to_ndarray(width=, height=)`). Frames stream one at a time, so memory is bounded whatever the count.

Image sequences ('plate.####.png', 'plate.%04d.png' or one frame of them) are read with OpenCV
(png/jpg/tif...) or, for EXR and DPX, which this OpenCV build cannot read, with PyAV's image
decoders. 16-bit and float images become 8-bit RGB.

Lossless intermediates are FFV1 in Matroska (RGB as bgr0, gray as gray8): bit-exact round trips,
written through storage.atomic, so a file that exists is complete.

Frame indices in this module are 0-based file frames; `MediaInfo.start_frame` maps them to source
frame numbers (timecode or sequence numbering).

Bad media fails with one MediaError line naming the file:
- Storage that stops answering (a hung network mount, a FIFO nobody writes) cannot hang a batch:
  opens and reads run in a daemon worker thread and are given up after VOIDBATCH_MEDIA_TIMEOUT
  seconds (default 120, read at each call) without progress. A worker stuck in the kernel cannot be
  cancelled; it is left behind and exits if the call ever returns.
- Variable-frame-rate movies are refused (frames are indexed by timestamp x rate): conform them to a
  constant rate first.
- Of several video streams (a proxy, cover art) the plate is the largest picture that is not an
  attached picture; probe and decoding pick the same one.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # honoured only if cv2 was not imported yet
import cv2  # noqa: E402

from shots.frames import frames_from_timecode, normalize_rate, rate_str  # noqa: E402
from storage.atomic import atomic_path, write_atomic  # noqa: E402

log = logging.getLogger(__name__)

# Read with OpenCV; every other image extension goes to PyAV's image2 decoders (exr, dpx, ...).
_CV2_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
IMAGE_EXTS = _CV2_EXTS | {".exr", ".dpx", ".tga"}
DEFAULT_SEQUENCE_RATE = Fraction(24)

_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%(\d*)d")
_FRAME_IN_NAME = re.compile(r"^(?P<head>.*?)(?P<digits>\d+)(?P<tail>\.[^.]+)$")

# Channel layouts iter_frames can return.
RGB = "rgb"  # (H, W, 3) uint8
NATIVE = "native"  # gray sources stay (H, W); everything else is RGB
SINGLE = "single"  # (H, W): luma of gray/YUV sources, first (red) channel of RGB sources

TIMEOUT_ENV = "VOIDBATCH_MEDIA_TIMEOUT"
DEFAULT_TIMEOUT = 120.0  # seconds an open or a read may wait on storage without progress
_STALL_HINT = f"(stalled storage? {TIMEOUT_ENV} sets the limit)"
VFR_WINDOW = 48  # packets whose timing probe checks when the container states a frame count (MP4, MOV)


class MediaError(Exception):
    """A media file is missing, unreadable or not what was asked; the message names file and frame."""

    def __init__(self, path, problem: str, frame: int | None = None):
        self.path, self.problem, self.frame = str(path), problem, frame
        where = self.path if frame is None else f"{self.path}, frame {frame}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep it picklable across worker processes
        return (type(self), (self.path, self.problem, self.frame))


@dataclass(frozen=True)
class MediaInfo:
    """What a plate is: size, exact rate, exact frame count and where frame 0 sits in source time."""

    path: str  # local path; for sequences the '#' pattern, e.g. '/x/plate.####.exr'
    kind: str  # 'movie' | 'sequence'
    width: int
    height: int
    rate: Fraction
    frames: int
    start_frame: int  # source frame number of file frame 0 (timecode at `rate`, or first sequence number)
    timecode: str | None
    pix_fmt: str
    stream: int = 0  # index of the video stream that is the plate (see _video_stream)


# ---------------------------------------------------------------------------------------------
# Timeouts: media I/O in a worker thread, given up when it makes no progress


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


def _opening(path) -> None:
    watch = getattr(_worker, "watch", None)
    if watch is not None:
        watch.file, watch.opened = str(path), False


def _beat(opened: bool = False) -> None:
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


def _bounded(path, fn: Callable[[], object]):
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


def _bounded_iter(path, make: Callable[[], Iterator], first_frame: int) -> Iterator:
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


# ---------------------------------------------------------------------------------------------
# Image sequences


@dataclass(frozen=True)
class _Sequence:
    directory: Path
    head: str
    pad: int | None  # None: a single still image without a frame number
    tail: str

    @property
    def pattern(self) -> str:
        if self.pad is None:
            return str(self.directory / self.head)
        return str(self.directory / f"{self.head}{'#' * self.pad}{self.tail}")

    def frame_path(self, number: int) -> Path:
        if self.pad is None:
            return self.directory / self.head
        return self.directory / f"{self.head}{number:0{self.pad}d}{self.tail}"

    def numbers(self) -> list[int]:
        """Frame numbers on disk, sorted; a gap is an error naming the first missing file."""
        if self.pad is None:
            if not (self.directory / self.head).is_file():
                raise MediaError(self.pattern, "no such file")
            return [0]
        if not self.directory.is_dir():
            raise MediaError(self.pattern, f"directory {self.directory} does not exist")
        rx = re.compile(rf"^{re.escape(self.head)}(-?\d+){re.escape(self.tail)}$")
        found = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                m = rx.match(entry.name)
                if m and f"{int(m.group(1)):0{self.pad}d}" == m.group(1):
                    found.append(int(m.group(1)))
        if not found:
            raise MediaError(self.pattern, "no frames match this pattern")
        found.sort()
        if found[-1] - found[0] + 1 != len(found):
            have = set(found)
            missing = next(n for n in range(found[0], found[-1] + 1) if n not in have)
            raise MediaError(
                self.pattern,
                f"frame {missing} is missing ({self.frame_path(missing).name}); "
                f"frames on disk span {found[0]}-{found[-1]}",
            )
        return found


def _as_sequence(path) -> _Sequence | None:
    """The sequence `path` names ('#' or printf pattern, or one image file), or None for a movie."""
    p = Path(path)
    name = p.name
    if "#" in name:
        runs = _HASHES.findall(name)
        if len(runs) != 1:
            raise MediaError(path, "a sequence pattern needs exactly one run of '#'")
        head, tail = name.split(runs[0], 1)
        return _Sequence(p.parent, head, len(runs[0]), tail)
    m = _PRINTF.search(name)
    if m:
        return _Sequence(p.parent, name[: m.start()], int(m.group(1) or 1), name[m.end():])
    if p.suffix.lower() in IMAGE_EXTS:
        m = _FRAME_IN_NAME.match(name)
        if m:
            return _Sequence(p.parent, m.group("head"), len(m.group("digits")), m.group("tail"))
        return _Sequence(p.parent, name, None, "")
    return None


def _read_image(path: Path, layout: str, require_8bit: bool, precise: bool = False) -> np.ndarray:
    """One image file in `layout`: uint8 (16-bit rounded to 8, float clipped to 0..1 then x255), or with
    `precise` at the file's own precision (uint8, uint16 or float32)."""
    if path.suffix.lower() in _CV2_EXTS:
        _opening(path)
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        _beat(opened=True)
        if a is None:
            problem = "cannot read image (empty or not an image)" if path.exists() else "frame file is missing"
            raise MediaError(path, problem)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim == 3:
            a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGB if a.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    else:
        if not path.exists():
            raise MediaError(path, "frame file is missing")
        a = _read_image_av(path)
    if require_8bit and a.dtype != np.uint8:
        raise MediaError(path, f"expected 8-bit samples, found {a.dtype} ({_sample_desc(a)})")
    if not precise:
        a = _to_uint8(a, path)
    return _layout(a, layout)


def _read_exr(path: Path) -> np.ndarray:
    """An EXR frame as float32 RGB (or gray) over its display window, through the OpenEXR bindings.

    Not through PyAV: libswscale clips half-float pixels to 1.0 on the way to float32, and
    scene-linear highlights live above 1.0. Pixels outside the data window are 0.
    """
    import OpenEXR

    _opening(path)
    try:
        with OpenEXR.File(str(path)) as f:  # the channels' pixels are gone once the file closes: copy them
            _beat(opened=True)
            header = dict(f.header())
            channels = {name: np.array(c.pixels) for name, c in f.channels().items()}
    except Exception as e:  # noqa: BLE001 - the bindings raise bare exceptions for unreadable files
        raise MediaError(path, f"cannot read EXR: {e}") from e
    rgb = next((channels[k] for k in ("RGB", "RGBA") if k in channels), None)
    if rgb is None and all(k in channels for k in "RGB"):
        rgb = np.stack([channels[k] for k in "RGB"], axis=-1)
    if rgb is None and "Y" in channels:
        rgb = channels["Y"]
    if rgb is None:
        raise MediaError(path, f"EXR has no R, G, B or Y channels (it has {', '.join(sorted(channels))})")
    rgb = np.asarray(rgb, np.float32)[..., :3] if rgb.ndim == 3 else np.asarray(rgb, np.float32)
    (dx0, dy0), (dx1, dy1) = header["dataWindow"]
    (wx0, wy0), (wx1, wy1) = header.get("displayWindow", header["dataWindow"])
    if (dx0, dy0, dx1, dy1) == (wx0, wy0, wx1, wy1):
        return np.ascontiguousarray(rgb)
    full = np.zeros((wy1 - wy0 + 1, wx1 - wx0 + 1, *rgb.shape[2:]), np.float32)
    ys, xs = slice(max(dy0, wy0), min(dy1, wy1) + 1), slice(max(dx0, wx0), min(dx1, wx1) + 1)
    full[ys.start - wy0:ys.stop - wy0, xs.start - wx0:xs.stop - wx0] = \
        rgb[ys.start - dy0:ys.stop - dy0, xs.start - dx0:xs.stop - dx0]
    return full


def _read_image_av(path: Path) -> np.ndarray:
    """DPX and other images OpenCV cannot read, via PyAV, keeping their precision (EXR: `_read_exr`)."""
    if path.suffix.lower() == ".exr":
        return _read_exr(path)
    _opening(path)
    try:
        with av.open(str(path)) as container:
            _beat(opened=True)
            frame = next(container.decode(video=0))
    except (av.FFmpegError, OSError, StopIteration) as e:
        raise MediaError(path, f"cannot decode image: {e}") from e
    _beat()
    fmt = frame.format
    colour = [c for c in fmt.components if not c.is_alpha]
    gray = len(colour) == 1
    bits = max(c.bits for c in colour)
    if "f32" in fmt.name or "f16" in fmt.name:
        return frame.to_ndarray(format="grayf32le" if gray else "gbrpf32le", channel_last=True)
    if bits > 8:
        return frame.to_ndarray(format="gray16le" if gray else "rgb48le")
    return frame.to_ndarray(format="gray" if gray else "rgb24")


def _sample_desc(a: np.ndarray) -> str:
    return f"{a.dtype}, shape {a.shape}"


def _to_uint8(a: np.ndarray, where) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
    if a.dtype.kind == "f":
        return np.rint(np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise MediaError(where, f"unsupported sample type {_sample_desc(a)}")


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2) if layout == RGB else a
    return a[..., 0] if layout == SINGLE else a


def _iter_sequence(seq: _Sequence, numbers: list[int], start: int, count: int | None, size, layout, require_8bit,
                   precise: bool = False):
    stop = len(numbers) if count is None else start + count
    for index in range(start, stop):
        if index >= len(numbers):
            raise MediaError(seq.pattern, f"has {len(numbers)} frames; frame {index} (file index) is missing")
        a = _read_image(seq.frame_path(numbers[index]), layout, require_8bit, precise)
        if size is not None and a.shape[:2] != tuple(size):
            a = cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        yield a


# ---------------------------------------------------------------------------------------------
# Movies


def _open(path):
    """The container, with at least one video stream that is not an attached picture.

    Blocks like the file system does: public functions call it in a worker (_bounded, _bounded_iter).
    """
    _opening(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise MediaError(path, f"cannot open: {e}") from e
    _beat(opened=True)
    if not _plate_candidates(container):
        container.close()
        raise MediaError(path, "has no video stream" if not container.streams.video else
                         "has no video stream (only an attached picture)")
    return container


def _plate_candidates(container) -> list:
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def _video_stream(container, path, announce: bool = False):
    """The plate among the video streams: not an attached picture (cover art), the largest picture,
    the default stream on a tie, then the first. A small proxy or thumbnail beside it is ignored.
    """
    candidates = _plate_candidates(container)

    def rank(s):
        cc = s.codec_context
        return ((cc.width or 0) * (cc.height or 0), bool(s.disposition & av.stream.Disposition.default), -s.index)

    plate = max(candidates, key=rank)
    if len(container.streams.video) > 1:
        others = ", ".join(
            f"stream {s.index} ({s.codec_context.width}x{s.codec_context.height}"
            f"{', attached picture' if s not in candidates else ''})"
            for s in container.streams.video if s is not plate)
        (log.info if announce else log.debug)(
            "%s: video stream %d (%dx%d) is the plate; ignoring %s", path, plate.index,
            plate.codec_context.width, plate.codec_context.height, others)
    return plate


def _stream_rate(stream, path) -> Fraction:
    """Exact frame rate; average_rate unless it is an odd fraction and guessed_rate is a clean one."""
    rates = [Fraction(r) for r in (stream.average_rate, stream.guessed_rate, stream.base_rate) if r]
    if not rates:
        raise MediaError(path, "stream has no frame rate")
    rate = rates[0]
    if rate.denominator not in (1, 1001):
        clean = [r for r in rates if r.denominator in (1, 1001) and abs(r - rate) / rate < Fraction(1, 1000)]
        try:
            rate = clean[0] if clean else normalize_rate(float(rate))
        except ValueError as e:
            raise MediaError(path, f"frame rate {rate} is not constant or not exact: {e}") from e
    return rate


def _timecode(container, stream) -> str | None:
    """Timecode tag of the plate's stream, any other stream (MOV tmcd) or the container."""
    sources = [stream.metadata]
    sources += [s.metadata for s in container.streams if s is not stream]
    sources.append(container.metadata)
    for meta in sources:
        for key, value in meta.items():
            if key.lower() == "timecode" and value:
                return value
    return None


def _conform_hint(path) -> str:
    return (f"conform it to a constant frame rate first, e.g. ffmpeg -i {Path(str(path)).name} -fps_mode cfr "
            "-r RATE -c:v ffv1 conformed.mkv, with the edit's RATE")


def _scan_packets(container, stream, rate: Fraction, path, limit: int | None = None) -> int:
    """Demux (no decode) `limit` packets (None: all) and count them; MediaError if the rate is variable.

    Containers such as MKV store no frame count, so it is counted here; the same pass checks that
    every timestamp sits on one constant-rate grid (what frame indexing by pts needs).
    """
    pts: list[int] = []
    count = 0
    for packet in container.demux(stream):
        if not packet.size:
            continue
        count += 1
        _beat()
        if packet.pts is not None:
            pts.append(packet.pts)
        if limit is not None and count >= limit:
            break
    complete = limit is None or count < limit
    _check_constant_rate(pts, stream.time_base, rate, path, complete)
    return count


def _check_constant_rate(pts: list[int], time_base, rate: Fraction, path, complete: bool) -> None:
    """MediaError naming the file unless the sorted timestamps are consecutive frames at `rate`.

    A truncated window (`complete` False) may lack a few reordered B-frames at its end: gaps count
    only before its last 16 frames.
    """
    if len(pts) < 2 or not time_base:
        return
    t = np.sort(np.asarray(pts, dtype=np.float64)) * float(time_base)
    position = (t - t[0]) * float(rate)  # in frames from the first one
    index = np.rint(position)
    steps = np.diff(index)
    off_grid = np.abs(position - index) > 0.25
    checked = len(steps) if complete else max(0, len(steps) - 16)
    if off_grid.any() or (steps == 0).any() or (steps[:checked] > 1).any():
        ms = np.diff(t[: checked + 1] if checked else t) * 1000
        lo, hi = float(ms.min()), float(ms.max())

        def interval(v: float) -> str:
            return f"{v:.1f} ms ({1000 / v:.3g} fps)" if v > 0 else f"{v:.1f} ms"

        raise MediaError(path, f"variable frame rate: frame intervals vary from {interval(lo)} to "
                               f"{interval(hi)}; {_conform_hint(path)}")


def _check_bits(fmt, path, frame=None):
    if fmt is None:
        return
    bits = max(c.bits for c in fmt.components)
    if bits > 8:
        raise MediaError(path, f"expected 8-bit samples, found {fmt.name} ({bits}-bit)", frame)


class _Converter:
    """Pixel format conversion and resize of decoded frames through one libavfilter graph.

    The graph is rebuilt only if the frame geometry or format changes mid-stream.
    """

    def __init__(self, out_format: str, size: tuple[int, int] | None, flags: str = "area"):
        self.out_format, self.size, self.flags = out_format, size, flags
        self._key = None
        self._graph = None

    def __call__(self, frame) -> np.ndarray:
        same_size = self.size is None or (frame.height, frame.width) == self.size
        if frame.format.name == self.out_format and same_size:
            return frame.to_ndarray()
        key = (frame.width, frame.height, frame.format.name, int(frame.colorspace), int(frame.color_range))
        if key != self._key:
            self._graph, self._key = self._build(frame), key
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()

    def _build(self, frame):
        graph = av.filter.Graph()
        src = graph.add(
            "buffer",
            video_size=f"{frame.width}x{frame.height}",
            pix_fmt=str(int(av.VideoFormat(frame.format.name))),
            time_base=str(frame.time_base or Fraction(1, 1000)),
            pixel_aspect="1/1",
            colorspace=str(int(frame.colorspace)),
            range=str(int(frame.color_range)),
        )
        chain = [src]
        if self.size is not None:
            chain.append(graph.add("scale", f"{self.size[1]}:{self.size[0]}:flags={self.flags}"))
        chain.append(graph.add("format", self.out_format))
        chain.append(graph.add("buffersink"))
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        return graph


def _out_format(stream_fmt, layout: str, precise: bool = False) -> str:
    deep = stream_fmt is not None and max(c.bits for c in stream_fmt.components if not c.is_alpha) > 8
    if layout == RGB:
        return "rgb48le" if precise and deep else "rgb24"
    if stream_fmt is None:
        return "rgb24"
    colour = [c for c in stream_fmt.components if not c.is_alpha]
    if len(colour) == 1:
        return "gray"
    if layout == SINGLE and not stream_fmt.is_rgb:
        return "gray"  # luma; equals R for masks stored with R=G=B
    return "rgb24"


def _seek(container, stream, pts: int) -> None:
    """Seek `stream` to the keyframe at or before `pts` (a hook for tests that simulate bad demuxers)."""
    container.seek(pts, stream=stream, backward=True, any_frame=False)


def _iter_movie(path, start: int, count: int | None, size, layout: str, require_8bit: bool, precise: bool = False):
    """Frames [start, start+count) by pts index: seek back to a keyframe, drop the pre-roll."""
    end = None if count is None else start + count
    if count == 0:
        return
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        rate = _stream_rate(stream, path)
        tb = stream.time_base
        t0 = stream.start_time or 0
        if require_8bit:
            _check_bits(stream.codec_context.format, path)
        convert = None
        expected = start
        backoff = 0
        while True:
            # Seek so the first decoded frame is at or before `start`. Demuxers seek on dts, so a
            # keyframe just after `start` can be chosen; then step further back and try again.
            target = start - backoff
            if target > 0:
                _seek(container, stream, t0 + int(Fraction(target) / rate / tb))
            elif backoff:
                _seek(container, stream, t0)
            restart = False
            last = None
            try:
                for frame in container.decode(stream):
                    _beat()
                    if frame.pts is None:
                        if last is None:
                            raise MediaError(path, "decoded frame has no timestamp; cannot index it", expected)
                        index = last + 1
                    else:
                        position = (frame.pts - t0) * tb * rate
                        index = round(position)
                        if abs(position - index) > Fraction(1, 4) or (last is not None and index <= last):
                            raise MediaError(
                                path, f"variable frame rate: a frame at {float((frame.pts - t0) * tb):.3f} s is "
                                f"off the {rate_str(rate)} fps grid of the frames before it; "
                                f"{_conform_hint(path)}", index)
                    if last is None and index > start:
                        if target <= 0:
                            raise MediaError(path, f"first decodable frame is {index}; earlier ones are missing",
                                             expected)
                        log.debug("%s: seek for frame %d landed on frame %d; seeking further back", path, start, index)
                        restart = True
                        break
                    last = index
                    if index < expected:
                        continue  # pre-roll from the keyframe
                    if index > expected:
                        raise MediaError(
                            path, f"missing: the decoder went from frame {expected - 1} to {index} "
                            "(variable frame rate or damaged file)", expected)
                    if convert is None:
                        if require_8bit:
                            _check_bits(frame.format, path, index)
                        convert = _Converter(_out_format(frame.format, layout, precise), size)
                    yield convert(frame)
                    expected += 1
                    if end is not None and expected >= end:
                        return
            except av.FFmpegError as e:
                raise MediaError(path, f"decode failed: {e}", expected) from e
            if not restart:
                break
            backoff = max(16, backoff * 2)
        if end is not None and expected < end:
            raise MediaError(path, f"has only {expected} frames, asked for {start}..{end - 1}", expected)


# ---------------------------------------------------------------------------------------------
# Public API


def probe(path, sequence_rate=None) -> MediaInfo:
    """Size, exact rate and frame count, and the source frame number of file frame 0.

    Image sequences carry no rate: `sequence_rate` (default 24) is used for them. Raises MediaError
    naming the file when it is unreadable, variable-rate, or does not open within the media timeout.
    """
    return _bounded(path, lambda: _probe(path, sequence_rate))


def _probe(path, sequence_rate) -> MediaInfo:
    seq = _as_sequence(path)
    if seq is not None:
        numbers = seq.numbers()
        a = _read_native(seq.frame_path(numbers[0]))
        return MediaInfo(
            path=seq.pattern, kind="sequence", width=a.shape[1], height=a.shape[0],
            rate=normalize_rate(sequence_rate if sequence_rate is not None else DEFAULT_SEQUENCE_RATE),
            frames=len(numbers), start_frame=numbers[0] if seq.pad is not None else 0,
            timecode=None, pix_fmt=_describe(a),
        )
    with _open(path) as container:
        stream = _video_stream(container, path, announce=True)
        try:
            rate = _stream_rate(stream, path)
        except MediaError:  # an inexact rate: say so, unless the real trouble is a variable one
            fallback = stream.guessed_rate or stream.base_rate
            if fallback:
                _scan_packets(container, stream, Fraction(fallback), path, VFR_WINDOW)
            raise
        # MKV stores no frame count: count every packet. Otherwise check the first ones' timing.
        counted = _scan_packets(container, stream, rate, path, None if not stream.frames else VFR_WINDOW)
        frames = stream.frames or counted
        timecode = _timecode(container, stream)
        start_frame = 0
        if timecode:
            try:
                start_frame = frames_from_timecode(timecode, rate)
            except ValueError as e:
                raise MediaError(path, f"timecode {timecode!r} is not valid at {rate} fps: {e}") from e
        fmt = stream.codec_context.format
        return MediaInfo(
            path=str(path), kind="movie", width=stream.codec_context.width, height=stream.codec_context.height,
            rate=rate, frames=frames, start_frame=start_frame, timecode=timecode,
            pix_fmt=fmt.name if fmt is not None else "unknown", stream=stream.index,
        )


def media_files(path, start: int = 0, count: int | None = None) -> list[Path]:
    """The files that reading frames [start, start+count) of `path` touches: the movie, or those frames' files.

    What a content key hashes (storage.keys.files_sha256): the plate's bytes, not its name or mtime.
    """
    seq = _as_sequence(path)
    if seq is None:
        if not Path(path).is_file():
            raise MediaError(path, "no such file")
        return [Path(path)]
    numbers = seq.numbers()
    stop = len(numbers) if count is None else start + count
    if stop > len(numbers):
        raise MediaError(seq.pattern, f"has {len(numbers)} frames; asked for file frames {start}..{stop - 1}")
    return [seq.frame_path(n) for n in numbers[start:stop]]


def _read_native(path: Path) -> np.ndarray:
    if path.suffix.lower() in _CV2_EXTS:
        _opening(path)
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        _beat(opened=True)
        if a is None:
            raise MediaError(path, "cannot read image")
        return a
    return _read_image_av(path)


def _describe(a: np.ndarray) -> str:
    """A pix_fmt-like name for an image array: rgb24, gray, rgb48, gray16, rgbf32, rgba..."""
    channels = 1 if a.ndim == 2 else a.shape[2]
    base = {1: "gray", 3: "rgb", 4: "rgba"}.get(channels, f"{channels}ch")
    depth = {np.dtype(np.uint8): "", np.dtype(np.uint16): "16", np.dtype(np.float32): "f32"}.get(a.dtype, str(a.dtype))
    if base == "rgb" and depth == "":
        return "rgb24"
    if base == "rgb" and depth == "16":
        return "rgb48"
    return base + depth


def iter_frames(path, start: int = 0, count: int | None = None, size: tuple[int, int] | None = None,
                *, layout: str = RGB, require_8bit: bool = False, precise: bool = False) -> Iterator[np.ndarray]:
    """Frames [start, start+count) (count None: to the end) of a movie or sequence, one at a time.

    The shared reader behind read_frames, read_video and quadmask.read_mask_frames. Arguments are
    checked now; decoding starts on the first next(). `layout`: RGB, NATIVE or SINGLE (see above).
    size=(height, width) resizes with area scaling. require_8bit rejects >8-bit media (masks).
    `precise`: samples at the source's precision (uint16 for deep video and images, float32 for
    float images) instead of 8 bits.
    """
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise MediaError(path, f"start must be a non-negative int, got {start!r}")
    if count is not None and (not isinstance(count, (int, np.integer)) or count < 0):
        raise MediaError(path, f"count must be a non-negative int or None, got {count!r}")
    if size is not None:
        if len(size) != 2 or min(size) < 1:
            raise MediaError(path, f"size must be (height, width) >= 1, got {size!r}")
        size = (int(size[0]), int(size[1]))
    if layout not in (RGB, NATIVE, SINGLE):
        raise ValueError(f"layout must be one of {RGB!r}, {NATIVE!r}, {SINGLE!r}, got {layout!r}")
    start, count = int(start), None if count is None else int(count)
    seq = _as_sequence(path)
    if seq is not None:
        numbers = _bounded(seq.pattern, seq.numbers)
        if count is not None and start + count > len(numbers):
            first_missing = max(start, len(numbers))
            raise MediaError(seq.pattern, f"has {len(numbers)} frames; asked for file frames "
                             f"{start}..{start + count - 1}", first_missing)
        return _bounded_iter(seq.pattern, lambda: _iter_sequence(seq, numbers, start, count, size, layout,
                                                                 require_8bit, precise), start)
    if not Path(path).exists():
        raise MediaError(path, "no such file")
    if count is not None:
        stated = _bounded(path, lambda: _stated_frames(path))  # fail now when the header says it is too short
        if stated and start + count > stated:
            raise MediaError(path, f"has {stated} frames; asked for frames {start}..{start + count - 1}",
                             max(start, stated))
    return _bounded_iter(path, lambda: _iter_movie(path, start, count, size, layout, require_8bit, precise), start)


def _stated_frames(path) -> int:
    with _open(path) as container:
        return _video_stream(container, path).frames


def read_frames(path, start: int, count: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """`count` RGB uint8 frames (H, W, 3) from file frame `start` (0-based), exact and streaming.

    size=(height, width) resizes during colour conversion with area scaling. Too few frames raises
    MediaError naming the file and the first missing frame (now if the header says so, else when reached).
    """
    if count is None:
        raise MediaError(path, "read_frames needs a frame count (use iter_frames to read to the end)")
    return iter_frames(path, start, count, size, layout=RGB)


def read_frames_precise(path, start: int, count: int) -> Iterator[np.ndarray]:
    """`count` RGB frames at the source's own precision: uint8, uint16 (deep video, 16-bit images) or float32
    (EXR): what QC compares a delivered file with. Nothing is clipped or rounded."""
    return iter_frames(path, start, count, None, layout=RGB, precise=True)


def read_video(path) -> Iterator[np.ndarray]:
    """Every frame of a (lossless intermediate) movie or sequence; gray stays (H, W), else RGB."""
    return iter_frames(path, 0, None, None, layout=NATIVE)


def _check_frame(path, index: int, a: np.ndarray, shape) -> None:
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise MediaError(path, f"expected uint8 (H, W, 3) RGB or (H, W) gray, got {_sample_desc(a)}", index)
    if shape is not None and a.shape != shape:
        raise MediaError(path, f"shape {a.shape} differs from frame 0's {shape}", index)


def write_video_lossless(path, frames: Iterable[np.ndarray], rate, *, timecode: str | None = None) -> int:
    """FFV1 .mkv: RGB (H, W, 3) as bgr0, gray (H, W) as gray8; bit-exact. Returns the frame count.

    Written through storage.atomic.atomic_path: a reader never sees an unfinished file, and on any
    error nothing is left behind (an existing file at `path` is untouched).
    """
    path = Path(path)
    if path.suffix.lower() != ".mkv":
        raise MediaError(path, "lossless intermediates are FFV1 in Matroska; the name must end in .mkv")
    rate = normalize_rate(rate)
    count = 0
    with atomic_path(path, suffix=".mkv") as tmp, av.open(str(tmp), "w", format="matroska") as out:
        stream, shape, fmt = None, None, None
        for a in frames:
            a = np.asarray(a)
            _check_frame(path, count, a, shape)
            if stream is None:
                shape = a.shape
                fmt = "gray" if a.ndim == 2 else "rgb24"
                stream = out.add_stream("ffv1", rate=rate)
                stream.width, stream.height = a.shape[1], a.shape[0]
                stream.pix_fmt = "gray" if a.ndim == 2 else "bgr0"
                stream.codec_context.gop_size = 1  # every frame a keyframe: cheap exact seeks
                stream.codec_context.thread_count = 0
                stream.options = {"level": "3", "slicecrc": "1"}
                if timecode:
                    stream.metadata["timecode"] = timecode
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format=fmt)
            frame.pts = count
            frame.time_base = 1 / rate
            out.mux(stream.encode(frame))
            count += 1
        if stream is None:
            raise MediaError(path, "no frames to write")
        out.mux(stream.encode(None))
    return count


def write_png_sequence(pattern, frames: Iterable[np.ndarray], first_frame: int = 1001) -> int:
    """PNG frames (RGB or gray uint8) numbered from `first_frame`; each file written atomically."""
    seq = _as_sequence(pattern)
    if seq is None or seq.pad is None or seq.tail.lower() != ".png":
        raise MediaError(pattern, "expected a PNG sequence pattern such as 'name.####.png' or 'name.%04d.png'")
    seq.directory.mkdir(parents=True, exist_ok=True)
    count, shape = 0, None
    for a in frames:
        a = np.asarray(a)
        target = seq.frame_path(first_frame + count)
        _check_frame(target, count, a, shape)
        shape = a.shape
        ok, data = cv2.imencode(".png", a if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
        if not ok:
            raise MediaError(target, "PNG encoding failed")
        write_atomic(target, data.tobytes())
        count += 1
    return count
