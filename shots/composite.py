"""Stitching chunk results and compositing them into the full-resolution plate.

Chunks overlap; each frame is a weighted mix of the chunks holding it, each chunk's weight
falling linearly towards its own ends, so seams cross-fade instead of jumping. The clean result
(model resolution, inside the ROI) is scaled back to plate pixels and laid over the decoded
source through an alpha that is 1 inside the removal+affected region and falls to exactly 0 a
feather width outside it: every pixel beyond that is the source pixel, bit for bit.
"""
from __future__ import annotations

import cv2
import numpy as np

from shots.plan import Chunk
from shots.roi import Box

KEEP = 255


def chunk_weights(chunks: list[Chunk], frame: int) -> list[tuple[int, float]]:
    """(chunk index, weight) for the chunks holding shot frame `frame`; weights sum to 1."""
    holding = [(c.index, float(min(frame - c.start + 1, c.end - frame))) for c in chunks
               if c.start <= frame < c.end]
    if not holding:
        raise ValueError(f"no chunk holds frame {frame}")
    total = sum(w for _, w in holding)
    return [(i, w / total) for i, w in holding]


def feather_alpha(quadmask: np.ndarray, feather: float) -> np.ndarray:
    """Float32 alpha: 1 where the quadmask is not keep, a smooth ramp to exactly 0 `feather` px outside."""
    region = quadmask != KEEP
    if not region.any():
        return np.zeros(quadmask.shape, np.float32)
    if feather <= 0:
        return region.astype(np.float32)
    dist = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 5)
    x = np.clip(1.0 - dist / float(feather), 0.0, 1.0)
    alpha = (x * x * (3.0 - 2.0 * x)).astype(np.float32)  # smoothstep: no visible edge at either end
    alpha[dist >= feather] = 0.0
    return alpha


def resize_rgb(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area when shrinking, bicubic when growing (the model result back to plate pixels)."""
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    interp = cv2.INTER_AREA if width <= w and height <= h else cv2.INTER_CUBIC
    return cv2.resize(frame, (width, height), interpolation=interp)


def composite(source: np.ndarray, clean_model: np.ndarray, alpha_roi: np.ndarray, roi: Box) -> np.ndarray:
    """`source` with the clean result laid over `roi` through `alpha_roi` (ROI-sized float alpha)."""
    out = source.copy()
    sl = roi.slices()
    src = source[sl]
    touched = alpha_roi > 0
    if not touched.any():
        return out
    clean = resize_rgb(clean_model, roi.width, roi.height)
    a = alpha_roi[..., None]
    blended = np.clip(np.rint(src.astype(np.float32) * (1.0 - a) + clean.astype(np.float32) * a), 0, 255)
    out[sl] = np.where(touched[..., None], blended.astype(np.uint8), src)
    return out


def crop_resize(frame: np.ndarray, roi: Box, size: tuple[int, int]) -> np.ndarray:
    """The ROI of a source frame at model size (height, width), area-scaled."""
    return resize_rgb(np.ascontiguousarray(frame[roi.slices()]), size[1], size[0])
