"""Native detail's fill: the removal region at plate resolution, window by window, as the conform walks.

Why here: it drives `model.native_fill` over the prepared shot's plate (at its precision, through the
shot's colour pipeline for the motion guide) and mixes the backend's own pixels back in where they
are needed (`shots.detail` says why, and what the conform and QC ask of it).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from model import native_fill
from shots.composite import chunk_weights, resize_rgb
from shots.detail import MARGIN_PX, DetailShare, windows
from shots.extract import PreparedShot, plate_frames
from shots.plan import Chunk
from shots.quadmask import AFFECTED, KEEP


def version(margin: int = MARGIN_PX) -> str:
    """What decides native-detail pixels, for render keys: the fill's version and options, the margin."""
    return native_fill.version(margin=margin)


class NativeDetail:
    """The clean ROI at plate resolution for shot frames in order, holding at most the windows in use.

    `generated`: the backend generates (VOID), so its pixels stay where nothing is revealed and in the
    affected region; otherwise (classical) the native fill is used everywhere.
    """

    def __init__(self, prepared: PreparedShot, generated: bool, margin: int = MARGIN_PX, feather: float = 2.0,
                 progress: Callable[[str], None] | None = None):
        self.prepared, self.generated, self.margin, self.feather = prepared, generated, margin, feather
        self.version = version(margin)
        roi, sample = prepared.roi, np.dtype(prepared.plate.sample)
        self.windows = windows(prepared.shot.frames, roi.height, roi.width, sample.itemsize)
        self._loaded: dict[int, native_fill.NativeFill] = {}
        self._say = progress or (lambda message: None)
        self._counts = np.zeros(3)  # propagated, synthesized, generated pixels

    def clean(self, t: int, model_clean: np.ndarray | None, from_model, mask_roi: np.ndarray) -> np.ndarray:
        """ROI-sized float32 clean frame `t` in plate units; `model_clean` is the backend's 8-bit output for it."""
        fill, revealed = self._frame(t)
        region = mask_roi != KEEP
        if not self.generated or model_clean is None:
            self._count(region, revealed, generated=None)
            return fill
        roi = self.prepared.roi
        model = from_model(resize_rgb(model_clean, roi.width, roi.height), np.dtype(self.prepared.plate.sample))
        native = revealed * (mask_roi != AFFECTED)  # the affected region is VOID's to re-simulate
        native[~region] = 1.0  # outside the region both are the plate: keep the plate's own pixels
        if self.feather > 0:
            native = cv2.GaussianBlur(native, (0, 0), self.feather)
            native[~region] = 1.0
        self._count(region, revealed, generated=1.0 - native)
        return model + (fill - model) * native[..., None]

    def share(self) -> DetailShare | None:
        """Where the region's pixels came from so far; None before any frame with a region."""
        total = self._counts.sum()
        if total == 0:
            return None
        p, s, g = (self._counts / total).tolist()
        return DetailShare(round(p, 4), round(s, 4), round(g, 4))

    def _count(self, region: np.ndarray, revealed: np.ndarray, generated: np.ndarray | None) -> None:
        if generated is None:
            self._counts += [np.count_nonzero(revealed[region] >= 0.5), np.count_nonzero(revealed[region] < 0.5), 0]
            return
        g = float(generated[region].sum())
        self._counts += [float(region.sum()) - g, 0.0, g]

    def _frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(fill float32 ROI frame, revealed weight 0..1) of shot frame `t`, cross-faded between windows."""
        weights = chunk_weights(self.windows, t)
        for i in [i for i in self._loaded if self.windows[i].end <= t]:
            del self._loaded[i]
        fill = revealed = None
        for i, w in weights:
            if i not in self._loaded:
                self._loaded[i] = self._fill_window(self.windows[i])
            f = self._loaded[i]
            k = t - self.windows[i].start
            part, seen = f.frames[k].astype(np.float32) * w, f.revealed[k].astype(np.float32) * w
            fill, revealed = (part, seen) if fill is None else (fill + part, revealed + seen)
        return fill, revealed

    def _fill_window(self, window: Chunk) -> native_fill.NativeFill:
        prepared, roi = self.prepared, self.prepared.roi
        shot = prepared.shot
        self._say(f"shot {shot.shot_id}: native detail, frames {window.start}-{window.end - 1} "
                  f"at {roi.width}x{roi.height}")
        colour = prepared.colour
        frames = np.stack([np.ascontiguousarray(f[roi.slices()])
                           for f in plate_frames(shot, prepared.plate, window.start, window.frames)])
        guide = np.stack([colour.to_model(f) for f in frames])  # motion is estimated on what people see
        masks = np.stack([m[roi.slices()] for m in prepared.mask_frames(window.start, window.frames)])
        return native_fill.fill_native(frames, masks, guide=guide, margin=self.margin)

