"""What the mask stages share: a shot's frames at a working resolution, per-frame object masks, clicks.

A 4K shot of a few hundred frames does not fit in memory as float tensors (SAM2 would hold
1024x1024x3 floats per frame), and segmentation does not need 4K: every stage works at a reduced
*working* resolution (long side ~640-1024) and only the final quadmask is written at source
resolution. `Frames` decodes the shot once, streaming, into RAM or, past a budget, into a
memory-mapped temporary file, and then gives random access (SAM2 and the classical tracker walk the
shot forwards and backwards). `MaskStack` keeps one boolean mask per frame bit-packed (1 bit per
pixel: 200 frames at 1024x576 are 15 MB). `Prompts` are the artist's clicks and boxes in source
pixels, keyed by shot frame (0 = the shot's first frame), converted from the media-file frame
numbers of `shots.shot.Instructions`.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_RAM_BUDGET = 512 << 20  # bytes of working-resolution frames kept in RAM before spilling to disk


def working_size(height: int, width: int, long_side: int | None) -> tuple[int, int]:
    """(h, w) scaled so the long side is at most `long_side` (never upscaled), both even and >= 16."""
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be >= 1, got {height}x{width}")
    if long_side is None or max(height, width) <= long_side:
        return int(height), int(width)
    s = long_side / max(height, width)
    h = max(16, int(round(height * s / 2)) * 2)
    w = max(16, int(round(width * s / 2)) * 2)
    return h, w


class Frames:
    """RGB uint8 frames (T, h, w, 3) of one shot at a working resolution, with random access.

    `source_size` is the (H, W) of the plate the frames were scaled from; clicks in source pixels
    map to working pixels with `scale` = (h / H, w / W).
    """

    def __init__(self, data: np.ndarray, source_size: tuple[int, int] | None = None, _tmpdir=None):
        if data.ndim != 4 or data.shape[-1] != 3 or data.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {data.shape} {data.dtype}")
        if len(data) == 0:
            raise ValueError("no frames")
        self._data = data
        self._tmpdir = _tmpdir
        self.source_size = tuple(source_size) if source_size is not None else tuple(data.shape[1:3])

    @classmethod
    def from_array(cls, frames, source_size: tuple[int, int] | None = None) -> Frames:
        """Frames already in memory (tests, benches); `source_size` defaults to their own size."""
        return cls(np.ascontiguousarray(np.asarray(frames, dtype=np.uint8)), source_size)

    @classmethod
    def from_media(cls, path, start: int, count: int, size: tuple[int, int], source_size: tuple[int, int],
                   ram_budget: int = DEFAULT_RAM_BUDGET) -> Frames:
        """Decode file frames [start, start+count) of `path` at size=(h, w), once, streaming.

        Beyond `ram_budget` bytes the frames go to a memory-mapped file in a temporary folder that
        `close()` (or garbage collection) removes.
        """
        from shots.media import read_frames

        h, w = size
        nbytes = count * h * w * 3
        tmpdir = None
        if nbytes > ram_budget:
            tmpdir = tempfile.TemporaryDirectory(prefix="voidbatch-frames-")
            data = np.lib.format.open_memmap(os.path.join(tmpdir.name, "frames.npy"), mode="w+",
                                             dtype=np.uint8, shape=(count, h, w, 3))
        else:
            data = np.empty((count, h, w, 3), np.uint8)
        n = 0
        for n, frame in enumerate(read_frames(path, start, count, size=(h, w)), 1):
            data[n - 1] = frame
        if n != count:  # read_frames raises first; this guards a silent short read
            raise ValueError(f"{path}: expected {count} frames from {start}, decoded {n}")
        return cls(data, source_size, _tmpdir=tmpdir)

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._data[i]

    def __iter__(self):
        for i in range(len(self)):
            yield self._data[i]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self._data.shape[1:3])

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx): working pixels per source pixel."""
        return self.size[0] / self.source_size[0], self.size[1] / self.source_size[1]

    def close(self) -> None:
        self._data = self._data[:0] if self._tmpdir is None else np.empty((0, 1, 1, 3), np.uint8)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Frames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MaskStack:
    """One boolean (h, w) mask per frame, bit-packed; frames never set are empty."""

    def __init__(self, n_frames: int, size: tuple[int, int]):
        if n_frames < 1:
            raise ValueError(f"a mask stack needs >= 1 frame, got {n_frames}")
        self.size = (int(size[0]), int(size[1]))
        self._n = int(n_frames)
        self._bits = self.size[0] * self.size[1]
        self._packed = np.zeros((self._n, (self._bits + 7) // 8), np.uint8)
        self._area = np.zeros(self._n, np.int64)

    @classmethod
    def from_array(cls, masks) -> MaskStack:
        masks = np.asarray(masks)
        stack = cls(len(masks), masks.shape[1:3])
        for i, m in enumerate(masks):
            stack[i] = m
        return stack

    def __len__(self) -> int:
        return self._n

    def __setitem__(self, i: int, mask) -> None:
        mask = np.asarray(mask)
        if mask.shape != self.size:
            raise ValueError(f"mask {i} is {mask.shape}, the stack holds {self.size}")
        mask = mask.astype(bool, copy=False)
        self._packed[i] = np.packbits(mask.ravel())
        self._area[i] = int(np.count_nonzero(mask))

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self._n:
            raise IndexError(f"frame {i} outside 0..{self._n - 1}")
        return np.unpackbits(self._packed[i], count=self._bits).reshape(self.size).astype(bool)

    def __iter__(self):
        for i in range(self._n):
            yield self[i]

    @property
    def areas(self) -> np.ndarray:
        """Object pixels per frame."""
        return self._area.copy()

    def resized(self, i: int, size: tuple[int, int]) -> np.ndarray:
        """Frame i's mask at size=(h, w): bilinear on 0/255 then >= 128, so edges stay smooth."""
        m = self[i]
        if m.shape == tuple(size):
            return m
        up = cv2.resize(m.astype(np.uint8) * 255, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
        return up >= 128

    def to_array(self) -> np.ndarray:
        return np.stack(list(self))


def _as_points(value, where: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 2))
    if a.ndim == 1 and a.shape[0] == 2:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 2 or not np.isfinite(a).all():
        raise ValueError(f"{where}: points are [[x, y], ...] in source pixels, got {value!r}")
    return a


def _as_box(value, where: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape != (4,) or not np.isfinite(a).all() or a[2] <= a[0] or a[3] <= a[1]:
        raise ValueError(f"{where}: a box is [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {value!r}")
    return a


@dataclass(frozen=True)
class Prompts:
    """Clicks and boxes in source pixels, keyed by shot frame (0 = the shot's first frame)."""

    points: Mapping[int, np.ndarray] = field(default_factory=dict)  # frame -> (N, 2) x, y
    negative_points: Mapping[int, np.ndarray] = field(default_factory=dict)
    boxes: Mapping[int, np.ndarray] = field(default_factory=dict)  # frame -> (4,) x0, y0, x1, y1

    @classmethod
    def from_instructions(cls, instructions, file_start: int, n_frames: int,
                          source_size: tuple[int, int] | None = None) -> tuple[Prompts, list[str]]:
        """Prompts of `instructions` (frames numbered like the media file) inside the shot.

        Returns (prompts, notes): clicks on frames outside [file_start, file_start + n_frames) are
        dropped and named in `notes`. With `source_size`, a click outside the picture is an error.
        """
        notes: list[str] = []
        out: dict[str, dict[int, np.ndarray]] = {"points": {}, "negative_points": {}, "boxes": {}}
        for kind in out:
            for frame, value in (getattr(instructions, kind, None) or {}).items():
                frame = int(frame)
                where = f"{kind} on media frame {frame}"
                arr = _as_box(value, where) if kind == "boxes" else _as_points(value, where)
                if not file_start <= frame < file_start + n_frames:
                    notes.append(f"{where} is outside the shot's media frames "
                                 f"{file_start}-{file_start + n_frames - 1}; ignored")
                    continue
                if source_size is not None and len(arr):
                    h, w = source_size
                    xy = arr.reshape(-1, 2)
                    if (xy[:, 0] < 0).any() or (xy[:, 0] > w).any() or (xy[:, 1] < 0).any() or (xy[:, 1] > h).any():
                        raise ValueError(f"{where}: {value!r} lies outside the {w}x{h} picture")
                if len(arr):
                    out[kind][frame - file_start] = arr
        return cls(**out), notes

    @classmethod
    def make(cls, points=None, negative_points=None, boxes=None) -> Prompts:
        """Prompts from plain dicts {frame: [[x, y], ...]} / {frame: [x0, y0, x1, y1]} (shot frames)."""
        return cls(
            points={int(f): _as_points(v, f"points on frame {f}") for f, v in (points or {}).items()},
            negative_points={int(f): _as_points(v, f"negative points on frame {f}")
                             for f, v in (negative_points or {}).items()},
            boxes={int(f): _as_box(v, f"box on frame {f}") for f, v in (boxes or {}).items()},
        )

    @property
    def frames(self) -> list[int]:
        """Every frame with a click or box, sorted."""
        return sorted(set(self.points) | set(self.negative_points) | set(self.boxes))

    @property
    def positive_frames(self) -> list[int]:
        """Frames that say where the object is (positive clicks or a box), sorted."""
        return sorted(set(self.points) | set(self.boxes))

    def __bool__(self) -> bool:
        return bool(self.positive_frames)

    def scaled(self, sy: float, sx: float) -> Prompts:
        """The same prompts in pixels scaled by (sy, sx) (source -> working resolution)."""
        s2, s4 = np.array([sx, sy]), np.array([sx, sy, sx, sy])
        return Prompts(points={f: p * s2 for f, p in self.points.items()},
                       negative_points={f: p * s2 for f, p in self.negative_points.items()},
                       boxes={f: b * s4 for f, b in self.boxes.items()})

    def at(self, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(positive (N, 2), negative (M, 2), box (4,) or None) on `frame`."""
        return (self.points.get(frame, np.zeros((0, 2))), self.negative_points.get(frame, np.zeros((0, 2))),
                self.boxes.get(frame))

    def to_dict(self) -> dict:
        """JSON form (shot frames as string keys)."""
        return {k: {str(f): np.asarray(v).tolist() for f, v in getattr(self, k).items()}
                for k in ("points", "negative_points", "boxes")}

