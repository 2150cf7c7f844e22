"""Movie decoding with PyAV, in process: which stream is the plate, its exact constant rate, and
frame-exact ranges.

A seek lands on a keyframe at or before the wanted frame and frames are then dropped by their
integer pts index, so a range is exact on long-GOP H.264 with B-frames and at 24000/1001 (no float
`-ss` rounding, no pipes to deadlock, no child processes). 8-bit colour conversion and resizing run in
one libavfilter graph (`scale=...:flags=area+accurate_rnd+full_chroma_int+full_chroma_inp` with the
plate's matrix and range set explicitly, the CLI's own path); precise reads of deep video compute
uint16 RGB from the decoded planes (exact_rgb48). The matrix and range are the ones probe reports
(stream_colour: the tags, or the players' convention for untagged video), and frames come out upright
(display_rotation).

Frames are indexed by timestamp x rate, so variable-frame-rate movies are refused: conform them to
a constant rate first. Of several video streams (a proxy, cover art) the plate is the largest
picture that is not an attached picture; probe and decoding pick the same one. Everything here
blocks like the file system does: shots.media runs it under the watchdog (shots.stalls).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from shots.frames import normalize_rate, rate_str
from shots.mediaerror import MediaError
from shots.samples import RGB, SINGLE, Colour, apply_layout, ycbcr_to_rgb_matrix
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


# -- what a stream's samples mean ---------------------------------------------------------------------------------

# ffmpeg's names (libavutil/pixdesc.c) of the AVCOL_* values streams and frames carry; a missing key is unspecified.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
              10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRANSFERS = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
              10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
              16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
_MATRICES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco", 9: "bt2020nc",
             10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp"}
_MATRIX_CODES = {name: code for code, name in _MATRICES.items()}
_RANGES = {1: "tv", 2: "pc"}
_RANGE_CODES = {"tv": 1, "pc": 2}
_FIELD_ORDERS = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}  # AVFieldOrder; 0 is unknown

# (primaries, transfer, matrix) an untagged field is filled from, and how a message names them.
_BT709 = ("bt709", "bt709", "bt709")
_BT601 = ("smpte170m", "smpte170m", "smpte170m")
_FAMILIES = {
    "bt709": (_BT709, "BT.709"),
    "smpte170m": (_BT601, "BT.601 (smpte170m)"),
    "bt470bg": (("bt470bg", "smpte170m", "bt470bg"), "BT.601 625-line (bt470bg)"),
    "bt2020": (("bt2020", "bt2020-10", "bt2020nc"), "BT.2020"),
    "bt2020nc": (("bt2020", "bt2020-10", "bt2020nc"), "BT.2020"),
    "bt2020c": (("bt2020", "bt2020-10", "bt2020c"), "BT.2020"),
}
HD_LINES = 720  # from this height up, untagged video is BT.709 (the players' convention); below, BT.601


def sample_bits(fmt) -> int:
    """Bits per colour sample of a pixel format (alpha aside): 8, 10, 12, 16."""
    return max(c.bits for c in fmt.components if not c.is_alpha)


def _kind(fmt) -> str:
    """'rgb', 'gray' or 'yuv': what the samples of a pixel format are (palette formats are RGB)."""
    if fmt.is_rgb or fmt.has_palette:
        return "rgb"
    return "gray" if len([c for c in fmt.components if not c.is_alpha]) == 1 else "yuv"


def video_colour(fmt, height: int, primaries: int, transfer: int, matrix: int, colour_range: int) -> Colour:
    """How video samples are read: their tags (AVCOL_* codes), each untagged field filled as players fill it.

    An untagged field follows the other tags (a bt709 matrix tag implies bt709 primaries and transfer) or,
    with none, the picture height: BT.709 from HD_LINES up, BT.601 (smpte170m) below. YUV is tv range unless
    tagged (yuvj formats: pc), gray pc; RGB has matrix 'rgb' and is pc. `assumed` says what was filled in.
    """
    kind = _kind(fmt)
    fields = {"primaries": _PRIMARIES.get(primaries), "transfer": _TRANSFERS.get(transfer),
              "matrix": "rgb" if kind == "rgb" else _MATRICES.get(matrix)}
    notes = []
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        hint = next((v for v in (fields["matrix"], fields["primaries"]) if v in _FAMILIES), None)
        hd = height >= HD_LINES
        (family, label) = _FAMILIES[hint] if hint is not None else _FAMILIES["bt709" if hd else "smpte170m"]
        for name in missing:
            fields[name] = family[("primaries", "transfer", "matrix").index(name)]
        if hint is not None:
            notes.append(f"untagged {' and '.join(missing)}: {label} assumed from the other tags")
        elif kind == "rgb":
            notes.append(f"untagged {'HD' if hd else 'SD'} RGB video: {label} primaries and transfer assumed")
        elif len(missing) == 3:
            notes.append(f"untagged {'HD' if hd else 'SD'} video: {label} assumed")
        else:
            notes.append(f"untagged {' and '.join(missing)}: {label} assumed from the picture size")
    value_range = "pc" if kind == "rgb" else _RANGES.get(colour_range)
    if value_range is None:
        value_range = "pc" if kind == "gray" or fmt.name.startswith("yuvj") else "tv"
        notes.append(f"untagged range: {value_range} assumed")
    return Colour(fields["primaries"], fields["transfer"], fields["matrix"], value_range,
                  assumed="; ".join(notes) or None)


def stream_colour(stream, frame) -> Colour:
    """video_colour of the plate: the frame's tags (the bitstream's), else the stream's (the container's).

    probe and every reader decide it this way, so the decode uses the matrix and range probe reports.
    """
    cc = stream.codec_context

    def tag(name: str, unspecified: int = 2) -> int:
        value = int(getattr(frame, name))
        return value if value != unspecified else int(getattr(cc, name))

    return video_colour(frame.format, cc.height or frame.height, tag("color_primaries"), tag("color_trc"),
                        tag("colorspace"), tag("color_range", 0))


def display_rotation(stream, frame) -> int:
    """Degrees (0, 90, 180, 270) the stored pictures turn counter-clockwise for display.

    From the display matrix (ffmpeg -display_rotation, a MOV/MP4 track matrix), else from an old-style
    'rotate' tag, which counts clockwise (a MKV ROTATE tag). np.rot90(a, rotation // 90) is the upright picture.
    """
    ccw = frame.rotation
    if not ccw:
        tag = next((v for k, v in stream.metadata.items() if k.lower() == "rotate" and v), None)
        try:
            ccw = -round(float(tag)) if tag is not None else 0
        except ValueError:
            ccw = 0
    turned = round(ccw / 90) * 90 % 360
    if turned != ccw % 360:
        log.warning("display rotation %d degrees is not a multiple of 90; reading it as %d", ccw, turned)
    return turned


def field_order(stream, frame, path) -> str:
    """progressive | tt | bb | tb | bt, as the codec states it (an interlaced picture without a stated order: tt)."""
    order = _FIELD_ORDERS.get(stream.codec_context.field_order)
    if order is None:
        order = "progressive"
        if frame.interlaced_frame:
            order = "tt"
            log.warning("%s: interlaced pictures without a stated field order; top field first assumed", path)
    return order


@dataclass(frozen=True)
class Picture:
    """What a movie's pictures are: display-oriented size, samples, colour, orientation, scan (for probe)."""

    width: int
    height: int
    pix_fmt: str
    bits: int
    colour: Colour
    rotation: int
    field_order: str


def picture(path) -> Picture:
    """The plate's Picture, from its stream and first decoded frame (where the display matrix and the
    bitstream's colour tags are)."""
    with open_movie(path) as container:
        stream = video_stream(container, path)
        frame = _first_frame(container, stream, path)
        cc = stream.codec_context
        rotation = display_rotation(stream, frame)
        width, height = cc.width or frame.width, cc.height or frame.height
        if rotation in (90, 270):
            width, height = height, width
        fmt = cc.format or frame.format
        return Picture(width, height, fmt.name, sample_bits(frame.format), stream_colour(stream, frame), rotation,
                       field_order(stream, frame, path))


def _first_frame(container, stream, path):
    try:
        for frame in container.decode(stream):
            beat()
            return frame
    except av.FFmpegError as e:
        raise MediaError(path, f"decode failed: {e}", 0) from e
    raise MediaError(path, "no frame decodes", 0)


# -- decoded frames to arrays -------------------------------------------------------------------------------------

# The scale filter's in_color_matrix for a matrix (ffmpeg colorspace name); YUV in others cannot be decoded here.
_SCALE_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "fcc": "fcc",
                 "smpte240m": "smpte240m", "bt2020nc": "bt2020", "bt2020c": "bt2020"}
