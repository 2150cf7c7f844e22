"""What full precision costs: decode + composite + encode of 8-bit, 10-bit and EXR plates, next to plain tools.

Why: the conform now reads plates at their own precision (uint8, uint16, float32), composites the
removal through the colour pipeline's inverse, and writes the deliverable the plate asks for. This
says what that costs per frame against the plain tools doing the same decode and encode on the same
files in the same run:

  8-bit   H.264 yuv420p          -> 8-bit PNG   voidbatch  vs  ffmpeg -pix_fmt rgb24   PNG (zlib level 1)
  10-bit  ProRes 422 HQ          -> 16-bit PNG  voidbatch  vs  ffmpeg -pix_fmt rgb48be PNG (zlib level 1)
  EXR     half RGB, ZIP          -> EXR         voidbatch  vs  OpenEXR read + write (same header)

The voidbatch column is what a conform does per frame (`shots.extract.plate_frames`, `composite` with
the colour pipeline's `from_model`, `shots.deliver.open_writer` with the plate's MediaInfo); the
removal itself is a fixed 384x672 frame. ratio = voidbatch fps / plain fps (1.0: no overhead).

    .venv/bin/python bench/fidelity.py [--frames 12] [--sizes 1080,2160]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import OpenEXR  # noqa: E402

from shots.colour import ColourPipeline, input_space  # noqa: E402
from shots.composite import composite  # noqa: E402
from shots.deliver import choose_format, ffmpeg_exe, open_writer  # noqa: E402
from shots.media import probe, read_frames, read_frames_precise  # noqa: E402
from shots.roi import Box  # noqa: E402

SIZES = {1080: (1080, 1920), 2160: (2160, 3840)}
RATE = Fraction(24)


def _picture(t: int, h: int, w: int) -> np.ndarray:
    """A frame in 0..1 float: a diagonal ramp with fine texture and a moving bright square (deep-plate content)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (x / w * 0.7 + y / h * 0.2)
    texture = 0.05 * np.sin(x * 0.31 + t) * np.cos(y * 0.17 - t)
    frame = np.stack([ramp + texture, ramp * 0.9 + texture, 1.0 - ramp + texture], axis=-1)
    s = h // 6
    x0 = (t * 37) % (w - s)
    frame[h // 3:h // 3 + s, x0:x0 + s] = 0.95
    return np.clip(frame, 0.0, 1.0)


def make_plates(folder: Path, frames: int, h: int, w: int) -> dict[str, Path]:
    """The three plates of one size: 8-bit H.264, 10-bit ProRes 422 HQ, a half-float EXR sequence up to 4.0."""
    pictures = [_picture(t, h, w) for t in range(frames)]
    plates = {}
    for name, pix_out, codec, ext in (("8-bit", "yuv420p", ["-c:v", "libx264", "-crf", "12"], "mp4"),
                                      ("10-bit", "yuv422p10le", ["-c:v", "prores_ks", "-profile:v", "3"], "mov")):
        path = folder / f"plate_{name}_{h}.{ext}"
        raw = b"".join(np.rint(p * 65535).astype("<u2").tobytes() for p in pictures)
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-s", f"{w}x{h}",
                        "-r", "24", "-i", "pipe:", *codec, "-pix_fmt", pix_out, "-color_primaries", "bt709",
                        "-color_trc", "bt709", "-colorspace", "bt709", str(path)], input=raw, check=True)
        plates[name] = path
    exr = folder / f"exr_{h}"
    exr.mkdir()
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    for t, p in enumerate(pictures):
        OpenEXR.File(header, {"RGB": (p * 4.0).astype(np.float16)}).write(str(exr / f"lin.{1001 + t}.exr"))
    plates["EXR"] = exr / "lin.%04d.exr"
    return plates


def _mask(h: int, w: int, roi: Box) -> np.ndarray:
    """A quadmask over the ROI: an ellipse removed (0), an affected ring (127), the rest kept (255)."""
    mask = np.full((roi.height, roi.width), 255, np.uint8)
    centre, axes = (roi.width // 2, roi.height // 2), (roi.width // 5, roi.height // 4)
    cv2.ellipse(mask, centre, (axes[0] + 12, axes[1] + 12), 0, 0, 360, 127, -1)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 0, -1)
    return mask


def voidbatch(plate: Path, frames: int, out: Path) -> float:
    """Seconds for the conform's per-frame work: precise decode, composite through the colour pipeline, deliver."""
    info = probe(str(plate))
    h, w = info.height, info.width
    roi = Box(w // 4, h // 4, w // 4 + w // 2, h // 4 + round(w / 2 * 384 / 672))
    mask, clean = _mask(h, w, roi), np.random.default_rng(0).integers(0, 256, (384, 672, 3), dtype=np.uint8)
    colour = ColourPipeline(input_space(str(plate), info.colour))
    fmt = choose_format(info)
    read = read_frames if info.sample == "uint8" else read_frames_precise
    t0 = time.perf_counter()
    writer = open_writer(fmt, out, "bench", 1, w, h, RATE, "01:00:00:00", plate=info)
    try:
        for src in read(str(plate), 0, frames):
            writer.write(composite(src, clean, mask, roi, 4.0, colour.from_model))
    finally:
        writer.close()
    return time.perf_counter() - t0


def plain(name: str, plate: Path, frames: int, out: Path) -> float:
    """Seconds for the plain tools' decode + encode of the same frames to the same format."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if name == "EXR":
        for t in range(frames):
            with OpenEXR.File(str(plate).replace("%04d", str(1001 + t))) as f:
                header, channels = dict(f.header()), {k: c.pixels for k, c in f.channels().items()}
            OpenEXR.File(header, channels).write(str(out / f"plain.{1001 + t}.exr"))
    else:
        pix = "rgb24" if name == "8-bit" else "rgb48be"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(plate), "-frames:v", str(frames),
                        "-pix_fmt", pix, "-compression_level", "1", str(out / "plain.%04d.png")], check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--sizes", default="1080,2160", help="plate heights: 1080 (1920 wide), 2160 (3840 wide)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fidelity-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            h, w = SIZES[size]
            print(f"making {w}x{h} plates ({args.frames} frames each)...", flush=True)
            plates = make_plates(Path(tmp), args.frames, h, w)
            for name, plate in plates.items():
                vb = voidbatch(plate, args.frames, Path(tmp) / f"vb_{name}_{size}")
                base = plain(name, plate, args.frames, Path(tmp) / f"plain_{name}_{size}")
                rows.append((name, f"{w}x{h}", args.frames / vb, args.frames / base))
                print(f"  {name:6s} {w}x{h}: voidbatch {args.frames / vb:6.2f} fps, "
                      f"plain {args.frames / base:6.2f} fps", flush=True)
    print(f"\n{'plate':8s} {'size':10s} {'voidbatch fps':>14s} {'plain fps':>10s} {'ratio':>6s}")
    for name, size, vb, base in rows:
        print(f"{name:8s} {size:10s} {vb:14.2f} {base:10.2f} {vb / base:6.2f}")
    print("\nvoidbatch: precise decode + composite (colour pipeline inverse) + deliverable writer; "
          "plain: ffmpeg CLI (PNG, zlib level 1) or OpenEXR read+write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
