"""Image sequences and image files: '#' and printf patterns, frame numbering with gaps refused, and
reading one image in any of the formats plates arrive in.

'plate.####.png', 'plate.%04d.png' or one frame of them names a sequence. Images are read with
OpenCV (png/jpg/tif...); EXR through the OpenEXR bindings (PyAV's path clips half-float highlights
to 1.0) and DPX and the rest through PyAV's image decoders, which this OpenCV build lacks. Reads
report to the watchdog (shots.stalls) so a stalled file fails instead of hanging. For probe,
`image_facts` says what a frame's samples are (with an EXR's header as an ExrLayout) and
`image_colour` how they are read: images carry no colour tags read here, so it is a stated assumption.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # honoured only if cv2 was not imported yet
import cv2  # noqa: E402

from shots.mediaerror import MediaError  # noqa: E402
from shots.samples import Colour, ExrLayout, apply_layout, sample_desc, to_uint8  # noqa: E402
from shots.stalls import beat, opening  # noqa: E402

# Read with OpenCV; every other image extension goes to PyAV's image2 decoders (exr, dpx, ...).
_CV2_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
IMAGE_EXTS = _CV2_EXTS | {".exr", ".dpx", ".tga"}
DEFAULT_SEQUENCE_RATE = Fraction(24)

_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%(\d*)d")
_FRAME_IN_NAME = re.compile(r"^(?P<head>.*?)(?P<digits>\d+)(?P<tail>\.[^.]+)$")


@dataclass(frozen=True)
class ImageSequence:
    """Frames named `head` + zero-padded number + `tail` in one directory, or one still image."""

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


def as_sequence(path) -> ImageSequence | None:
    """The sequence `path` names ('#' or printf pattern, or one image file), or None for a movie."""
    p = Path(path)
    name = p.name
    if "#" in name:
        runs = _HASHES.findall(name)
        if len(runs) != 1:
            raise MediaError(path, "a sequence pattern needs exactly one run of '#'")
        head, tail = name.split(runs[0], 1)
        return ImageSequence(p.parent, head, len(runs[0]), tail)
    m = _PRINTF.search(name)
    if m:
        return ImageSequence(p.parent, name[: m.start()], int(m.group(1) or 1), name[m.end():])
    if p.suffix.lower() in IMAGE_EXTS:
        m = _FRAME_IN_NAME.match(name)
        if m:
            return ImageSequence(p.parent, m.group("head"), len(m.group("digits")), m.group("tail"))
        return ImageSequence(p.parent, name, None, "")
    return None


def read_image(path: Path, layout: str, require_8bit: bool, precise: bool = False) -> np.ndarray:
    """One image file in `layout`: uint8 (16-bit rounded to 8, float clipped to 0..1 then x255), or with
    `precise` at the file's own precision (uint8, uint16 or float32)."""
    if path.suffix.lower() in _CV2_EXTS:
        a = _imread(path)
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
        raise MediaError(path, f"expected 8-bit samples, found {a.dtype} ({sample_desc(a)})")
    if not precise:
        a = to_uint8(a, path)
    return apply_layout(a, layout)


def _read_exr(path: Path) -> np.ndarray:
    """An EXR frame as float32 RGB (or gray) over its display window (see _open_exr)."""
    return _open_exr(path)[0]


