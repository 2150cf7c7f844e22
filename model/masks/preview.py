"""Artist review of a quadmask: an overlay preview movie and a contact sheet of stills.

Colours: remove (0) red, overlap (63) magenta, affected (127) amber, keep (255) untouched; the
grid is drawn faintly so the cell-aligned grey reads as intended. Previews are small (long side
960 by default) H.264 .mp4 for any player, or lossless FFV1 .mkv.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from model.masks.grid import Grid
from shots.media import write_h264, write_video_lossless
from shots.quadmask import overlay
from storage.atomic import atomic_path

def _preview_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    s = min(1.0, long_side / max(h, w))
    return max(2, int(round(h * s / 2)) * 2), max(2, int(round(w * s / 2)) * 2)


def write_preview(plate_frames: Iterable[np.ndarray], quadmask_frames: Iterable[np.ndarray], path, rate, *,
                  long_side: int = 960, grid: Grid | None = None, first_label: int = 0) -> int:
    """Overlay preview movie (.mp4 H.264 or .mkv lossless) of plate + quadmask, frame by frame.

    Frames are paired in order (plate frame i with mask frame i) and labelled with shot frame
    numbers from `first_label`. Returns the frame count; the two inputs must be equally long.
    """
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise ValueError(f"{path}: a preview is .mp4/.mov (H.264) or .mkv (lossless FFV1)")
    path.parent.mkdir(parents=True, exist_ok=True)

    def frames():
        masks = iter(quadmask_frames)
        i = -1
        for i, plate in enumerate(plate_frames):
            q = next(masks, None)
            if q is None:
                raise ValueError(f"{path}: the quadmask has {i} frames, fewer than the plate")
            h, w = _preview_size(*plate.shape[:2], long_side)
            small = cv2.resize(plate, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != plate.shape[:2] else plate
            yield overlay(small, q, grid=grid, label=f"frame {first_label + i}")
        if next(masks, None) is not None:
            raise ValueError(f"{path}: the quadmask has more frames than the plate ({i + 1})")

    if path.suffix.lower() == ".mkv":
        return write_video_lossless(path, frames(), rate)
    return write_h264(path, frames(), rate)


def contact_sheet(stills: list[tuple[int, np.ndarray, np.ndarray]], columns: int = 4, tile_width: int = 480,
                  grid: Grid | None = None) -> np.ndarray:
    """One RGB image tiling (frame number, plate, quadmask) overlays, `columns` per row."""
    if not stills:
        raise ValueError("a contact sheet needs at least one still")
    tiles = []
    for idx, plate, q in stills:
        h, w = plate.shape[:2]
        th = max(2, int(round(h * tile_width / w)))
        small = cv2.resize(plate, (tile_width, th), interpolation=cv2.INTER_AREA)
        tiles.append(overlay(small, q, grid=grid, label=f"frame {idx}"))
    th = max(t.shape[0] for t in tiles)
    pad = 4
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * (th + pad) + pad, columns * (tile_width + pad) + pad, 3), 24, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = pad + r * (th + pad), pad + c * (tile_width + pad)
        sheet[y:y + t.shape[0], x:x + t.shape[1]] = t
    return sheet


def write_contact_sheet(plate_frames: Iterable[np.ndarray], quadmask_frames: Iterable[np.ndarray], n_frames: int,
                        path, count: int = 8, columns: int = 4, tile_width: int = 480,
                        grid: Grid | None = None) -> list[int]:
    """A PNG/JPEG contact sheet of `count` frames spread over the shot; returns the frame numbers."""
    picks = sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, min(count, n_frames))})
    want = set(picks)
    stills = []
    for i, (plate, q) in enumerate(zip(plate_frames, quadmask_frames)):
        if i in want:
            stills.append((i, np.asarray(plate), np.asarray(q)))
        if i >= picks[-1]:
            break
    sheet = contact_sheet(stills, columns, tile_width, grid)
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write contact sheet {path}")
    return [s[0] for s in stills]
