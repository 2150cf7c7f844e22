"""Decoded frames as numpy arrays: the channel layouts the readers return, how samples of other types
become 8-bit, and what a plate's samples mean (its colour and, for EXR, its file layout). Shared by
the sequence and movie readers, the writers that follow a plate, and the colour pipeline."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shots.mediaerror import MediaError

# Channel layouts iter_frames can return.
RGB = "rgb"  # (H, W, 3) uint8
NATIVE = "native"  # gray sources stay (H, W); everything else is RGB
SINGLE = "single"  # (H, W): luma of gray/YUV sources, first (red) channel of RGB sources


@dataclass(frozen=True)
class Colour:
    """How a plate's values are to be read, in ffmpeg's names; `assumed` says why when the file did not say.

    primaries: bt709 | bt470bg | smpte170m | bt2020 | ...; transfer: bt709 | linear | iec61966-2-1 | ...;
    matrix: bt709 | bt470bg | smpte170m | bt2020nc | rgb (RGB sources); range: tv | pc.
    """

    primaries: str
    transfer: str
    matrix: str
    range: str
    assumed: str | None = None  # e.g. "untagged HD video: BT.709 assumed (the players' convention)"


@dataclass(frozen=True)
class ExrLayout:
    """What an EXR plate's files are, so a deliverable can follow them: pixel type, compression, channels,
    windows (x0, y0, x1, y1 inclusive, as OpenEXR gives them) and the attributes a comp app reads."""

    pixel_type: str  # half | float
    compression: str  # OpenEXR's name, e.g. ZIP_COMPRESSION, PIZ_COMPRESSION
    channels: tuple[str, ...]
    data_window: tuple[int, int, int, int]
    display_window: tuple[int, int, int, int]
    pixel_aspect: float = 1.0
    chromaticities: tuple[float, ...] | None = None  # red xy, green xy, blue xy, white xy


# Luma weights (Kr, Kb) of the YUV matrices, by ffmpeg colorspace name (ITU-R BT.601/709/2020, SMPTE 240M, FCC).
LUMA_WEIGHTS = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114), "bt470bg": (0.299, 0.114),
                "fcc": (0.30, 0.11), "smpte240m": (0.212, 0.087), "bt2020nc": (0.2627, 0.0593),
                "bt2020c": (0.2627, 0.0593)}


def ycbcr_to_rgb_matrix(matrix: str, where=None) -> np.ndarray:
    """The 3x3 matrix taking normalised Y' (0..1), Cb, Cr (-0.5..0.5) to R'G'B' (0..1) for a YUV matrix name.

    bt2020c (constant luminance) is decoded as bt2020nc: close, not exact. `where` names the file in errors.
    """
    if matrix not in LUMA_WEIGHTS:
        raise MediaError(where, f"YUV matrix {matrix!r} cannot be decoded to RGB here")
    kr, kb = LUMA_WEIGHTS[matrix]
    kg = 1.0 - kr - kb
    return np.array([
        [1.0, 0.0, 2.0 * (1.0 - kr)],
        [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
        [1.0, 2.0 * (1.0 - kb), 0.0],
    ])


def sample_desc(a: np.ndarray) -> str:
    """dtype and shape, for messages about arrays that are not what was expected."""
    return f"{a.dtype}, shape {a.shape}"


def to_uint8(a: np.ndarray, where) -> np.ndarray:
    """uint8 samples: 16-bit rounded to 8, float clipped to 0..1 then x255 (NaN as 0); `where` names the file."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
    if a.dtype.kind == "f":
        return np.rint(np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise MediaError(where, f"unsupported sample type {sample_desc(a)}")


def apply_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """An (H, W) gray or (H, W, C) colour image in `layout` (RGB, NATIVE or SINGLE)."""
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2) if layout == RGB else a
    return a[..., 0] if layout == SINGLE else a


def describe(a: np.ndarray) -> str:
    """A pix_fmt-like name for an image array: rgb24, gray, rgb48, gray16, rgbf32, rgba..."""
    channels = 1 if a.ndim == 2 else a.shape[2]
    base = {1: "gray", 3: "rgb", 4: "rgba"}.get(channels, f"{channels}ch")
    depth = {np.dtype(np.uint8): "", np.dtype(np.uint16): "16", np.dtype(np.float32): "f32"}.get(a.dtype, str(a.dtype))
    if base == "rgb" and depth == "":
        return "rgb24"
    if base == "rgb" and depth == "16":
        return "rgb48"
    return base + depth