def _open_exr(path: Path) -> tuple[np.ndarray, ExrLayout]:
    """An EXR frame as float32 RGB (or gray) over its display window, and its file layout from the header.

    Through the OpenEXR bindings, not PyAV: libswscale clips half-float pixels to 1.0 on the way to
    float32, and scene-linear highlights live above 1.0. Pixels outside the data window are 0.
    """
    import OpenEXR

    opening(path)
    try:
        with OpenEXR.File(str(path)) as f:  # the channels' pixels are gone once the file closes: copy them
            beat(opened=True)
            header = dict(f.header())
            channels = {name: np.array(c.pixels) for name, c in f.channels().items()}
            types = {name: c.type().name.lower() for name, c in f.channels().items()}
    except Exception as e:  # noqa: BLE001 - the bindings raise bare exceptions for unreadable files
        raise MediaError(path, f"cannot read EXR: {e}") from e
    used = next((k for k in ("RGB", "RGBA") if k in channels), None)
    rgb = channels[used] if used else None
    if rgb is None and all(k in channels for k in "RGB"):
        used, rgb = "R", np.stack([channels[k] for k in "RGB"], axis=-1)
    if rgb is None and "Y" in channels:
        used, rgb = "Y", channels["Y"]
    if rgb is None:
        raise MediaError(path, f"EXR has no R, G, B or Y channels (it has {', '.join(sorted(channels))})")
    layout = _exr_layout(header, types[used])
    rgb = np.asarray(rgb, np.float32)[..., :3] if rgb.ndim == 3 else np.asarray(rgb, np.float32)
    dx0, dy0, dx1, dy1 = layout.data_window
    wx0, wy0, wx1, wy1 = layout.display_window
    if layout.data_window == layout.display_window:
        return np.ascontiguousarray(rgb), layout
    full = np.zeros((wy1 - wy0 + 1, wx1 - wx0 + 1, *rgb.shape[2:]), np.float32)
    ys, xs = slice(max(dy0, wy0), min(dy1, wy1) + 1), slice(max(dx0, wx0), min(dx1, wx1) + 1)
    full[ys.start - wy0:ys.stop - wy0, xs.start - wx0:xs.stop - wx0] = \
        rgb[ys.start - dy0:ys.stop - dy0, xs.start - dx0:xs.stop - dx0]
    return full, layout


IMAGE_CHANNELS = ("R", "G", "B", "Y")  # what an EXR frame's picture is read from; the rest rides along


def read_exr_others(path: Path) -> dict[str, np.ndarray]:
    """The channels of an EXR frame besides its picture (alpha, depth, AOVs), as stored, over its data window.

    A deliverable that follows an EXR plate carries them through untouched (`shots.deliver.ExrWriter`).
    """
    import OpenEXR

    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            return {name: np.array(c.pixels) for name, c in f.channels().items() if name not in IMAGE_CHANNELS}
    except Exception as e:  # noqa: BLE001 - the bindings raise bare exceptions for unreadable files
        raise MediaError(path, f"cannot read EXR: {e}") from e


def _exr_layout(header: dict, pixel_type: str) -> ExrLayout:
    """ExrLayout of an OpenEXR header (a dict from OpenEXR.File.header()); `pixel_type` of the image channels."""
    def window(w) -> tuple[int, int, int, int]:
        (x0, y0), (x1, y1) = w
        return int(x0), int(y0), int(x1), int(y1)

    compression = header.get("compression")
    chromaticities = header.get("chromaticities")
    return ExrLayout(
        pixel_type=pixel_type,
        compression=getattr(compression, "name", str(compression)),
        channels=tuple(c.name for c in header.get("channels", ())),
        data_window=window(header["dataWindow"]),
        display_window=window(header.get("displayWindow", header["dataWindow"])),
        pixel_aspect=float(header.get("pixelAspectRatio", 1.0)),
        chromaticities=tuple(float(v) for v in chromaticities) if chromaticities is not None else None,
    )


# Chromaticities (red, green, blue, white xy) EXR plates carry, by the name Colour.primaries gives them.
NAMED_CHROMATICITIES = {
    "aces-ap0": ((0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.0770, 0.32168, 0.33767), "ACES AP0 (ACES2065-1)"),
    "aces-ap1": ((0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767), "ACES AP1 (ACEScg)"),
    "bt709": ((0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290), "BT.709"),
    "bt2020": ((0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290), "BT.2020"),
    "smpte432": ((0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290), "P3-D65 (smpte432)"),
    "smpte431": ((0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.314, 0.351), "DCI-P3 (smpte431)"),
}


