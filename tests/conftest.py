"""Shared test fixtures: where the shared data lives and how to make small movies with known content."""
from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test when the shared data is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data not found: {p}")
    return p


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def make_movie(path: Path, frames: int, rate: Fraction | int = 24, size: tuple[int, int] = (64, 36),
               timecode: str | None = None, codec: str = "libx264") -> Path:
    """A testsrc2 movie with `frames` frames; the frame counter is burnt into the picture."""
    rate = Fraction(rate)
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={size[0]}x{size[1]}:rate={rate.numerator}/{rate.denominator}",
           "-frames:v", str(frames), "-c:v", codec, "-pix_fmt", "yuv420p"]
    if codec == "libx264":
        cmd += ["-g", "12", "-bf", "2", "-crf", "18"]
    if timecode:
        cmd += ["-timecode", timecode]
    cmd.append(str(path))
    subprocess.run(cmd, check=True)
    return path
