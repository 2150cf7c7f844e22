"""VOID's reasoning grid: `min_grid` cells on the short side, cells grey as a whole.

Matches the reference (void_masks.md 3.2): landscape rows = min_grid, cols = max(min_grid,
round(min_grid * w / h)) (8x14 for 16:9, 8x15 for 4096x2160, 8x12 for 544x360), portrait the
transpose; cell (r, c) spans rows [floor(r*H/rows), floor((r+1)*H/rows)) and likewise for columns,
0-based from the top left. The grid depends only on the aspect ratio, so the same (row, col) names
the same part of the picture at working and at source resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    rows: int
    cols: int

    @classmethod
    def for_size(cls, height: int, width: int, min_grid: int = 8) -> Grid:
        if min_grid < 1:
            raise ValueError(f"min_grid must be >= 1, got {min_grid}")
        if width >= height:
            return cls(min_grid, max(min_grid, int(round(min_grid * width / height))))
        return cls(max(min_grid, int(round(min_grid * height / width))), min_grid)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    def row_bounds(self, height: int) -> np.ndarray:
        """rows + 1 pixel boundaries; cell r spans [b[r], b[r+1])."""
        return (np.arange(self.rows + 1) * height) // self.rows

    def col_bounds(self, width: int) -> np.ndarray:
        return (np.arange(self.cols + 1) * width) // self.cols

    def _check(self, size: tuple[int, int]) -> None:
        if size[0] < self.rows or size[1] < self.cols:
            raise ValueError(f"a {size[0]}x{size[1]} picture is smaller than the {self.rows}x{self.cols} grid")

    def gridify(self, mask: np.ndarray, min_fraction: float = 0.0) -> np.ndarray:
        """(rows, cols) bool: cells holding any true pixel (or more than `min_fraction` of the cell)."""
        mask = np.asarray(mask, bool)
        self._check(mask.shape)
        rb, cb = self.row_bounds(mask.shape[0]), self.col_bounds(mask.shape[1])
        counts = np.add.reduceat(np.add.reduceat(mask.astype(np.int32), rb[:-1], axis=0), cb[:-1], axis=1)
        if min_fraction <= 0:
            return counts > 0
        area = np.diff(rb)[:, None] * np.diff(cb)[None, :]
        return counts > min_fraction * area

    def cells_to_mask(self, cells: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(H, W) bool with every true cell filled."""
        cells = np.asarray(cells, bool)
        if cells.shape != self.shape:
            raise ValueError(f"cells are {cells.shape}, the grid is {self.shape}")
        self._check(size)
        out = np.repeat(cells, np.diff(self.row_bounds(size[0])), axis=0)
        return np.repeat(out, np.diff(self.col_bounds(size[1])), axis=1)

    def cell_of(self, x: float, y: float, size: tuple[int, int]) -> tuple[int, int]:
        """(row, col) of pixel (x, y) in a picture of size=(h, w)."""
        r = int(np.searchsorted(self.row_bounds(size[0]), y, side="right") - 1)
        c = int(np.searchsorted(self.col_bounds(size[1]), x, side="right") - 1)
        return min(max(r, 0), self.rows - 1), min(max(c, 0), self.cols - 1)

    def dilate(self, cells: np.ndarray, radius: int = 1) -> np.ndarray:
        """Cells within Chebyshev distance `radius` of a true cell."""
        cells = np.asarray(cells, bool)
        out = cells.copy()
        for dr in range(-radius, radius + 1):
            for dc in range(-radius, radius + 1):
                if dr == 0 and dc == 0:
                    continue
                src = cells[max(0, -dr):self.rows - max(0, dr), max(0, -dc):self.cols - max(0, dc)]
                out[max(0, dr):self.rows - max(0, -dr), max(0, dc):self.cols - max(0, -dc)] |= src
        return out
