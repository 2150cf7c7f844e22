"""Region of interest: where in the plate the model works, and how model pixels map back.

VOID sees 384x672. A small object in a 4K plate would be thrown away by a 5.7x downscale, so when
the removal region plus a context margin is much smaller than the frame we crop a 1.75:1 window
around it at full resolution and work on that; otherwise the whole frame is squeezed to 672x384
(1920x1080 is 1.778:1, a 1.6% squeeze undone on the way back with separate x/y factors).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL_HEIGHT, MODEL_WIDTH = 384, 672
MODEL_SIZE = (MODEL_HEIGHT, MODEL_WIDTH)


@dataclass(frozen=True)
class Box:
    """Pixel box [x0, x1) x [y0, y1) in source pixels."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def is_full(self, width: int, height: int) -> bool:
        return (self.x0, self.y0, self.x1, self.y1) == (0, 0, width, height)


def region_bbox(mask: np.ndarray) -> Box | None:
    """Bounding box of the True pixels of a (H, W) bool mask, None when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return Box(int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


def choose_roi(region: Box | None, width: int, height: int, margin: float = 0.5, min_context: int = 48,
               crop_below: float = 0.5, model_size: tuple[int, int] = MODEL_SIZE) -> Box:
    """The window to work on: a 1.75:1 crop around `region` + margin, or the whole frame.

    The crop is used only when its area is under `crop_below` of the frame; it is never smaller
    than the model's own size (no upsampling of the plate), and it stays inside the frame.
    """
    full = Box(0, 0, width, height)
    if region is None:
        return full
    mh, mw = model_size
    aspect = mw / mh
    pad_x = max(min_context, int(region.width * margin))
    pad_y = max(min_context, int(region.height * margin))
    w = region.width + 2 * pad_x
    h = region.height + 2 * pad_y
    # grow to the model's aspect, then to at least the model's size
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    if w < mw:
        w, h = mw, mh
    w, h = int(np.ceil(w)), int(np.ceil(h))
    if w >= width or h >= height or w * h >= crop_below * width * height:
        return full
    cx = (region.x0 + region.x1) / 2
    cy = (region.y0 + region.y1) / 2
    x0 = int(round(min(max(cx - w / 2, 0), width - w)))
    y0 = int(round(min(max(cy - h / 2, 0), height - h)))
    return Box(x0, y0, x0 + w, y0 + h)
