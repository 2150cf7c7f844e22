"""VOID quadmask codec: 0 remove, 63 overlap, 127 affected, 255 keep.

Masks travel as one 8-bit channel. Whatever a mask was stored as (VOID's samples are RGB H.264
yuv444p with R=G=B, ours are gray8 FFV1 or gray PNG), readers re-quantize with VOID's thresholds
(<=31, <=95, <=191), so mild codec noise cannot create a fifth value. Resizing is nearest-neighbour:
averaging a remove/keep edge would invent an 'affected' (127) band that nobody asked for.
Decoding is shared with shots.media (same seek, same frame-exact ranges).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from shots import media
from shots.media import MediaError

REMOVE, OVERLAP, AFFECTED, KEEP = 0, 63, 127, 255
LEVELS = (REMOVE, OVERLAP, AFFECTED, KEEP)

# quantize() lookup table: <=31 -> 0, <=95 -> 63, <=191 -> 127, else 255.
_LUT = np.empty(256, np.uint8)
_LUT[:32], _LUT[32:96], _LUT[96:192], _LUT[192:] = REMOVE, OVERLAP, AFFECTED, KEEP
_IS_LEVEL = np.zeros(256, bool)
_IS_LEVEL[list(LEVELS)] = True


def quantize(a: np.ndarray) -> np.ndarray:
    """Snap mask values to LEVELS with VOID's thresholds; (H, W, C) input uses its first channel."""
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"a mask is (H, W) or (H, W, C), got shape {a.shape}")
    if a.dtype == np.uint8:
        return cv2.LUT(np.ascontiguousarray(a), _LUT)  # several times faster than _LUT[a] on 4K frames
    if a.dtype.kind not in "iuf":
        raise ValueError(f"a mask holds numbers, got dtype {a.dtype}")
    out = np.full(a.shape, KEEP, np.uint8)
    out[a <= 191] = AFFECTED
    out[a <= 95] = OVERLAP
    out[a <= 31] = REMOVE
    return out



def grow_remove(mask: np.ndarray, margin: int) -> np.ndarray:
    """(H, W) bool: the region a fill regenerates: non-keep pixels plus the remove region (0, 63) grown by
    `margin` px, so an object's anti-aliased edge goes with it."""
    region = mask != KEEP
    remove = (mask <= OVERLAP).view(np.uint8)
    if margin > 0 and remove.any():
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        region |= cv2.dilate(remove, k) > 0
    return region

def check_levels(m: np.ndarray, where: str) -> None:
    """Raise ValueError naming `where` unless `m` is uint8 holding only LEVELS values."""
    m = np.asarray(m)
    if m.dtype != np.uint8:
        raise ValueError(f"{where}: quadmask must be uint8, got {m.dtype}")
    bad = ~_IS_LEVEL[m]
    if bad.any():
        values = np.unique(m[bad])
        raise ValueError(
            f"{where}: quadmask has {int(bad.sum())} pixels outside {LEVELS}, "
            f"values {values[:8].tolist()}{' ...' if len(values) > 8 else ''}"
        )


def resize_mask(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mask resized to size=(height, width) by nearest neighbour; the result only holds LEVELS."""
    m = quantize(m)
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"mask size must be (height, width) >= 1, got {size!r}")
    if m.shape == (h, w):
        return m
    # INTER_NEAREST_EXACT samples pixel centres (plain INTER_NEAREST is shifted by half a pixel).
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def read_mask_frames(path, start: int = 0, count: int | None = None,
                     size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Quantized (H, W) uint8 masks from an 8-bit mask movie or sequence (RGB or gray).

    Frames [start, start+count) as in media.read_frames (count None: to the end). Masks with more
    than 8 bits per sample are refused (MediaError naming the file): their scale is ambiguous.
    """
    frames = media.iter_frames(path, start, count, None, layout=media.SINGLE, require_8bit=True)
    return (resize_mask(f, size) if size is not None else quantize(f) for f in frames)


COLOURS = {REMOVE: (255, 40, 40), OVERLAP: (230, 0, 230), AFFECTED: (255, 190, 0)}  # for people: red, magenta, amber


def overlay(frame: np.ndarray, quadmask: np.ndarray, alpha: float = 0.45, grid=None,
            label: str | None = None) -> np.ndarray:
    """RGB frame with the quadmask's levels tinted (and a grid with row_bounds/col_bounds, and a label, when given)."""
    h, w = frame.shape[:2]
    q = resize_mask(quadmask, (h, w))
    out = frame.astype(np.float32)
    for level, colour in COLOURS.items():
        m = q == level
        if m.any():
            out[m] = (1 - alpha) * out[m] + alpha * np.array(colour, np.float32)
    out = out.astype(np.uint8)
    edge = cv2.morphologyEx((q <= OVERLAP).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edge] = (255, 255, 255)
    if grid is not None:
        for y in grid.row_bounds(h)[1:-1]:
            cv2.line(out, (0, int(y)), (w - 1, int(y)), (90, 90, 90), 1)
        for x in grid.col_bounds(w)[1:-1]:
            cv2.line(out, (int(x), 0), (int(x), h - 1), (90, 90, 90), 1)
    if label:
        scale = max(0.4, max(h, w) / 1600)
        cv2.putText(out, label, (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_quadmask(path, frames: Iterable[np.ndarray], rate, first_frame: int = 1001) -> int:
    """Lossless gray quadmask: FFV1 .mkv, or a gray PNG sequence when `path` is a '#'/printf pattern.

    Every frame must be (H, W) uint8 with only LEVELS values (ValueError naming file and frame).
    The .mkv is written atomically; in a sequence each PNG is. Returns the frame count.
    `rate` is stored in the movie; a PNG sequence carries none. `first_frame` numbers PNG sequences.
    """
    name = Path(path).name

    def checked():
        for i, m in enumerate(frames):
            m = np.asarray(m)
            if m.ndim != 2:
                raise ValueError(f"{path}, frame {i}: a quadmask frame is (H, W), got shape {m.shape}")
            check_levels(m, f"{path}, frame {i}")
            yield m

    if "#" in name or "%" in name:
        return media.write_png_sequence(path, checked(), first_frame=first_frame)
    return media.write_video_lossless(path, checked(), rate)


__all__ = [
    "LEVELS", "REMOVE", "OVERLAP", "AFFECTED", "KEEP", "MediaError",
    "quantize", "check_levels", "resize_mask", "read_mask_frames", "write_quadmask", "overlay", "COLOURS",
]
