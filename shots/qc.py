"""QC of what was delivered: the written files decoded again, their keep region compared with the source.

The promise is that pixels outside the feathered removal+affected region are the plate's own.
Checking the frames in memory before encoding proves nothing about the files on disk (a lossy
codec, a colour conversion or a clipped float plate all change them after that point), so QC
reads the delivered frames back and compares them with a fresh decode of the source, at the
precision both are read at. Every frame is checked in tests (`every=1`); production checks the
first, the last and every Nth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from shots.composite import alpha_in_box
from shots.roi import Box


@dataclass(frozen=True)
class QcReport:
    keep_max_diff: float  # largest change of a keep pixel, in units of `precision`
    frames_checked: int
    precision: str  # '8-bit code', '16-bit code', 'float'


def frames_to_check(n: int, every: int) -> list[int]:
    """Shot frame offsets QC decodes: all when every == 1, else first, last and every Nth."""
    if every < 1:
        raise ValueError(f"QC needs every >= 1, got {every}")
    return sorted({0, n - 1, *range(0, n, every)}) if n else []


def precision_of(frame: np.ndarray) -> str:
    return {np.dtype(np.uint8): "8-bit code", np.dtype(np.uint16): "16-bit code"}.get(frame.dtype, "float")


def at_precision_of(frame: np.ndarray, source: np.ndarray) -> np.ndarray:
    """`frame` at `source`'s precision: rounded to its 8- or 16-bit codes, or float (1.0 = white); never clipped.

    A half-float EXR of an 8-bit plate holds v/255 to 11 bits: at the plate's precision that is v again.
    """
    if frame.dtype == source.dtype:
        return frame
    full = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
    scaled = frame.astype(np.float64) * (full.get(source.dtype, 1.0) / full.get(frame.dtype, 1.0))
    return np.rint(scaled) if source.dtype.kind in "ui" else scaled


def keep_mask(mask: np.ndarray, roi: Box, feather: float) -> np.ndarray:
    """(H, W) bool: pixels of the full frame the composite must leave as the source's."""
    keep = np.ones(mask.shape, bool)
    found = alpha_in_box(mask[roi.slices()], feather)
    if found is not None:
        box, alpha = found
        keep[roi.y0 + box.y0:roi.y0 + box.y1, roi.x0 + box.x0:roi.x0 + box.x1] &= alpha <= 0
    return keep


def keep_difference(source: np.ndarray, delivered: np.ndarray, keep: np.ndarray) -> float:
    """The largest absolute difference over keep pixels (NaN-safe for float frames)."""
    if source.shape != delivered.shape:
        raise ValueError(f"delivered frame is {delivered.shape[:2]}, the source {source.shape[:2]}")
    if not keep.any():
        return 0.0
    if source.dtype == delivered.dtype and source.dtype.kind == "u":  # the common case, 10x cheaper
        return float(cv2.absdiff(source, delivered)[keep].max())
    diff = np.abs(source.astype(np.float64) - delivered.astype(np.float64))[keep]
    return float(np.nanmax(diff)) if diff.size else 0.0


def check_delivery(checked: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], roi: Box,
                   feather: float) -> QcReport:
    """QC over (source frame, delivered frame, quadmask) triples of the checked frames, all full size.

    Both frames are read at their own precision; the delivered one is compared in the source's units,
    so an 8-bit delivery of a 16-bit plate, or a float plate clipped at 1.0, shows as a difference.
    """
    worst, count, precision = 0.0, 0, "8-bit code"
    for src, out, mask in checked:
        precision = precision_of(src)
        worst = max(worst, keep_difference(src, at_precision_of(out, src), keep_mask(mask, roi, feather)))
        count += 1
    return QcReport(worst, count, precision)


def pick(frames: Iterable, offsets: list[int]) -> Iterator:
    """The items of a frame stream at `offsets` (sorted), reading no further than the last one."""
    wanted = iter(offsets)
    target = next(wanted, None)
    for t, frame in enumerate(frames):
        if target is None:
            return
        if t == target:
            yield frame
            target = next(wanted, None)
