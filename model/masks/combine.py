"""Reasoning -> grey cells per frame, and VOID's combine rule -> quadmask frames.

Rasterizing (VOID's released stage 3 ignores everything but the nouns, void_masks.md 4.4; this
writes the rasterizer the prompt's fields call for):
- localizations (per keyframe cells): a frame between two keyframes takes the union of both
  (over-masking between them rather than guessing); before the first / after the last keyframe the
  nearest one is held; nothing before `first_appears_frame`.
- trajectory (will_move): from its first keyframe (or first_appears_frame) on, a `size_cells` box
  centred on the linearly interpolated centre, unioned with the previous frame's box (swept), held
  after the last keyframe; plus `original_position` (where a knocked object would have stayed).

Combining (void_masks.md 5, stage4_combine_masks.py): per pixel, remove and not affected -> 0,
remove and affected -> 63, affected only -> 127, else 255. Remove stays pixel-accurate, affected
stays cell-aligned, so 63 is exactly "object pixel inside a grey cell". Two knobs the reference
lacks: `dilate_px` grows the remove region (antialiased edges, motion blur), and
`no_affected_on_first_frame` applies the reference's frame-0 rule (127 becomes 255 on frame 0;
63 is kept), which is on by default because VOID was trained without grey on frame 0.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from model.masks.grid import Grid
from model.masks.reasoning import AffectedObject, Reasoning
from shots.quadmask import AFFECTED, KEEP, OVERLAP, REMOVE


def _stamp(cells: np.ndarray, r: float, c: float, size: tuple[int, int]) -> None:
    rows, cols = cells.shape
    sr, sc = size
    r0 = int(np.floor(r - (sr - 1) / 2 + 0.5))
    c0 = int(np.floor(c - (sc - 1) / 2 + 0.5))
    cells[max(0, r0):min(rows, r0 + sr), max(0, c0):min(cols, c0 + sc)] = True


def _localized(obj: AffectedObject, n_frames: int, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros((n_frames, *shape), bool)
    if not obj.localizations:
        return out
    keys = sorted(obj.localizations)
    masks = {}
    for f in keys:
        m = np.zeros(shape, bool)
        for r, c in obj.localizations[f]:
            m[r, c] = True
        masks[f] = m
    idx = np.searchsorted(keys, np.arange(n_frames))  # first keyframe >= t
    for t in range(max(0, obj.first_appears_frame), n_frames):
        i = idx[t]
        if i < len(keys) and keys[i] == t:
            out[t] = masks[t]
        elif i == 0:
            out[t] = masks[keys[0]]
        elif i == len(keys):
            out[t] = masks[keys[-1]]
        else:
            out[t] = masks[keys[i - 1]] | masks[keys[i]]
    return out


def _trajectory(obj: AffectedObject, n_frames: int, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros((n_frames, *shape), bool)
    if obj.original_position is not None:
        for t in range(max(0, obj.first_appears_frame), n_frames):
            _stamp(out[t], *obj.original_position, obj.size_cells)
    if not obj.trajectory:
        return out
    pts = np.array(obj.trajectory, dtype=np.float64)  # (frame, row, col), sorted by frame
    start = max(0, min(obj.first_appears_frame, int(pts[0, 0])))
    prev = None
    for t in range(start, n_frames):
        r = float(np.interp(t, pts[:, 0], pts[:, 1]))
        c = float(np.interp(t, pts[:, 0], pts[:, 2]))
        cur = np.zeros(shape, bool)
        _stamp(cur, r, c, obj.size_cells)
        out[t] |= cur | (prev if prev is not None else False)
        prev = cur
    return out


def rasterize(reasoning: Reasoning, n_frames: int | None = None) -> np.ndarray:
    """(T, rows, cols) bool: the grey cells of every shot frame."""
    n = reasoning.n_frames if n_frames is None else n_frames
    shape = (reasoning.rows, reasoning.cols)
    cells = np.zeros((n, *shape), bool)
    for obj in reasoning.objects:
        cells |= _localized(obj, n, shape)
        if obj.will_move or obj.original_position is not None:
            cells |= _trajectory(obj, n, shape)
    return cells


def default_dilation(height: int, width: int) -> int:
    """Remove-region growth in source pixels: about 1% of the short side (2 px at 216, 22 px at 2160)."""
    return max(2, int(round(min(height, width) / 96)))


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """`mask` grown by a disc of radius `px` (computed around the mask's bounding box only: a 45 px
    disc over a whole 4K frame costs ~0.3 s, over the object's box a few ms)."""
    if px <= 0:
        return mask
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return mask
    h, w = mask.shape
    y0, y1 = max(0, rows[0] - px), min(h, rows[-1] + px + 1)
    x0, x1 = max(0, cols[0] - px), min(w, cols[-1] + px + 1)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    out = np.zeros_like(mask, dtype=bool)
    out[y0:y1, x0:x1] = cv2.dilate(mask[y0:y1, x0:x1].astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT,
                                   borderValue=0) > 0
    return out


def combine(remove: np.ndarray, affected: np.ndarray, first_frame: bool = False,
            no_affected_on_first_frame: bool = True) -> np.ndarray:
    """Quadmask (H, W) uint8 from boolean remove and affected layers (the reference's rule)."""
    remove, affected = np.asarray(remove, bool), np.asarray(affected, bool)
    if remove.shape != affected.shape:
        raise ValueError(f"remove {remove.shape} and affected {affected.shape} layers differ in size")
    q = np.full(remove.shape, KEEP, np.uint8)
    if not (first_frame and no_affected_on_first_frame):
        q[affected] = AFFECTED
    q[remove] = REMOVE
    q[remove & affected] = OVERLAP
    return q


def quadmask_frames(remove_frames: Iterable[np.ndarray], cells: np.ndarray, grid: Grid, size: tuple[int, int],
                    dilate_px: int = 0, no_affected_on_first_frame: bool = True,
                    stats: dict | None = None) -> Iterator[np.ndarray]:
    """Quadmask frames at size=(H, W): remove masks (already at that size) + per-frame grey cells.

    `stats` (optional dict) receives per-level pixel counts and the frame count as frames go by.
    """
    counts = np.zeros(256, np.int64)
    n = 0
    for t, remove in enumerate(remove_frames):
        if t >= len(cells):
            raise ValueError(f"{len(cells)} frames of grey cells but more remove masks")
        remove = np.asarray(remove, bool)
        if remove.shape != tuple(size):
            raise ValueError(f"remove mask {t} is {remove.shape}, expected {tuple(size)}")
        affected = grid.cells_to_mask(cells[t], size) if cells[t].any() else np.zeros(size, bool)
        q = combine(dilate(remove, dilate_px), affected, first_frame=(t == 0),
                    no_affected_on_first_frame=no_affected_on_first_frame)
        if stats is not None:
            counts += np.bincount(q.ravel(), minlength=256)
        n += 1
        yield q
    if stats is not None:
        total = max(1, int(counts.sum()))
        stats.update({"frames": n, "fraction": {str(v): round(float(counts[v]) / total, 6)
                                                for v in (REMOVE, OVERLAP, AFFECTED, KEEP)}})
