"""Native detail: the removal region filled at the plate's own resolution, not scaled up from 384x672.

Why: the backends work at model size; scaled into a 4K plate their pixels are soft and the removed
object's outline comes back stair-stepped at the 672x384 pitch. Wherever the background behind the
object is seen in some frame of the shot, the real pixels, carried along the camera's motion at
full resolution (`model.native_fill`), beat any generated ones. So, per pixel of the region:

- classical backend: the native fill everywhere: propagated where the background is revealed,
  texture-synthesised once and regrained where it never is. The affected region (127) is
  regenerated from background like the rest: right for shadows and reflections, wrong for objects
  that should move differently (only VOID re-simulates).
- VOID: the native fill where the background is revealed and the quadmask says remove (0, 63);
  VOID's own pixels where nothing is ever revealed and in the affected region (127), where the scene
  changes because the object is gone: the physics VOID exists for. The choice is feathered, so the
  two meet without a seam.

This module holds what the conform and QC need of it (the grown region, the windows, the shares);
the fill itself is `model.native_detail`. The remove region grows by `margin` plate pixels first, so
the object's edges do not survive. The shot is filled in windows of at most a memory budget's worth
of ROI frames at the plate's precision; overlapping windows cross-fade as chunks do. The share of
the region taken from each source is counted for the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from shots.plan import MAX_FRAMES, Chunk, plan_chunks
from shots.quadmask import KEEP, REMOVE, grow_remove

DETAILS = ("native", "model")
MARGIN_PX = 3  # plate pixels the remove region grows by: the object's anti-aliased edge goes with it
WINDOW_BYTES = 2 << 30  # ROI frames of one window at the plate's precision (the fill holds a few copies)
MIN_WINDOW, OVERLAP = 16, 8


@dataclass(frozen=True)
class DetailShare:
    """Fractions of the region's pixels (over all frames) taken from each source; they sum to 1."""

    propagated: float  # real background, carried at plate resolution from frames that reveal it
    synthesized: float  # never revealed: texture-synthesised at plate resolution (classical)
    generated: float  # the backend's model-size output, scaled up (VOID; everything with --detail model)


def region_mask(mask: np.ndarray, margin: int = MARGIN_PX) -> np.ndarray:
    """The quadmask with the remove region grown by `margin` px (grown pixels become remove, 0).

    What the composite and QC use with native detail: the fill replaces the object's edge too.
    """
    return np.where(grow_remove(mask, margin) & (mask == KEEP), np.uint8(REMOVE), mask)


def windows(frames: int, height: int, width: int, itemsize: int, budget: int = WINDOW_BYTES) -> list[Chunk]:
    """Windows of the shot whose ROI frames fit `budget` bytes, consecutive ones overlapping OVERLAP frames."""
    fit = budget // max(1, height * width * 3 * itemsize)
    return plan_chunks(frames, max(MIN_WINDOW, min(MAX_FRAMES, int(fit))), OVERLAP)


class RegionFill(Protocol):
    """What the conform asks of a native-detail fill (`model.native_detail.NativeDetail` is one)."""

    version: str  # what decides its pixels, for render keys

    def clean(self, t: int, model_clean: np.ndarray | None, from_model: Callable, mask_roi: np.ndarray) -> np.ndarray:
        """ROI-sized float32 clean frame `t` in the plate's units."""

    def share(self) -> DetailShare | None:
        """Where the region's pixels came from so far."""
