"""Artist review of a quadmask: an overlay preview movie and a contact sheet of stills.

Colours: remove (0) red, overlap (63) magenta, affected (127) amber, keep (255) untouched; the
grid is drawn faintly so the cell-aligned grey reads as intended. Previews are small (long side
960 by default) H.264 .mp4 for any player, or lossless FFV1 .mkv.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import cv2
import numpy as np

from model.masks.grid import Grid
from shots.frames import normalize_rate
from shots.media import write_video_lossless
from shots.quadmask import AFFECTED, OVERLAP, REMOVE, resize_mask
from storage.atomic import atomic_path

COLOURS = {REMOVE: (255, 40, 40), OVERLAP: (230, 0, 230), AFFECTED: (255, 190, 0)}


def overlay(frame: np.ndarray, quadmask: np.ndarray, alpha: float = 0.45, grid: Grid | None = None,
            label: str | None = None) -> np.ndarray:
    """RGB frame with the quadmask's levels tinted (and the grid, and a label, when given)."""
    h, w = frame.shape[:2]
    q = resize_mask(quadmask, (h, w))
    out = frame.astype(np.float32)
    for level, colour in COLOURS.items():
        m = q == level
        if m.any():
            out[m] = (1 - alpha) * out[m] + alpha * np.array(colour, np.float32)
    out = out.astype(np.uint8)
    edge = cv2.morphologyEx((q <= OVERLAP).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edge] = (255, 255, 255)
    if grid is not None:
        for y in grid.row_bounds(h)[1:-1]:
            cv2.line(out, (0, int(y)), (w - 1, int(y)), (90, 90, 90), 1)
        for x in grid.col_bounds(w)[1:-1]:
            cv2.line(out, (int(x), 0), (int(x), h - 1), (90, 90, 90), 1)
    if label:
        scale = max(0.4, max(h, w) / 1600)
        cv2.putText(out, label, (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _preview_size(h: int, w: int, long_side: int) -> tuple[int, int]:
    s = min(1.0, long_side / max(h, w))
    return max(2, int(round(h * s / 2)) * 2), max(2, int(round(w * s / 2)) * 2)


def _write_h264(path: Path, frames: Iterable[np.ndarray], rate) -> int:
    rate = normalize_rate(rate)
    count = 0
    with atomic_path(path, suffix=path.suffix) as tmp, av.open(str(tmp), "w") as out:
        stream = None
        for a in frames:
            if stream is None:
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height = a.shape[1], a.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20", "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            frame.pts = count
            out.mux(stream.encode(frame))
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        out.mux(stream.encode(None))
    return count


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
    return _write_h264(path, frames(), rate)


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
