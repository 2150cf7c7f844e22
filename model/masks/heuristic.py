"""HeuristicReasoner: the offline affected region, for when Gemini is not configured or keeps failing.

void_masks.md 7.2, tier 2: a contact/shadow band below and beside the object, plus regions whose
change over time follows the object (frame differences after global-motion compensation, and on a
locked-off camera the difference to the temporal median background), kept only where they connect
to the object's neighbourhood, all gridified. It knows nothing of what things are (a held cup that
would fall is not predicted), so its results are always marked degraded.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import cv2
import numpy as np

from model.masks.frames import working_size
from model.masks.grid import Grid
from model.masks.reasoning import AffectedObject, Reasoning, ReasonInput, ReasonResult

log = logging.getLogger(__name__)


def _gray_small(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if g.shape != size:
        g = cv2.resize(g, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g.astype(np.float32), (0, 0), 1.0)


def _global_motion(g0: np.ndarray, g1: np.ndarray, exclude: np.ndarray) -> np.ndarray | None:
    """2x3 similarity mapping frame t-1 onto frame t from background features, or None."""
    mask = (~exclude).astype(np.uint8) * 255
    p0 = cv2.goodFeaturesToTrack(g0.astype(np.uint8), 300, 0.01, 6, mask=mask)
    if p0 is None or len(p0) < 12:
        return None
    p1, st, _ = cv2.calcOpticalFlowPyrLK(g0.astype(np.uint8), g1.astype(np.uint8), p0, None, winSize=(21, 21),
                                         maxLevel=3)
    good = st.ravel() == 1
    if good.sum() < 12:
        return None
    m, inliers = cv2.estimateAffinePartial2D(p0[good], p1[good], method=cv2.RANSAC, ransacReprojThreshold=1.5)
    if m is None or inliers is None or inliers.sum() < 10:
        return None
    return m


def _robust_threshold(d: np.ndarray, valid: np.ndarray, floor: float, k: float) -> float:
    v = d[valid]
    if v.size < 100:
        return float("inf")
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    return max(floor, med + k * mad)


def _coupled(active_cells: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Connected groups (8-neighbour, in cell space) of active cells that touch `near`."""
    if not active_cells.any():
        return active_cells
    n, lab = cv2.connectedComponents(active_cells.astype(np.uint8), connectivity=8)
    ids = np.unique(lab[active_cells & near])
    ids = ids[ids > 0]
    return np.isin(lab, ids) if len(ids) else np.zeros_like(active_cells)


