"""Deliverable writers: PNG/EXR/DPX sequences from frame 1001, or one ProRes 4444 .mov with source timecode.

Writers take frames at the plate's precision, uint8, uint16 or float32 RGB (H, W, 3), and deliver them at
that precision with the format's own metadata (`open_writer(..., plate=)` passes the plate's MediaInfo):

- png: uint8 frames give 8-bit PNG, uint16 frames 16-bit PNG, bit-exact (float frames: 16-bit, clipped to 0..1).
- exr: through the OpenEXR bindings. Float frames are written as they are (values above 1.0 stay above
  1.0); uint8/uint16 frames become code value / 255 (/ 65535): display-referred values, not linearised.
  An EXR plate's layout is followed: pixel type, compression, data window within its display window,
  and its other channels (alpha, depth, AOVs) copied from the plate's own frame, untouched; otherwise
  half, ZIP, full window. Every file carries chromaticities, timeCode (its own frame's),
  framesPerSecond and pixelAspectRatio.
- dpx: 10-bit (gbrp10le, filled 32-bit words), codes rounded from the frame's own range; the transfer
  and colorimetric fields follow the plate's colour. No timecode: ffmpeg writes no industry header.
- prores: ProRes 4444 through ffmpeg. Deeper-than-8-bit frames are piped as rgb48le so 10 bits survive;
  the colr tags come from the plate's colour (BT.709 when unknown) and the RGB->YUV matrix matches them;
  the timecode string is passed as given, so ';' stays drop-frame and ':' non-drop.

Writers put files in a staging folder (`ArtifactStore.writing_dir`) that lands as an immutable version
in one step, so an interrupted render never looks like a finished one. File names come from
`storage.layout`.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np
import OpenEXR
from av.video.reformatter import ColorPrimaries, ColorTrc

from shots.samples import Colour, sample_desc
from shots.sequences import IMAGE_CHANNELS, read_exr_others
from storage import layout
from storage.layout import FIRST_FRAME
from storage.store import ArtifactStore, DiskFull

if TYPE_CHECKING:
    from shots.media import MediaInfo

log = logging.getLogger(__name__)

FORMATS = ("auto", "png", "exr", "dpx", "prores")  # auto: `choose_format(plate)`
LOSSY = ("prores",)  # formats whose keep pixels come back close to the source, not equal
SAMPLE_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))  # what writers accept
# Upper estimates of the encoded size of a pixel by (format, bits per sample), for the free-space check
# before a render, plus a header's worth per file.
BYTES_PER_PIXEL = {("png", 8): 3.0, ("png", 16): 6.0, ("exr", 16): 6.0, ("exr", 32): 12.0, ("dpx", 10): 4.0,
                   ("prores", 10): 2.0}
BYTES_PER_FILE = 4096

# CIE xy of red, green, blue and white, for the primaries a plate's colour names (ffmpeg's names).
REC709_CHROMATICITIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
CHROMATICITIES = {
    "bt709": REC709_CHROMATICITIES,
    "bt470bg": (0.64, 0.33, 0.29, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    "smpte170m": (0.630, 0.340, 0.310, 0.595, 0.155, 0.070, 0.3127, 0.3290),
    "smpte240m": (0.630, 0.340, 0.310, 0.595, 0.155, 0.070, 0.3127, 0.3290),
    "bt2020": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
}
BT709 = Colour("bt709", "bt709", "bt709", "tv")  # what a deliverable is tagged when the plate's colour is unknown
_UNKNOWN = {"", "unknown", "unspecified", "reserved"}
# A plate's YUV matrix (ffmpeg's colorspace names) -> the scale filter's out_color_matrix that encodes with it.
_SCALE_MATRIX = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601", "bt2020nc": "bt2020",
                 "smpte240m": "smpte240m", "fcc": "fcc"}
# The YUV matrix for an RGB plate (or one whose matrix cannot be encoded), from its primaries.
_MATRIX_FOR_PRIMARIES = {"bt470bg": "bt470bg", "smpte170m": "smpte170m", "smpte240m": "smpte240m",
                         "bt2020": "bt2020nc"}


def choose_format(plate: MediaInfo) -> str:
    """The format `auto` delivers for a plate: EXR for a float (EXR) plate, else PNG (16-bit when deeper than 8)."""
    if plate.exr is not None or plate.sample == "float32":
        return "exr"
    return "png"


def encoding(fmt: str, plate: MediaInfo | None = None) -> tuple[str, int]:
    """(format, bits per sample) a writer delivers for `plate` (None: 8-bit frames); `auto` is resolved."""
    if fmt == "auto":
        if plate is None:
            raise ValueError("format 'auto' follows the plate: pass plate=MediaInfo (or choose png, exr, dpx, prores)")
        fmt = choose_format(plate)
    sample = plate.sample if plate is not None else "uint8"
    if fmt == "png":
        return fmt, 8 if sample == "uint8" else 16
    if fmt == "exr":
        return fmt, 32 if plate is not None and plate.exr is not None and plate.exr.pixel_type == "float" else 16
    if fmt in ("dpx", "prores"):
        return fmt, 10
    raise ValueError(f"unknown deliverable format {fmt!r}; choose one of {', '.join(FORMATS)}")


def estimate_bytes(fmt: str, width: int, height: int, frames: int, plate: MediaInfo | None = None) -> int:
    """About how many bytes a version of this size takes (erring large); `auto` without a plate: the largest."""
    if fmt == "auto" and plate is None:
        per_pixel = max(BYTES_PER_PIXEL.values())
    else:
        per_pixel = BYTES_PER_PIXEL[encoding(fmt, plate)]
    return int(per_pixel * width * height * frames) + BYTES_PER_FILE * frames + (1 << 20)


def check_free_space(store: ArtifactStore, shot_id: str, fmt: str, width: int, height: int, frames: int,
                     plate: MediaInfo | None = None) -> None:
    """Refuse to start a render that cannot fit: DiskFull names the disk and the sizes."""
    free = store.free_bytes()
    need = estimate_bytes(fmt, width, height, frames, plate)
    if free is not None and free < need:
        raise DiskFull(f"shot {shot_id}: not enough free space on {store.disk()} for a {fmt} version of "
                       f"{frames} frames at {width}x{height}: needs about {need / 1e6:.0f} MB, "
                       f"{free / 1e6:.0f} MB free")


def ffmpeg_exe() -> str:
    """The ffmpeg next to the interpreter (the Makefile links one into .venv/bin), else imageio-ffmpeg's."""
    beside = Path(os.sys.executable).with_name("ffmpeg")
    if beside.exists():
        return str(beside)
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def open_writer(fmt: str, folder: Path, shot_id: str, version: int, width: int, height: int, rate: Fraction,
                timecode: str | None, plate: MediaInfo | None = None, plate_files: list[Path] | None = None):
    """The deliverable writer for `fmt`: png/exr/dpx sequences from 1001, or one ProRes .mov.

    `timecode` is the source timecode of the first delivered frame; `plate` (the shot's MediaInfo) says
    what the frames are: their precision, colour, timecode kind and, for EXR plates, the file layout to
    follow; `plate_files` are the plate's files of the delivered frames, in order, whose other EXR
    channels (alpha, depth, AOVs) an EXR deliverable carries through. `auto` picks the format from the
    plate (`choose_format`); the writer's `fmt` says which.
    """
    fmt, _ = encoding(fmt, plate)
    folder, rate = Path(folder), Fraction(rate)
    if fmt == "png":
        return PngWriter(folder, shot_id, version, width, height)
    if fmt == "exr":
        return ExrWriter(folder, shot_id, version, width, height, rate, timecode, plate, plate_files=plate_files)
    if fmt == "dpx":
        return DpxWriter(folder, shot_id, version, width, height, plate)
    return ProResWriter(folder / layout.movie_file(shot_id, version), width, height, rate, timecode, plate)


