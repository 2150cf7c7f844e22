"""Deliverable writers: PNG/EXR sequences from frame 1001, or ProRes 4444 .mov with source timecode.

Writers put files in a staging folder (`ArtifactStore.writing_dir`) that lands as an immutable version
in one step, so an interrupted render never looks like a finished one. File names come from
`storage.layout`.
EXR frames hold display-referred code values / 255 in half float, not scene-linear light.
"""
from __future__ import annotations

import os
import subprocess
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from storage import layout
from storage.layout import FIRST_FRAME
from storage.store import ArtifactStore, DiskFull

FORMATS = ("png", "exr", "prores")
LOSSY = ("prores",)  # formats whose keep pixels come back close to the source, not equal
# Upper estimates of the encoded size of a pixel, for the free-space check before a render.
BYTES_PER_PIXEL = {"png": 3.0, "exr": 6.0, "prores": 2.0}


def estimate_bytes(fmt: str, width: int, height: int, frames: int) -> int:
    """About how many bytes a version of this size takes (erring large)."""
    return int(BYTES_PER_PIXEL[fmt] * width * height * frames) + (1 << 20)


def check_free_space(store: ArtifactStore, shot_id: str, fmt: str, width: int, height: int, frames: int) -> None:
    """Refuse to start a render that cannot fit: DiskFull names the disk and the sizes."""
    free = store.free_bytes()
    need = estimate_bytes(fmt, width, height, frames)
    if free is not None and free < need:
        raise DiskFull(f"shot {shot_id}: not enough free space on {store.disk()} for a {fmt} version of "
                       f"{frames} frames at {width}x{height}: needs about {need / 1e6:.0f} MB, "
                       f"{free / 1e6:.0f} MB free")


def ffmpeg_exe() -> str:
    """The ffmpeg next to the interpreter (the Makefile links one into .venv/bin), else imageio-ffmpeg's."""
    beside = Path(os.sys.executable).with_name("ffmpeg")
    if beside.exists():
        return str(beside)
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class SequenceWriter:
    """`{shot}_void_v{NNN}.{frame:04d}.png` files from `first_frame` on, encoded on two threads.

    PNG/EXR encoding is the slowest step of a conform (cv2 releases the GIL while it compresses),
    so frames are handed to a small pool with a bounded backlog: memory stays a few frames.
    """

    BACKLOG = 4

    def __init__(self, folder: Path, shot_id: str, version: int, first_frame: int = FIRST_FRAME):
        self.folder, self.shot_id, self.version, self.frame = Path(folder), shot_id, version, first_frame
        self.first_frame = first_frame
        self.folder.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="frame-writer")
        self._pending: deque = deque()

    def write(self, rgb: np.ndarray) -> None:
        while len(self._pending) >= self.BACKLOG:
            self._pending.popleft().result()  # re-raises a failed write here, in the caller
        path = self.folder / layout.frame_file(self.shot_id, self.version, self.frame, "png")
        self._pending.append(self._pool.submit(self._encode, path, rgb))
        self.frame += 1

    def _encode(self, path: Path, rgb: np.ndarray) -> None:
        ok = cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OSError(f"could not write frame {path}")

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class ExrWriter:
    """Half-float, zip-compressed EXR frames through PyAV's encoder (this OpenCV build has no EXR)."""

    def __init__(self, folder: Path, shot_id: str, version: int, width: int, height: int, rate: Fraction,
                 first_frame: int = FIRST_FRAME):
        import av

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        pattern = layout.frame_pattern(shot_id, version, "exr").replace("####", "%04d")
        self._container = av.open(str(self.folder / pattern), "w", format="image2",
                                  options={"start_number": str(first_frame)})
        self._stream = self._container.add_stream("exr", rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "gbrpf32le"
        self._stream.options = {"format": "half", "compression": "zip1"}
        self._frame_cls = av.VideoFrame

    def write(self, rgb: np.ndarray) -> None:
        frame = self._frame_cls.from_ndarray(rgb.astype(np.float32) / 255.0, format="gbrpf32le")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()


def open_writer(fmt: str, folder: Path, shot_id: str, version: int, width: int, height: int, rate: Fraction,
                timecode: str | None):
    """The deliverable writer for `fmt`: png/exr sequences from 1001, or one ProRes .mov."""
    if fmt == "png":
        return SequenceWriter(folder, shot_id, version)
    if fmt == "exr":
        return ExrWriter(folder, shot_id, version, width, height, rate)
    if fmt == "prores":
        return ProResWriter(folder / layout.movie_file(shot_id, version), width, height, rate, timecode)
    raise ValueError(f"unknown deliverable format {fmt!r}; choose one of {', '.join(FORMATS)}")


class ProResWriter:
    """ProRes 4444 (prores_ks profile 4, 10-bit 4:4:4, bt709-tagged) with a timecode track."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, timecode: str | None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path.with_suffix(".ffmpeg.log"), "wb")
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:",
               "-vf", "scale=out_color_matrix=bt709:out_range=tv", "-c:v", "prores_ks", "-profile:v", "4",
               "-pix_fmt", "yuv444p10le", "-vendor", "apl0", "-colorspace", "bt709", "-color_primaries", "bt709",
               "-color_trc", "bt709", "-color_range", "tv"]
        if timecode:
            cmd += ["-timecode", timecode]
        cmd.append(str(self.path))
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._log)

    def write(self, rgb: np.ndarray) -> None:
        try:
            self._proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
        except BrokenPipeError:
            self.close()

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        code = self._proc.wait()
        self._log.close()
        log_path = self.path.with_suffix(".ffmpeg.log")
        message = log_path.read_text(errors="replace").strip()
        log_path.unlink(missing_ok=True)
        if code != 0:
            raise OSError(f"ffmpeg failed writing {self.path}: {message[-500:]}")


def contact_sheet(pairs: list[tuple[int, np.ndarray, np.ndarray]], path: Path, thumb_width: int = 480) -> None:
    """Before | after rows for a few frames, labelled with their deliverable frame numbers."""
    rows = []
    for frame, before, after in pairs:
        h, w = before.shape[:2]
        th = max(1, round(h * thumb_width / w))
        cells = []
        for label, img in (("before", before), ("after", after)):
            small = cv2.resize(img, (thumb_width, th), interpolation=cv2.INTER_AREA)
            small = np.ascontiguousarray(small[..., ::-1])
            cv2.putText(small, f"{frame} {label}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(small, f"{frame} {label}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                        cv2.LINE_AA)
            cells.append(small)
        rows.append(np.hstack([cells[0], np.full((th, 4, 3), 32, np.uint8), cells[1]]))
    sheet = np.vstack([np.vstack([r, np.full((4, r.shape[1], 3), 32, np.uint8)]) for r in rows])
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"could not write contact sheet {path}")