class HeuristicReasoner:
    """Offline affected region: contact/shadow band + change that follows the object; degraded.

    ring_cells / ring_radius: band width = max(ring_cells x a cell, ring_radius x the object's radius).
    below_and_beside: keep the band only from the object's top edge down (shadows and contacts fall
        below or beside; set False for overhead light or wall shadows).
    motion: add regions whose frame-to-frame change (after global-motion compensation) or, on a
        locked-off camera, difference to the temporal median background, connects to the object's
        neighbourhood (within `near_cells` cells of the object or its band).
    long_side: analysis resolution. min_cell_fraction: a cell counts as changed above this fraction.
    """

    name = "heuristic"

    def __init__(self, ring_cells: float = 0.5, ring_radius: float = 0.6, below_and_beside: bool = True,
                 motion: bool = True, near_cells: int = 1, long_side: int = 320, min_cell_fraction: float = 0.03,
                 threshold_k: float = 5.0, threshold_floor: float = 6.0, window: int = 1):
        self.ring_cells, self.ring_radius, self.below_and_beside = ring_cells, ring_radius, below_and_beside
        self.motion, self.near_cells, self.long_side = motion, near_cells, long_side
        self.min_cell_fraction, self.threshold_k, self.threshold_floor = min_cell_fraction, threshold_k, threshold_floor
        self.window = window

    def reason(self, inp: ReasonInput, store=None) -> ReasonResult:
        """The band and the coupled motion as degraded reasoning (`store` is unused: nothing to cache)."""
        t0 = time.perf_counter()
        n, grid = len(inp.frames), inp.grid
        size = working_size(*inp.frames.size, self.long_side)
        size = (max(size[0], grid.rows), max(size[1], grid.cols))
        # Per-frame work streams over the shot: only (T, rows, cols) cell arrays are kept.
        band_cells = np.zeros((n, grid.rows, grid.cols), bool)
        near = np.zeros_like(band_cells)
        for t in range(n):
            m = self._small_mask(inp.masks[t], size)
            ring = self._ring(m, grid, size)
            band_cells[t] = grid.gridify(ring)
            near[t] = grid.dilate(grid.gridify(m | ring), self.near_cells)
        details: dict[str, Any] = {"analysis_size": list(size)}
        motion_cells = np.zeros_like(band_cells)
        if self.motion and n > 1:
            motion_cells, info = self._motion_cells(inp, near, size)
            details.update(info)
        objects = [AffectedObject(
            noun="contact and shadow band", category="visual_artifact",
            why="offline heuristic: the area below and beside the object where shadows and contacts fall",
            localizations={t: [tuple(map(int, c)) for c in np.argwhere(band_cells[t])] for t in range(n)})]
        if motion_cells.any():
            objects.append(AffectedObject(
                noun="change that follows the object", category="visual_artifact",
                why="offline heuristic: regions that change while connected to the object's neighbourhood",
                localizations={t: [tuple(map(int, c)) for c in np.argwhere(motion_cells[t])] for t in range(n)}))
        reasoning = Reasoning(grid.rows, grid.cols, n, objects, source="heuristic",
                              warnings=["offline heuristic: no semantic reasoning (held or knocked objects that "
                                        "would move are not predicted)"])
        details["band_cells"] = int(band_cells.sum())
        details["motion_cells"] = int(motion_cells.sum())
        latency = time.perf_counter() - t0
        log.info("heuristic reasoning: %d frames in %.2fs (%s camera)", n, latency, details.get("camera", "?"))
        return ReasonResult(reasoning, "heuristic", degraded=True, reason="offline heuristic (no VLM reasoning)",
                            latency_s=latency, details=details)

    @staticmethod
    def _small_mask(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if m.shape == size:
            return m
        return cv2.resize(m.astype(np.uint8) * 255, (size[1], size[0]), interpolation=cv2.INTER_AREA) > 0

    def _ring(self, m: np.ndarray, grid: Grid, size: tuple[int, int]) -> np.ndarray:
        area = int(m.sum())
        if area == 0:
            return m
        cell = min(size[0] / grid.rows, size[1] / grid.cols)
        r = max(self.ring_cells * cell, self.ring_radius * np.sqrt(area / np.pi))
        r = max(1, int(round(r)))
        ring = (cv2.dilate(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0) & ~m
        if self.below_and_beside:
            top = int(np.nonzero(m.any(axis=1))[0][0])
            ring[:top] = False
        return ring

    def _active(self, d: np.ndarray, valid: np.ndarray, grid: Grid) -> np.ndarray:
        thr = _robust_threshold(d, valid, self.threshold_floor, self.threshold_k)
        active = (d > thr) & valid
        active = cv2.morphologyEx(active.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        return grid.gridify(active, self.min_cell_fraction)

    def _motion_cells(self, inp: ReasonInput, near: np.ndarray, size):
        frames, grid = inp.frames, inp.grid
        n = len(frames)
        h, w = size
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

        def zone(t):  # the object (and its soft edge) changes by definition: not evidence
            return cv2.dilate(self._small_mask(inp.masks[t], size).astype(np.uint8), ker) > 0

        cells = np.zeros((n, grid.rows, grid.cols), bool)
        shifts = []
        # (b) frame-to-frame change after global-motion compensation, connected to the object
        g_prev, z_prev = _gray_small(frames[0], size), zone(0)
        for t in range(1, n):
            g, z = _gray_small(frames[t], size), zone(t)
            m = _global_motion(g_prev, g, z_prev | z)
            shifts.append(np.inf if m is None else float(np.hypot(m[0, 2], m[1, 2]) + abs(m[0, 1]) * max(h, w)))
            if m is not None:
                prev = cv2.warpAffine(g_prev, m, (w, h), flags=cv2.INTER_LINEAR)
                valid = cv2.warpAffine(np.ones((h, w), np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
                valid = (cv2.erode(valid.astype(np.uint8), ker) > 0) & ~(z | z_prev)
                c = _coupled(self._active(np.abs(g - prev), valid, grid), near[t] | near[t - 1])
                cells[t] |= c
                cells[t - 1] |= c
            g_prev, z_prev = g, z
        shifts = np.array(shifts)
        static = bool(np.all(np.isfinite(shifts)) and np.median(shifts) < 0.2 and shifts.max() < 0.6)
        # (c) locked-off camera: difference to the temporal median background, near the object
        if static:
            sample = np.unique(np.linspace(0, n - 1, min(n, 31)).round().astype(int))
            bg = np.median(np.stack([_gray_small(frames[t], size) for t in sample]), axis=0)
            for t in range(n):
                c = self._active(np.abs(_gray_small(frames[t], size) - bg), ~zone(t), grid)
                cells[t] |= _coupled(c, near[t])
        if self.window > 0:
            out = cells.copy()
            for dt in range(1, self.window + 1):
                out[dt:] |= cells[:-dt]
                out[:-dt] |= cells[dt:]
            cells = out
        return cells, {"camera": "static" if static else "moving",
                       "median_shift_px": round(float(np.median(shifts)), 3)}
