"""Cost of content credentials: seconds to sign and verify a version against seconds to write it.

Why: signing runs in the conform step, on the finished files, before the version is published; it
must not double conform time. This writes a 1080p version with the deliverable writers the conform
uses (`shots.deliver`: PNG frames on two threads, ProRes 4444 through ffmpeg, half-float EXR), then
signs it with the untrusted test identity (`shots.provenance.sign_version`) and verifies it
(`verify`), best of --repeat runs. Writing is the ratio's baseline: a whole conform also decodes the
plate and composites, so the share of a real conform is smaller still.

    python bench/provenance.py [--frames 48] [--repeat 3] [--formats png,prores,exr]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from shots import provenance as pv  # noqa: E402
from shots.deliver import open_writer  # noqa: E402

WIDTH, HEIGHT, RATE = 1920, 1080, Fraction(24)
SHOT = "bench010"


def make_frames(n: int) -> list[np.ndarray]:
    """Gradients, a moving box and mild grain: compresses about like a plate, not like noise or flat colour."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([xx / WIDTH * 200 + 20, yy / HEIGHT * 180 + 40, (xx + yy) / (WIDTH + HEIGHT) * 150 + 60], -1)
    frames = []
    for t in range(n):
        f = base + rng.normal(0, 3, base.shape).astype(np.float32)
        x = 200 + 20 * t
        f[400:700, x:x + 300] = (220, 60, 50)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def edit(n: int) -> pv.Edit:
    return pv.Edit(plate=pv.Plate("A001C001_plate.mov", "0" * 64, "01:00:00:00", "01:00:01:23"),
                   agent=pv.SoftwareAgent("0.1.0", "void", "bench", "1" * 64), prompt="an empty room",
                   region=pv.Region(1001, 1000 + n, (200, 400, 1500, 700), "file:///bench/quadmask.mkv", "2" * 64),
                   generated=True)


def write(folder: Path, fmt: str, frames: list[np.ndarray]) -> list[Path]:
    writer = open_writer(fmt, folder, SHOT, 1, WIDTH, HEIGHT, RATE, "01:00:00:00")
    try:
        for f in frames:
            writer.write(f)
    finally:
        writer.close()
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def run(fmt: str, frames: list[np.ndarray], identity: pv.Identity, root: Path) -> tuple[float, float, float, int]:
    folder = root / fmt
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    files = write(folder, fmt, frames)
    t1 = time.perf_counter()
    pv.sign_version(folder, files, fmt, edit(len(frames)), identity)
    t2 = time.perf_counter()
    report = pv.verify(folder)
    t3 = time.perf_counter()
    if not report.ok:
        raise SystemExit("\n".join(report.lines()))
    return t1 - t0, t2 - t1, t3 - t2, sum(f.stat().st_size for f in files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", default="png,prores,exr")
    args = ap.parse_args()
    frames = make_frames(args.frames)
    with tempfile.TemporaryDirectory(prefix="bench-provenance-") as tmp:
        root = Path(tmp)
        identity = pv.load_identity("unsigned", root / "cache")
        print(f"{args.frames} frames {WIDTH}x{HEIGHT}, best of {args.repeat}; seconds")
        print(f"{'format':8} {'MB':>7} {'write':>7} {'sign':>7} {'verify':>7} {'sign/write':>11} {'verify/write':>13}")
        for fmt in args.formats.split(","):
            runs = [run(fmt, frames, identity, root) for _ in range(args.repeat)]
            w, s, v = (min(r[i] for r in runs) for i in range(3))
            mb = runs[0][3] / 1e6
            print(f"{fmt:8} {mb:7.1f} {w:7.2f} {s:7.2f} {v:7.2f} {s / w:11.2f} {v / w:13.2f}")


if __name__ == "__main__":
    main()
