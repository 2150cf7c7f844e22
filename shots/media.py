"""Frame-exact, streaming frame I/O for plates, masks and lossless intermediates: the public API.

Reading works the same on movies (shots.movies: PyAV, exact seeks by pts index, constant rate
checked) and image sequences (shots.sequences: 'plate.####.exr', 16-bit and float images become
8-bit RGB unless `precise`). Movies are decoded with the YUV matrix and range `probe` reports in
`MediaInfo.colour` (their tags, or the players' convention for untagged video: BT.709 from 720 lines
up, BT.601 below) and come out upright (display matrix); deep video read `precise` is uint16 RGB
computed with the exact matrix maths (white is 65535). Every open and read runs under the watchdog
of shots.stalls, so stalled storage fails after VOIDBATCH_MEDIA_TIMEOUT seconds instead of hanging a
batch. Frames stream one at a time, so memory is bounded whatever the count.

A plate's timecode is counted its own way: `MediaInfo.drop_frame` (';' in the file's timecode) goes to
`FrameRange.timecode(..., drop_frame=)`, or use `MediaInfo.timecode_at`, so a 29.97 non-drop plate
stays non-drop (OTIO alone would count 29.97 drop-frame).

Lossless intermediates are FFV1 in Matroska (RGB as bgr0, gray as gray8): bit-exact round trips,
written through storage.atomic, so a file that exists is complete.

Frame indices in this module are 0-based file frames; `MediaInfo.start_frame` maps them to source
frame numbers (timecode or sequence numbering). Bad media fails with one MediaError line naming the file.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from shots.frames import FrameRange, frames_from_timecode, normalize_rate
from shots.mediaerror import MediaError
from shots.movies import (VFR_WINDOW, constant_rate_and_frames, iter_movie, open_movie, picture, stated_frames,
                          stream_timecode, video_stream)
from shots.samples import NATIVE, RGB, SINGLE, Colour, ExrLayout, describe, sample_desc
from shots.sequences import (DEFAULT_SEQUENCE_RATE, IMAGE_EXTS, as_sequence, encode_png, image_colour, image_facts,
                             iter_sequence)
from shots.stalls import DEFAULT_TIMEOUT, TIMEOUT_ENV, bounded, bounded_iter, media_timeout
from storage.atomic import atomic_path, write_atomic

__all__ = [
    "MediaError", "MediaInfo", "Colour", "ExrLayout", "probe", "iter_frames", "read_frames", "read_frames_precise", "read_video",
    "media_files", "write_video_lossless", "write_png_sequence", "write_h264", "RGB", "NATIVE", "SINGLE",
    "media_timeout",
    "IMAGE_EXTS", "DEFAULT_SEQUENCE_RATE", "TIMEOUT_ENV", "DEFAULT_TIMEOUT", "VFR_WINDOW",
]


@dataclass(frozen=True)
class MediaInfo:
    """What a plate is: size, exact rate, exact frame count and where frame 0 sits in source time; and what
    its samples are (precision, colour, timecode kind, orientation, scan, EXR layout)."""

    path: str  # local path; for sequences the '#' pattern, e.g. '/x/plate.####.exr'
    kind: str  # 'movie' | 'sequence'
    width: int  # as displayed (a movie turned 90 degrees by its display matrix reports the turned size)
    height: int
    rate: Fraction
    frames: int
    start_frame: int  # source frame number of file frame 0 (timecode at `rate`, or first sequence number)
    timecode: str | None  # as the file states it: '01:00:00:00' (non-drop) or '01:00:00;00' (drop-frame)
    pix_fmt: str
    stream: int = 0  # index of the video stream that is the plate (see shots.movies.video_stream)
    sample: str = "uint8"  # what a precise read gives: uint8 | uint16 | float32
    bits: int = 8  # significant bits per sample (10 for 10-bit video, 16 for 16-bit PNG, 16/32 for EXR)
    colour: Colour | None = None  # how the values are to be read; `colour.assumed` says what the file did not
    drop_frame: bool = False  # the source timecode counts drop-frame (';'), as 29.97 DF does
    rotation: int = 0  # degrees (0/90/180/270) the stored frames turn counter-clockwise for display; reads are upright
    field_order: str = "progressive"  # progressive | tt | bb | tb | bt (interlaced: flagged in the manifest)
    exr: ExrLayout | None = None  # an EXR plate's file layout, for deliverables that follow it

    @property
    def media_range(self) -> FrameRange:
        """Every frame of the file, in source frame numbers."""
        return FrameRange(self.start_frame, self.frames, self.rate)

    def timecode_at(self, file_frame: int = 0) -> str:
        """Source timecode of file frame `file_frame`, counted as the plate counts it (drop-frame or not)."""
        return self.media_range.timecode(self.start_frame + file_frame, drop_frame=self.drop_frame)


def probe(path, sequence_rate=None) -> MediaInfo:
    """Size, exact rate and frame count, and the source frame number of file frame 0.

    Image sequences carry no rate: `sequence_rate` (default 24) is used for them. Raises MediaError
    naming the file when it is unreadable, variable-rate, or does not open within the media timeout.
    """
    return bounded(path, lambda: _probe(path, sequence_rate))


def _probe(path, sequence_rate) -> MediaInfo:
    seq = as_sequence(path)
    if seq is not None:
        numbers = seq.numbers()
        first = image_facts(seq.frame_path(numbers[0]))
        a = first.array
        return MediaInfo(
            path=seq.pattern, kind="sequence", width=a.shape[1], height=a.shape[0],
            rate=normalize_rate(sequence_rate if sequence_rate is not None else DEFAULT_SEQUENCE_RATE),
            frames=len(numbers), start_frame=numbers[0] if seq.pad is not None else 0,
            timecode=None, pix_fmt=describe(a), sample=str(a.dtype), bits=first.bits,
            colour=image_colour(str(a.dtype), first.exr), exr=first.exr,
        )
    with open_movie(path) as container:
        stream = video_stream(container, path, announce=True)
        rate, frames = constant_rate_and_frames(container, stream, path)
        timecode = stream_timecode(container, stream)
        start_frame = 0
        if timecode:
            try:
                start_frame = frames_from_timecode(timecode, rate)
            except ValueError as e:
                raise MediaError(path, f"timecode {timecode!r} is not valid at {rate} fps: {e}") from e
        index = stream.index
    pic = picture(path)  # opened again: the first frame holds the display matrix and the bitstream's tags
    return MediaInfo(
        path=str(path), kind="movie", width=pic.width, height=pic.height, rate=rate, frames=frames,
        start_frame=start_frame, timecode=timecode, pix_fmt=pic.pix_fmt, stream=index,
        sample="uint16" if pic.bits > 8 else "uint8", bits=pic.bits, colour=pic.colour,
        drop_frame=bool(timecode) and ";" in timecode, rotation=pic.rotation, field_order=pic.field_order,
    )


def media_files(path, start: int = 0, count: int | None = None) -> list[Path]:
    """The files that reading frames [start, start+count) of `path` touches: the movie, or those frames' files.

    What a content key hashes (storage.keys.files_sha256): the plate's bytes, not its name or mtime.
    """
    seq = as_sequence(path)
    if seq is None:
        if not Path(path).is_file():
            raise MediaError(path, "no such file")
        return [Path(path)]
    numbers = seq.numbers()
    stop = len(numbers) if count is None else start + count
    if stop > len(numbers):
        raise MediaError(seq.pattern, f"has {len(numbers)} frames; asked for file frames {start}..{stop - 1}")
    return [seq.frame_path(n) for n in numbers[start:stop]]


def iter_frames(path, start: int = 0, count: int | None = None, size: tuple[int, int] | None = None,
                *, layout: str = RGB, require_8bit: bool = False, precise: bool = False) -> Iterator[np.ndarray]:
    """Frames [start, start+count) (count None: to the end) of a movie or sequence, one at a time.

    The shared reader behind read_frames, read_video and quadmask.read_mask_frames. Arguments are
    checked now; decoding starts on the first next(). `layout`: RGB, NATIVE or SINGLE (see shots.samples).
    size=(height, width), as displayed, resizes with area scaling. require_8bit rejects >8-bit media
    (masks). `precise`: samples at the source's precision (uint16 for deep video and images, float32
    for float images) instead of 8 bits. Frames are upright: a movie's display rotation is applied.
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
    seq = as_sequence(path)
    if seq is not None:
        numbers = bounded(seq.pattern, seq.numbers)
        if count is not None and start + count > len(numbers):
            first_missing = max(start, len(numbers))
            raise MediaError(seq.pattern, f"has {len(numbers)} frames; asked for file frames "
                             f"{start}..{start + count - 1}", first_missing)
        return bounded_iter(seq.pattern, lambda: iter_sequence(seq, numbers, start, count, size, layout,
                                                               require_8bit, precise), start)
    if not Path(path).exists():
        raise MediaError(path, "no such file")
    if count is not None:
        stated = bounded(path, lambda: stated_frames(path))  # fail now when the header says it is too short
        if stated and start + count > stated:
            raise MediaError(path, f"has {stated} frames; asked for frames {start}..{start + count - 1}",
                             max(start, stated))
    return bounded_iter(path, lambda: iter_movie(path, start, count, size, layout, require_8bit, precise), start)


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
        raise MediaError(path, f"expected uint8 (H, W, 3) RGB or (H, W) gray, got {sample_desc(a)}", index)
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
    seq = as_sequence(pattern)
    if seq is None or seq.pad is None or seq.tail.lower() != ".png":
        raise MediaError(pattern, "expected a PNG sequence pattern such as 'name.####.png' or 'name.%04d.png'")
    seq.directory.mkdir(parents=True, exist_ok=True)
    count, shape = 0, None
    for a in frames:
        a = np.asarray(a)
        target = seq.frame_path(first_frame + count)
        _check_frame(target, count, a, shape)
        shape = a.shape
        write_atomic(target, encode_png(a, target))
        count += 1
    return count


def write_h264(path, frames: Iterable[np.ndarray], rate) -> int:
    """A small H.264 .mp4 of RGB frames for people to watch (previews, review proxies); lossy by design."""
    path = Path(path)
    rate = normalize_rate(rate)
    count = 0
    with atomic_path(path, suffix=path.suffix) as tmp, av.open(str(tmp), "w") as out:
        stream = None
        for a in frames:
            if stream is None:
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height = a.shape[1], a.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20", "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            frame.pts = count
            out.mux(stream.encode(frame))
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        out.mux(stream.encode(None))
    return count