# Accurate rounding, and chroma interpolated to full resolution before the matrix: no systematic bias
# (without them a 10-bit 4:2:2 grey ramp decoded 1.6 8-bit codes dark, white at 253).
_EXACT_FLAGS = "accurate_rnd+full_chroma_int+full_chroma_inp"
# Planar formats with one plain (unshifted, unpacked) sample per component per plane: exact_rgb48 reads them directly.
_PLANAR_DEEP = re.compile(r"^(yuva?4[0-4][0-4]p|gbra?p|gray)(9|10|12|14|16)(le|be)$")


def _tag_frame(frame, colour: Colour) -> None:
    """Stamp the decided matrix and range on a decoded YUV/gray frame, so the graph sees what it is told."""
    if colour.matrix != "rgb":
        frame.colorspace = _MATRIX_CODES.get(colour.matrix, 2)
        frame.color_range = _RANGE_CODES[colour.range]


def _upsample_chroma(c: np.ndarray, height: int, width: int) -> np.ndarray:
    """A subsampled chroma plane (float32) at luma size: linear interpolation, MPEG-2/H.264/ProRes siting
    (co-sited with even luma columns, centred between luma rows)."""
    if c.shape[1] * 2 - width in (0, 1):
        nxt = np.concatenate([c[:, 1:], c[:, -1:]], axis=1)
        wide = np.empty((c.shape[0], c.shape[1] * 2), np.float32)
        wide[:, 0::2], wide[:, 1::2] = c, (c + nxt) * 0.5
        c = wide[:, :width]
    if c.shape[0] * 2 - height in (0, 1):
        prev = np.concatenate([c[:1], c[:-1]])
        nxt = np.concatenate([c[1:], c[-1:]])
        tall = np.empty((c.shape[0] * 2, c.shape[1]), np.float32)
        tall[0::2], tall[1::2] = 0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt
        c = tall[:height]
    return c


