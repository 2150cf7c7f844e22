"""Decoded frames as numpy arrays: the channel layouts the readers return, and how samples of other
types become 8-bit. Shared by the sequence and movie readers and by the writers' checks."""
from __future__ import annotations

import numpy as np

from shots.mediaerror import MediaError

# Channel layouts iter_frames can return.
RGB = "rgb"  # (H, W, 3) uint8
NATIVE = "native"  # gray sources stay (H, W); everything else is RGB
SINGLE = "single"  # (H, W): luma of gray/YUV sources, first (red) channel of RGB sources


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
