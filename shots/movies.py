"""Movie decoding with PyAV, in process: which stream is the plate, its exact constant rate, and
frame-exact ranges.

A seek lands on a keyframe at or before the wanted frame and frames are then dropped by their
integer pts index, so a range is exact on long-GOP H.264 with B-frames and at 24000/1001 (no float
`-ss` rounding, no pipes to deadlock, no child processes). Colour conversion and resizing run in one
libavfilter graph (`scale=...:flags=area`, the CLI's own path: its pixels match
`ffmpeg -vf scale=W:H:flags=area` bit for bit and it is cheaper than `to_ndarray(width=, height=)`).

Frames are indexed by timestamp x rate, so variable-frame-rate movies are refused: conform them to
a constant rate first. Of several video streams (a proxy, cover art) the plate is the largest
picture that is not an attached picture; probe and decoding pick the same one. Everything here
blocks like the file system does: shots.media runs it under the watchdog (shots.stalls).
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from shots.frames import normalize_rate, rate_str
from shots.mediaerror import MediaError
from shots.samples import RGB, SINGLE
from shots.stalls import beat, opening

log = logging.getLogger(__name__)

VFR_WINDOW = 48  # packets whose timing probe checks when the container states a frame count (MP4, MOV)


def open_movie(path):
    """The container, with at least one video stream that is not an attached picture.

    Blocks like the file system does: shots.media calls it in a worker (shots.stalls.bounded, bounded_iter).
    """
    opening(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise MediaError(path, f"cannot open: {e}") from e
    beat(opened=True)
    if not _plate_candidates(container):
        container.close()
        raise MediaError(path, "has no video stream" if not container.streams.video else
                         "has no video stream (only an attached picture)")
    return container


def _plate_candidates(container) -> list:
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def video_stream(container, path, announce: bool = False):
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


def constant_rate_and_frames(container, stream, path) -> tuple[Fraction, int]:
    """The plate's exact rate and frame count, for probe; MediaError if the rate is inexact or variable.

    MKV stores no frame count: every packet is counted. Otherwise the first VFR_WINDOW packets' timing is checked.
    """
    try:
        rate = _stream_rate(stream, path)
    except MediaError:  # an inexact rate: say so, unless the real trouble is a variable one
        fallback = stream.guessed_rate or stream.base_rate
        if fallback:
            _scan_packets(container, stream, Fraction(fallback), path, VFR_WINDOW)
        raise
    counted = _scan_packets(container, stream, rate, path, None if not stream.frames else VFR_WINDOW)
    return rate, stream.frames or counted


def stream_timecode(container, stream) -> str | None:
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
        beat()
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


def iter_movie(path, start: int, count: int | None, size, layout: str, require_8bit: bool, precise: bool = False):
    """Frames [start, start+count) by pts index: seek back to a keyframe, drop the pre-roll."""
    end = None if count is None else start + count
    if count == 0:
        return
    with open_movie(path) as container:
        stream = video_stream(container, path)
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
                    beat()
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


def stated_frames(path) -> int:
    """The plate's frame count as the container states it (0 when it states none, as MKV)."""
    with open_movie(path) as container:
        return video_stream(container, path).frames