def _planes(frame) -> list[np.ndarray]:
    """The frame's planes as (h, w) uint16 arrays (a _PLANAR_DEEP format)."""
    dtype = np.dtype(">u2" if frame.format.is_big_endian else "<u2")
    return [np.frombuffer(p, dtype).reshape(p.height, p.line_size // 2)[:, :p.width].astype(np.uint16)
            for p in frame.planes]


def exact_rgb48(frame, colour: Colour, path) -> np.ndarray:
    """(H, W, 3) uint16 RGB of a >8-bit frame, computed from its planes with the exact matrix maths.

    Not through swscale: its 16-bit RGB output maps white to 65283 (10-bit tv range) or 65472 (full range)
    instead of 65535, a bias of about 2 10-bit codes. Here code values are normalised by their own
    range (tv: 64..940 at 10 bits; pc: 0..1023) and white is 65535.
    """
    fmt = frame.format
    if not _PLANAR_DEEP.match(fmt.name):
        if fmt.name in ("rgb48le", "rgba64le"):
            return np.ascontiguousarray(frame.to_ndarray()[..., :3])
        log.debug("%s: %s has no exact decode here; converting with swscale", path, fmt.name)
        return frame.to_ndarray(format="rgb48le")
    bits = sample_bits(fmt)
    top = float((1 << bits) - 1)
    planes = _planes(frame)
    kind = _kind(fmt)
    if kind == "rgb":  # components are R, G, B; each in its own plane
        rgb = np.dstack([planes[c.plane] for c in fmt.components[:3]]).astype(np.float32)
        rgb *= 65535.0 / top
    else:
        y = planes[0].astype(np.float32)
        steps = 1 << (bits - 8)
        y_black, y_span = (16.0 * steps, 219.0 * steps) if colour.range == "tv" else (0.0, top)
        if kind == "gray":
            rgb = np.repeat(((y - y_black) * (65535.0 / y_span))[..., None], 3, axis=2)
        else:
            h, w = y.shape
            cb, cr = (_upsample_chroma(planes[i].astype(np.float32), h, w) for i in (1, 2))
            c_span = 224.0 * steps if colour.range == "tv" else top
            matrix = ycbcr_to_rgb_matrix(colour.matrix, path)
            # RGB (0..65535) = M . (normalised Y, Cb, Cr): one affine transform of the code values
            scale = np.diag([65535.0 / y_span, 65535.0 / c_span, 65535.0 / c_span])
            m = matrix @ scale
            offset = -m @ np.array([y_black, float(1 << (bits - 1)), float(1 << (bits - 1))])
            import cv2  # here, not at the top: shots.sequences imports it first, with its EXR switch set

            rgb = cv2.transform(cv2.merge([y, cb, cr]), np.hstack([m, offset[:, None]]).astype(np.float64))
    np.clip(rgb, 0.0, 65535.0, out=rgb)
    return np.rint(rgb).astype(np.uint16)


def upright(a: np.ndarray, rotation: int) -> np.ndarray:
    """A stored picture turned for display (rotation: counter-clockwise degrees, see display_rotation)."""
    return np.ascontiguousarray(np.rot90(a, rotation // 90)) if rotation else a


class _Converter:
    """Decoded frames to upright arrays in `layout`, read with the plate's own matrix and range.

    8-bit output runs through one libavfilter graph, the CLI's own path: scale with the matrix and range
    set explicitly (in_color_matrix, in_range: untagged HD is BT.709, not swscale's BT.601 default),
    accurate rounding and full chroma interpolation. Precise output of deep video (uint16 RGB) is computed
    from the decoded planes (exact_rgb48). The graph is rebuilt only if the frame geometry or format changes.
    """

    def __init__(self, colour: Colour, rotation: int, layout: str, precise: bool, size, path):
        self.colour, self.rotation, self.layout, self.precise, self.path = colour, rotation, layout, precise, path
        self.size = size if size is None or rotation in (0, 180) else (size[1], size[0])  # stored orientation
        self._key = None
        self._graph = None

    def __call__(self, frame) -> np.ndarray:
        _tag_frame(frame, self.colour)
        if self.precise and self.layout == RGB and sample_bits(frame.format) > 8:
            a = exact_rgb48(frame, self.colour, self.path)
            if self.size is not None and a.shape[:2] != self.size:
                import cv2

                a = cv2.resize(a, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        else:
            a = self._filtered(frame)
        return upright(apply_layout(a, self.layout) if self.layout == SINGLE else a, self.rotation)

    def _out_format(self, fmt) -> str:
        kind = _kind(fmt)
        if self.layout != RGB and (kind == "gray" or (self.layout == SINGLE and kind == "yuv")):
            return "gray"  # luma; equals R for masks stored with R=G=B
        return "rgb24"

    def _filtered(self, frame) -> np.ndarray:
        out_format = self._out_format(frame.format)
        if frame.format.name == out_format and (self.size is None or (frame.height, frame.width) == self.size):
            return frame.to_ndarray()
        key = (frame.width, frame.height, frame.format.name, out_format)
        if key != self._key:
            self._graph, self._key = self._build(frame, out_format), key
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()

    def _build(self, frame, out_format: str):
        kind = _kind(frame.format)
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
        args = [f"{self.size[1]}:{self.size[0]}"] if self.size is not None else []
        args.append(f"flags=area+{_EXACT_FLAGS}")  # area: the cheapest good downscaler; bilinear chroma upsampling
        if kind == "yuv":
            if self.colour.matrix not in _SCALE_MATRIX:
                raise MediaError(self.path, f"YUV matrix {self.colour.matrix!r} cannot be decoded to RGB here")
            args.append(f"in_color_matrix={_SCALE_MATRIX[self.colour.matrix]}")
        if kind != "rgb":  # RGB out is pc; gray stays as stored (a gray mask's levels are its values)
            out_range = self.colour.range if kind == "gray" and out_format == "gray" else "pc"
            args += [f"in_range={self.colour.range}", f"out_range={out_range}"]
        chain = [src, graph.add("scale", ":".join(args)), graph.add("format", out_format), graph.add("buffersink")]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        return graph


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
                        convert = _Converter(stream_colour(stream, frame), display_rotation(stream, frame), layout,
                                             precise, size, path)
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
