"""Stitching chunk results and compositing them into the full-resolution plate.

Chunks overlap; each frame is a weighted mix of the chunks holding it, each chunk's weight
falling linearly towards its own ends, so seams cross-fade instead of jumping. The clean result
(model resolution, inside the ROI) is scaled back to plate pixels and laid over the decoded
source through an alpha that is 1 inside the removal+affected region and falls to exactly 0 a
feather width outside it: every pixel beyond that is the source pixel, bit for bit.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from shots.plan import Chunk
from shots.roi import Box, region_bbox

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


def area_resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 RGB resized the way VOID's reference prepares its input, which the model was trained on:
    `torch.nn.functional.interpolate(mode="area")` of the float RGB frame (adaptive average pooling:
    box filtering when shrinking, no aspect kept), rounded back to 8-bit codes."""
    import torch

    if frame.shape[:2] == (height, width):
        return frame
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    y = torch.nn.functional.interpolate(x, size=(height, width), mode="area")
    return y[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def alpha_in_box(mask_roi: np.ndarray, feather: float) -> tuple[Box, np.ndarray] | None:
    """(box, alpha) where the feathered alpha can be non-zero, in ROI pixels; None when nothing is removed."""
    region = region_bbox(mask_roi != KEEP)
    if region is None:
        return None
    pad = int(np.ceil(feather)) + 1
    h, w = mask_roi.shape
    box = Box(max(0, region.x0 - pad), max(0, region.y0 - pad), min(w, region.x1 + pad), min(h, region.y1 + pad))
    return box, feather_alpha(mask_roi[box.slices()], feather)


def composite(source: np.ndarray, clean_model: np.ndarray, mask_roi: np.ndarray, roi: Box,
              feather: float, from_model: Callable[[np.ndarray, np.dtype], np.ndarray] | None = None) -> np.ndarray:
    """`source` with the clean result laid over `roi` through the feathered quadmask `mask_roi`.

    `source` is at the plate's precision (uint8, uint16 or float32); `clean_model` is the backend's
    8-bit display RGB, which `from_model(pixels, dtype)` turns into the plate's units (the colour
    pipeline's inverse; None: 8-bit codes as they are). Only the box around the removal region plus
    the feather is touched: the alpha, the blend and the copy happen there, so a small object in a
    4K plate costs little; every other pixel is the source's, untouched.
    """
    out = source.copy()
    found = alpha_in_box(mask_roi, feather)
    if found is None:
        return out
    box, alpha = found
    clean = resize_rgb(clean_model, roi.width, roi.height)[box.slices()]
    clean = from_model(clean, source.dtype) if from_model is not None else clean.astype(np.float32)
    sl = (slice(roi.y0 + box.y0, roi.y0 + box.y1), slice(roi.x0 + box.x0, roi.x0 + box.x1))
    src = source[sl]
    a = alpha[..., None]
    blended = src.astype(np.float32) * (1.0 - a) + clean * a
    if source.dtype.kind == "u":
        blended = np.clip(np.rint(blended), 0, np.iinfo(source.dtype).max)
    out[sl] = np.where(alpha[..., None] > 0, blended.astype(source.dtype), src)
    return out


def crop_resize(frame: np.ndarray, roi: Box, size: tuple[int, int]) -> np.ndarray:
    """The ROI of a source frame at model size (height, width), area-scaled as the reference does."""
    return area_resize(frame[roi.slices()], size[1], size[0])