def image_colour(sample: str, exr: ExrLayout | None) -> Colour:
    """How an image plate's values are read; images carry no tags we read, so it is always an assumption.

    EXR: scene-linear, with the primaries its chromaticities name (BT.709 without them); other float
    images linear BT.709; integer PNG/TIFF/DPX sRGB/BT.709.
    """
    if exr is None:
        if sample == "float32":
            return Colour("bt709", "linear", "rgb", "pc", assumed="untagged float image: linear BT.709 assumed")
        return Colour("bt709", "iec61966-2-1", "rgb", "pc", assumed="untagged image: sRGB/BT.709 assumed")
    if exr.chromaticities is None:
        return Colour("bt709", "linear", "rgb", "pc", assumed="EXR without chromaticities: scene-linear BT.709 assumed")
    for name, (xy, label) in NAMED_CHROMATICITIES.items():
        if all(abs(a - b) < 0.002 for a, b in zip(exr.chromaticities, xy)):
            return Colour(name, "linear", "rgb", "pc", assumed=f"EXR chromaticities are {label}: scene-linear assumed")
    shown = ", ".join(f"{v:.4f}" for v in exr.chromaticities)
    return Colour("custom", "linear", "rgb", "pc",
                  assumed=f"EXR chromaticities ({shown}) name no known primaries: scene-linear assumed")


def _read_image_av(path: Path) -> np.ndarray:
    """DPX and other images OpenCV cannot read, via PyAV, keeping their precision (EXR: `_read_exr`)."""
    if path.suffix.lower() == ".exr":
        return _read_exr(path)
    return _decode_image_av(path)[0]


def _decode_image_av(path: Path) -> tuple[np.ndarray, int]:
    """An image through PyAV's decoders at its own precision, and its significant bits per sample."""
    opening(path)
    try:
        with av.open(str(path)) as container:
            beat(opened=True)
            frame = next(container.decode(video=0))
    except (av.FFmpegError, OSError, StopIteration) as e:
        raise MediaError(path, f"cannot decode image: {e}") from e
    beat()
    fmt = frame.format
    colour = [c for c in fmt.components if not c.is_alpha]
    gray = len(colour) == 1
    bits = max(c.bits for c in colour)
    if "f32" in fmt.name or "f16" in fmt.name:
        return frame.to_ndarray(format="grayf32le" if gray else "gbrpf32le", channel_last=True), 32
    if bits > 8:  # 10/12-bit samples scale to 16 bits by bit replication: white is 65535
        return frame.to_ndarray(format="gray16le" if gray else "rgb48le"), bits
    return frame.to_ndarray(format="gray" if gray else "rgb24"), bits


@dataclass(frozen=True)
class ImageFacts:
    """One image file as probe describes a sequence by its first frame."""

    array: np.ndarray  # as stored: OpenCV's channel order (BGR) for the formats it reads, RGB otherwise
    bits: int  # significant bits per sample: 8, 10, 12, 16 (half EXR too), 32 (float)
    exr: ExrLayout | None


def image_facts(path: Path) -> ImageFacts:
    """The samples, significant bits and (EXR) file layout of one image file."""
    suffix = path.suffix.lower()
    if suffix == ".exr":
        a, layout = _open_exr(path)
        return ImageFacts(a, 16 if layout.pixel_type == "half" else 32, layout)
    if suffix in _CV2_EXTS:
        a = read_native(path)
        return ImageFacts(a, {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(a.dtype, 32), None)
    a, bits = _decode_image_av(path)
    return ImageFacts(a, bits, None)


def read_native(path: Path) -> np.ndarray:
    """One image file as stored (channel order, depth), for what probe reports: size and sample format."""
    if path.suffix.lower() in _CV2_EXTS:
        a = _imread(path)
        if a is None:
            raise MediaError(path, "cannot read image")
        return a
    return _read_image_av(path)


def _imread(path: Path) -> np.ndarray | None:
    """OpenCV's reading of an image file as stored (BGR order, own depth); None if it cannot read it."""
    opening(path)
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    beat(opened=True)
    return a


def iter_sequence(seq: ImageSequence, numbers: list[int], start: int, count: int | None, size, layout, require_8bit,
                  precise: bool = False):
    """Files [start, start+count) of `numbers` read as read_image does, area-resized to size=(height, width)."""
    stop = len(numbers) if count is None else start + count
    for index in range(start, stop):
        if index >= len(numbers):
            raise MediaError(seq.pattern, f"has {len(numbers)} frames; frame {index} (file index) is missing")
        a = read_image(seq.frame_path(numbers[index]), layout, require_8bit, precise)
        if size is not None and a.shape[:2] != tuple(size):
            a = cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        yield a


def encode_png(a: np.ndarray, where) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or gray (H, W) uint8 frame; `where` names the file it is for."""
    ok, data = cv2.imencode(".png", a if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MediaError(where, "PNG encoding failed")
    return data.tobytes()