# -- samples ----------------------------------------------------------------------------------------------
def _checked(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    a = np.asarray(frame)
    if a.shape != (height, width, 3) or a.dtype not in SAMPLE_TYPES:
        raise ValueError(f"deliverable frames are uint8, uint16 or float32 RGB ({height}, {width}, 3); "
                         f"got {sample_desc(a)}")
    return a


def _unit_float(a: np.ndarray) -> np.ndarray:
    """float32 with 1.0 = white: integer codes / 255 or / 65535; float frames as they are (nothing clipped)."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    return a


def _codes(a: np.ndarray, top: int) -> np.ndarray:
    """uint16 codes 0..top: integer codes rescaled with rounding (exact when the range is the same);
    float clipped to 0..1 (NaN as 0)."""
    if a.dtype.kind == "f":
        return np.rint(np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * top).astype(np.uint16)
    full = np.iinfo(a.dtype).max
    if full == top:
        return a.astype(np.uint16, copy=False)
    return ((a.astype(np.uint64) * top + full // 2) // full).astype(np.uint16)


def _known(value: str | None, default: str) -> str:
    return default if value is None or value in _UNKNOWN else value


def _delivery_colour(colour: Colour | None) -> tuple[Colour, str]:
    """The tags a YUV deliverable carries for a plate's colour, and the scale filter's matrix that matches them.

    Unknown fields are BT.709's. An RGB plate (or a matrix the scale filter cannot encode) gets the YUV
    matrix of its primaries, in video range (ProRes' convention); a YUV plate keeps its matrix and range.
    """
    c = colour or BT709
    primaries, transfer = _known(c.primaries, BT709.primaries), _known(c.transfer, BT709.transfer)
    if c.matrix in _SCALE_MATRIX:
        matrix, range_ = c.matrix, c.range if c.range in ("tv", "pc") else "tv"
    else:
        matrix, range_ = _MATRIX_FOR_PRIMARIES.get(primaries, "bt709"), "tv"
        if _known(c.matrix, "rgb") != "rgb":
            log.warning("plate matrix %r cannot be encoded; delivering with %s (tagged so)", c.matrix, matrix)
    return Colour(primaries, transfer, matrix, range_), _SCALE_MATRIX[matrix]


# -- timecode -----------------------------------------------------------------------------------------------
_TIMECODE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2})")


def _timecode_fields(timecode: str) -> tuple[int, int, int, int]:
    m = _TIMECODE.fullmatch(timecode.strip())
    if m is None:
        raise ValueError(f"timecode {timecode!r} is not HH:MM:SS:FF (or HH:MM:SS;FF drop-frame)")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(5))


def _marked_drop_frame(timecode: str) -> bool:
    """Whether the string says drop-frame: ';' (or '.', ',') before the frames, as ffmpeg reads it."""
    m = _TIMECODE.fullmatch(timecode.strip())
    return m is not None and m.group(4) != ":"


def _drop_frame(timecode: str, plate: MediaInfo | None) -> bool:
    """Whether labels count drop-frame: the plate's kind; without a plate, the string's (';' is drop-frame)."""
    marked = _marked_drop_frame(timecode)
    if plate is None:
        return marked
    if plate.drop_frame != marked:
        log.warning("timecode %r is %s but the plate counts %s", timecode, "drop-frame" if marked else "non-drop",
                    "drop-frame" if plate.drop_frame else "non-drop")
    return plate.drop_frame


def _nominal_fps(rate: Fraction, drop: bool) -> int:
    fps = max(1, round(rate))
    if drop and fps not in (30, 60):
        raise ValueError(f"drop-frame timecode counts only at 29.97 or 59.94 fps, not {float(rate):g}")
    return fps


def _label_to_count(fields: tuple[int, int, int, int], fps: int, drop: bool) -> int:
    """Frames since 00:00:00:00 of a timecode label counted at nominal `fps` (drop-frame skips labels)."""
    h, m, s, f = fields
    if m > 59 or s > 59 or f >= fps:
        raise ValueError(f"timecode {h:02d}:{m:02d}:{s:02d}:{f:02d} is not valid at {fps} fps")
    dropped = fps // 15 if drop else 0  # labels skipped at each minute but every tenth: 2 at 29.97, 4 at 59.94
    if dropped and s == 0 and f < dropped and m % 10:
        raise ValueError(f"timecode {h:02d}:{m:02d}:{s:02d};{f:02d} does not exist in drop-frame counting")
    minutes = 60 * h + m
    return ((3600 * h + 60 * m + s) * fps + f) - dropped * (minutes - minutes // 10)


def _count_to_label(count: int, fps: int, drop: bool) -> tuple[int, int, int, int]:
    """The timecode label (h, m, s, f) of frame `count` since 00:00:00:00; wraps at 24 hours."""
    dropped = fps // 15 if drop else 0
    per_day = 24 * 3600 * fps - dropped * (24 * 60 - 24 * 6)
    count %= per_day
    if dropped:
        per_ten_minutes, per_minute = 600 * fps - 9 * dropped, 60 * fps - dropped
        tens, rest = divmod(count, per_ten_minutes)
        count += 9 * dropped * tens + (dropped * ((rest - dropped) // per_minute) if rest > dropped else 0)
    seconds, f = divmod(count, fps)
    return seconds // 3600, seconds // 60 % 60, seconds % 60, f


def _exr_timecode(label: tuple[int, int, int, int], fps: int, drop: bool) -> OpenEXR.TimeCode:
    """An OpenEXR TimeCode; above 30 fps SMPTE 12M counts frame pairs and flags the second with field phase."""
    h, m, s, f = label
    tc = OpenEXR.TimeCode()
    tc.hours, tc.minutes, tc.seconds, tc.dropFrame = h, m, s, drop
    tc.frame, tc.fieldPhase = (f // 2, bool(f % 2)) if fps > 30 else (f, False)
    return tc


# -- writers --------------------------------------------------------------------------------------------------
class SequenceWriter:
    """`{shot}_void_v{NNN}.{frame:04d}.{fmt}` files from `first_frame` on, encoded on two threads.

    Encoding is the slowest step of a conform (cv2 and PyAV release the GIL while they compress; OpenEXR
    compresses on its own threads), so frames are handed to a small pool with a bounded backlog: memory
    stays a few frames.
    Subclasses say how one frame becomes one file (`_encode`).
    """

    BACKLOG = 4
    fmt = ""

    def __init__(self, folder: Path, shot_id: str, version: int, width: int, height: int,
                 first_frame: int = FIRST_FRAME):
        self.folder, self.shot_id, self.version, self.frame = Path(folder), shot_id, version, first_frame
        self.width, self.height, self.first_frame = width, height, first_frame
        self.folder.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="frame-writer")
        self._pending: deque = deque()

    def write(self, frame: np.ndarray) -> None:
        """Queue one uint8, uint16 or float32 RGB (H, W, 3) frame; a failed earlier write is raised here."""
        frame = _checked(frame, self.width, self.height)
        while len(self._pending) >= self.BACKLOG:
            self._pending.popleft().result()  # re-raises a failed write here, in the caller
        path = self.folder / layout.frame_file(self.shot_id, self.version, self.frame, self.fmt)
        self._pending.append(self._pool.submit(self._encode, path, frame, self.frame - self.first_frame))
        self.frame += 1

    def _encode(self, path: Path, frame: np.ndarray, offset: int) -> None:
        """Write `frame`, the `offset`-th of the version, to `path`."""
        raise NotImplementedError

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class PngWriter(SequenceWriter):
    """8-bit PNG from uint8 frames, 16-bit PNG from uint16 (and float, clipped to 0..1) frames; bit-exact."""

    fmt = "png"

    def _encode(self, path: Path, frame: np.ndarray, offset: int) -> None:
        codes = frame if frame.dtype != np.float32 else _codes(frame, 65535)
        ok = cv2.imwrite(str(path), np.ascontiguousarray(codes[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OSError(f"could not write frame {path}")


class ExrWriter(SequenceWriter):
    """EXR frames through the OpenEXR bindings (PyAV's encoder has no timecode or chromaticities).

    With an EXR plate its layout is followed: pixel type, compression, and its data window inside its
    display window (the frames are display-window sized; a data window reaching outside it is cut to the
    part the frames hold). Otherwise half, ZIP, full window. Each file's header carries chromaticities
    (the plate's, else those of its primaries, else Rec.709/D65), its own timeCode (the first frame's
    `timecode` plus its offset, counted as the plate counts: drop-frame or not), framesPerSecond and
    pixelAspectRatio.
    """

    fmt = "exr"

    def __init__(self, folder: Path, shot_id: str, version: int, width: int, height: int, rate: Fraction,
                 timecode: str | None = None, plate: MediaInfo | None = None, first_frame: int = FIRST_FRAME,
                 plate_files: list[Path] | None = None):
        exr = plate.exr if plate is not None else None
        display = exr.display_window if exr is not None else (0, 0, width - 1, height - 1)
        if (display[2] - display[0] + 1, display[3] - display[1] + 1) != (width, height):
            raise ValueError(f"the plate's EXR display window {display} is not the {width}x{height} of the frames")
        data = exr.data_window if exr is not None else display
        x0, y0 = max(data[0], display[0]), max(data[1], display[1])
        x1, y1 = min(data[2], display[2]), min(data[3], display[3])
        if x0 > x1 or y0 > y1:
            raise ValueError(f"the plate's EXR data window {data} lies outside its display window {display}")
        compression = exr.compression if exr is not None else "ZIP_COMPRESSION"
        if compression not in OpenEXR.Compression.__members__:
            raise ValueError(f"unknown EXR compression {compression!r}")
        if exr is not None and exr.pixel_type not in ("half", "float"):
            raise ValueError(f"EXR pixel type {exr.pixel_type!r} is neither half nor float")
        super().__init__(folder, shot_id, version, width, height, first_frame)
        self._dtype = np.float32 if exr is not None and exr.pixel_type == "float" else np.float16
        self._window = (slice(y0 - display[1], y1 - display[1] + 1), slice(x0 - display[0], x1 - display[0] + 1))
        if exr is not None and exr.chromaticities is not None:
            chromaticities = exr.chromaticities
        elif plate is not None and plate.colour is not None:
            chromaticities = CHROMATICITIES.get(plate.colour.primaries, REC709_CHROMATICITIES)
        else:
            chromaticities = REC709_CHROMATICITIES
        self._header = {
            "type": OpenEXR.scanlineimage,
            "compression": OpenEXR.Compression.__members__[compression],
            "dataWindow": ((x0, y0), (x1, y1)),
            "displayWindow": ((display[0], display[1]), (display[2], display[3])),
            "chromaticities": tuple(float(v) for v in chromaticities),
            "pixelAspectRatio": float(exr.pixel_aspect if exr is not None else 1.0),
            "framesPerSecond": Fraction(rate),
        }
        # The plate's other channels (alpha, depth, AOVs) come from its own file for each frame, cut the same way.
        self._plate_files = plate_files if exr is not None and set(exr.channels) - set(IMAGE_CHANNELS) else None
        self._others_window = (slice(y0 - data[1], y1 - data[1] + 1), slice(x0 - data[0], x1 - data[0] + 1))
        self._timecode = None
        if timecode:
            drop = _drop_frame(timecode, plate)
            fps = _nominal_fps(Fraction(rate), drop)
            self._timecode = (_label_to_count(_timecode_fields(timecode), fps, drop), fps, drop)

    def _encode(self, path: Path, frame: np.ndarray, offset: int) -> None:
        header = dict(self._header)
        if self._timecode is not None:
            start, fps, drop = self._timecode
            header["timeCode"] = _exr_timecode(_count_to_label(start + offset, fps, drop), fps, drop)
        channels = {"RGB": np.ascontiguousarray(_unit_float(frame)[self._window].astype(self._dtype))}
        if self._plate_files is not None:
            channels.update((name, np.ascontiguousarray(c[self._others_window]))
                            for name, c in read_exr_others(self._plate_files[offset]).items())
        OpenEXR.File(header, channels).write(str(path))


class DpxWriter(SequenceWriter):
    """10-bit DPX (gbrp10le through PyAV's encoder: one 32-bit word per pixel) from any frame precision.

    uint16 frames become round(v * 1023 / 65535), within one code of v >> 6; the transfer and colorimetric
    fields follow the plate's colour (BT.709 when unknown). ffmpeg writes no film/TV header: no timecode.
    """

    fmt = "dpx"

    def __init__(self, folder: Path, shot_id: str, version: int, width: int, height: int,
                 plate: MediaInfo | None = None, first_frame: int = FIRST_FRAME):
        super().__init__(folder, shot_id, version, width, height, first_frame)
        colour = plate.colour if plate is not None and plate.colour is not None else BT709
        self._trc = ColorTrc.__members__.get(_known(colour.transfer, "bt709").upper().replace("-", "_"),
                                             ColorTrc.UNSPECIFIED)
        self._primaries = ColorPrimaries.__members__.get(_known(colour.primaries, "bt709").upper(),
                                                         ColorPrimaries.UNSPECIFIED)

    def _encode(self, path: Path, frame: np.ndarray, offset: int) -> None:
        encoder = av.CodecContext.create("dpx", "w")  # one per file: the pool's threads never share one
        encoder.width, encoder.height, encoder.pix_fmt = self.width, self.height, "gbrp10le"
        encoder.time_base = Fraction(1, 1)
        encoder.color_trc, encoder.color_primaries = self._trc, self._primaries
        image = av.VideoFrame.from_ndarray(_codes(frame, 1023), format="gbrp10le")
        packets = encoder.encode(image) + encoder.encode(None)
        path.write_bytes(b"".join(bytes(p) for p in packets))


class ProResWriter:
    """ProRes 4444 (prores_ks profile 4, 10-bit 4:4:4) through ffmpeg, with a timecode track.

    Frames are piped as rgb24 for an 8-bit plate (or none), else as rgb48le (float clipped to 0..1), so
    a 10-bit plate keeps its 10 bits; a frame deeper than the pipe is refused rather than rounded. The
    colr tags are the plate's colour (`_delivery_colour`) and the scale filter converts with the same
    matrix and range; setparams stamps them on the frames, which is what the mov muxer writes.
    The timecode string goes to ffmpeg as given: ';' makes a drop-frame tmcd track, ':' a non-drop one.
    """

    fmt = "prores"

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, timecode: str | None,
                 plate: MediaInfo | None = None):
        if timecode:  # refuse a string ffmpeg cannot count now, not after the encode
            _nominal_fps(Fraction(rate), _marked_drop_frame(timecode))
            _label_to_count(_timecode_fields(timecode), _nominal_fps(Fraction(rate), False), False)
            _drop_frame(timecode, plate)  # warns when the string and the plate disagree
        self.path, self.width, self.height = Path(path), width, height
        self._deep = plate is not None and plate.sample != "uint8"
        colour, matrix = _delivery_colour(plate.colour if plate is not None else None)
        self.colour = colour
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path.with_suffix(".ffmpeg.log"), "wb")
        tags = (f"color_primaries={colour.primaries}:color_trc={colour.transfer}:colorspace={colour.matrix}"
                f":range={colour.range}")
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "rawvideo",
               "-pix_fmt", "rgb48le" if self._deep else "rgb24", "-s", f"{width}x{height}",
               "-r", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:",
               "-vf", f"scale=out_color_matrix={matrix}:out_range={colour.range},setparams={tags}",
               "-c:v", "prores_ks", "-profile:v", "4", "-pix_fmt", "yuv444p10le", "-vendor", "apl0",
               "-colorspace", colour.matrix, "-color_primaries", colour.primaries, "-color_trc", colour.transfer,
               "-color_range", colour.range]
        if timecode:
            cmd += ["-timecode", timecode]
        cmd.append(str(self.path))
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._log)

    def write(self, frame: np.ndarray) -> None:
        frame = _checked(frame, self.width, self.height)
        if not self._deep and frame.dtype != np.uint8:
            raise ValueError(f"this ProRes writer was opened for 8-bit frames, got {sample_desc(frame)}: "
                             "open it with plate= a MediaInfo whose sample is uint16 or float32")
        codes = _codes(frame, 65535).astype("<u2", copy=False) if self._deep else frame
        try:
            self._proc.stdin.write(codes.tobytes())
        except BrokenPipeError:
            self.close()

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        code = self._proc.wait()
        self._log.close()
        log_path = self.path.with_suffix(".ffmpeg.log")
        message = log_path.read_text(errors="replace").strip()
        log_path.unlink(missing_ok=True)
        if code != 0:
            raise OSError(f"ffmpeg failed writing {self.path}: {message[-500:]}")


def contact_sheet(pairs: list[tuple[int, np.ndarray, np.ndarray]], path: Path, thumb_width: int = 480) -> None:
    """Before | after rows for a few frames, labelled with their deliverable frame numbers."""
    rows = []
    for frame, before, after in pairs:
        h, w = before.shape[:2]
        th = max(1, round(h * thumb_width / w))
        cells = []
        for label, img in (("before", before), ("after", after)):
            small = cv2.resize(img, (thumb_width, th), interpolation=cv2.INTER_AREA)
            small = np.ascontiguousarray(small[..., ::-1])
            cv2.putText(small, f"{frame} {label}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(small, f"{frame} {label}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                        cv2.LINE_AA)
            cells.append(small)
        rows.append(np.hstack([cells[0], np.full((th, 4, 3), 32, np.uint8), cells[1]]))
    sheet = np.vstack([np.vstack([r, np.full((4, r.shape[1], 3), 32, np.uint8)]) for r in rows])
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"could not write contact sheet {path}")
