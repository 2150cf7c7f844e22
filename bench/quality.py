"""Removal quality on generated shots with known clean plates: classical backend vs per-frame Telea.

Why: real plates have no ground truth, so regressions in the CPU fallback (and later VOID) are
caught on synthetic scenes (shots/synthetic.py) where the clean plate is known. Measured inside
the removal region (quadmask != 255), where the backend did its work:

- PSNR (dB) from the MSE pooled over every region pixel of the clip (inf when exact);
- SSIM: Gaussian-window SSIM (sigma 1.5, per channel), averaged over region pixels;
- flicker: |mean frame-to-frame abs difference of the output - the same of the truth| inside the
  region (a method can be still where the truth moves, or boil where it is still);
- dflicker: mean |(out[t]-out[t-1]) - (gt[t]-gt[t-1])| in the region (the peers' E_warp stand-in);
- keep max: largest abs difference to the input where quadmask == 255 (the contract says 0).

Usage (from the repo root): .venv/bin/python bench/quality.py [--frames 96] [--kinds static,pan,handheld]
    [--time-chunk]   also time one 197-frame chunk at 384x672 (pan) with the classical backend.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import scene_parser, verdict  # noqa: E402
from model.backend import RemovalRequest, get_backend  # noqa: E402
from shots.synthetic import make_scene  # noqa: E402
from storage.store import ArtifactStore  # noqa: E402

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def psnr_region(out: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """PSNR over the pooled squared error of all `region` pixels (all channels) of the clip."""
    if not region.any():
        return math.inf
    d = out[region].astype(np.float64) - truth[region]
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (mean over channels) of two HxWx3 images, Gaussian window sigma 1.5."""
    a, b = a.astype(np.float32), b.astype(np.float32)

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return s.mean(axis=-1)


def ssim_region(out: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """SSIM averaged over `region` pixels, computed on each frame's region bbox (+window margin)."""
    total, n = 0.0, 0
    H, W = region.shape[1:]
    for t in range(len(out)):
        ys, xs = np.nonzero(region[t])
        if not len(ys):
            continue
        y0, y1 = max(0, ys.min() - 8), min(H, ys.max() + 9)
        x0, x1 = max(0, xs.min() - 8), min(W, xs.max() + 9)
        s = ssim_map(out[t, y0:y1, x0:x1], truth[t, y0:y1, x0:x1])
        total += float(s[region[t, y0:y1, x0:x1]].sum())
        n += len(ys)
    return total / n if n else 1.0


def _mean_step(x: np.ndarray, region: np.ndarray) -> float:
    vals = []
    for t in range(1, len(x)):
        m = region[t] | region[t - 1]
        if m.any():
            vals.append(float(np.abs(x[t][m].astype(np.float32) - x[t - 1][m]).mean()))
    return float(np.mean(vals)) if vals else 0.0


def flicker(out: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """|mean |out[t]-out[t-1]| - mean |gt[t]-gt[t-1]|| inside region[t] | region[t-1]."""
    return abs(_mean_step(out, region) - _mean_step(truth, region))


def dflicker(out: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """mean |(out[t]-out[t-1]) - (gt[t]-gt[t-1])| inside region[t] | region[t-1]."""
    vals = []
    for t in range(1, len(out)):
        m = region[t] | region[t - 1]
        if m.any():
            do = out[t][m].astype(np.float32) - out[t - 1][m]
            dg = truth[t][m].astype(np.float32) - truth[t - 1][m]
            vals.append(float(np.abs(do - dg).mean()))
    return float(np.mean(vals)) if vals else 0.0


def telea_per_frame(frames: np.ndarray, quadmask: np.ndarray, radius: int = 3) -> np.ndarray:
    """The baseline: OpenCV Telea on every frame independently (no temporal model)."""
    out = frames.copy()
    for t in range(len(frames)):
        m = (quadmask[t] != 255).astype(np.uint8) * 255
        if m.any():
            out[t] = cv2.inpaint(frames[t], m, radius, cv2.INPAINT_TELEA)
    return out


def evaluate(scene, method: str):
    """Metrics dict for one method ('telea' or a backend name) on one scene."""
    region = scene.quadmask != 255
    t0 = time.perf_counter()
    if method == "telea":
        out = telea_per_frame(scene.plate, scene.quadmask)
    else:
        backend = get_backend(method)
        out = backend.remove(RemovalRequest(scene.plate, scene.quadmask, prompt="", seed=0))
    seconds = time.perf_counter() - t0
    keep = ~region
    return {
        "scene": scene.name,
        "method": method,
        "psnr": psnr_region(out, scene.clean, region),
        "ssim": ssim_region(out, scene.clean, region),
        "flicker": flicker(out, scene.clean, region),
        "dflicker": dflicker(out, scene.clean, region),
        "keep_max": int(np.abs(out[keep].astype(np.int16) - scene.plate[keep]).max()) if keep.any() else 0,
        "seconds": seconds,
        "ms_frame": 1000 * seconds / len(out),
    }


def print_table(rows) -> None:
    head = (f"{'scene':<24} {'method':<10} {'PSNR dB':>8} {'SSIM':>7} {'flicker':>8} {'dflicker':>9} "
            f"{'keep max':>8} {'s':>7} {'ms/frame':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scene']:<24} {r['method']:<10} {r['psnr']:>8.2f} {r['ssim']:>7.4f} {r['flicker']:>8.3f} "
              f"{r['dflicker']:>9.3f} {r['keep_max']:>8d} {r['seconds']:>7.2f} {r['ms_frame']:>9.1f}")


def seam_ratio(frames: int, seed: int, grain: float) -> float:
    """Worst frame-to-frame change inside the region across chunk overlaps, over the median elsewhere.

    The shot goes through the real shot pipeline (chunk plan with overlaps, classical removal per
    chunk, cross-faded conform), so a visible jump at a seam shows up as a spike here.
    """
    import tempfile
    from pathlib import Path

    import opentimelineio as otio

    from model.removal import already_loaded, remove_chunk
    from shots import quadmask as qm
    from shots.conform import conform_shot
    from shots.extract import prepare_shot
    from shots.ingest import IngestOptions, ingest
    from shots.media import read_frames, write_video_lossless

    scene = make_scene("pan", frames, 384, 672, seed=seed, grain=grain)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_video_lossless(tmp / "plate.mkv", scene.plate, 24)
        qm.write_quadmask(tmp / "mask.mkv", scene.quadmask, 24)
        tl = otio.schema.Timeline("seams")
        tl.tracks.append(otio.schema.Track("V1"))
        clip = otio.schema.Clip(name="seams", media_reference=otio.schema.ExternalReference(
            target_url=str(tmp / "plate.mkv")), source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(frames, 24)))
        clip.metadata["voidbatch"] = {"quadmask": str(tmp / "mask.mkv"), "prompt": ""}
        tl.tracks[0].append(clip)
        otio.adapters.write_to_file(tl, str(tmp / "e.otio"))
        shot = ingest(tmp / "e.otio", IngestOptions(handles=0))[0]
        store = ArtifactStore(str(tmp / "out"))
        prepared = prepare_shot(shot, store)
        backend = get_backend("classical")
        outs = {c.chunk.index: remove_chunk(c, backend.identity, already_loaded(backend), store, prepared.work_key,
                                            shot.shot_id).output_key
                for c in prepared.chunks}
        d = conform_shot(prepared, outs, store)
        out = np.stack(list(read_frames(f"{store.path(d.output_key)}/seams_void_v001.####.png", 0, frames)))
    region = scene.quadmask != 255
    steps = np.array([np.abs(out[t + 1].astype(np.int16) - out[t])[region[t] | region[t + 1]].mean()
                      for t in range(frames - 1)])
    chunks = [c.chunk for c in prepared.chunks]
    near = np.zeros(frames - 1, bool)
    for a, b in zip(chunks, chunks[1:]):
        near[max(0, b.start - 2):min(frames - 1, a.end + 2)] = True
    return float(steps[near].max() / np.median(steps[~near]))


def main(argv=None) -> int:
    ap = scene_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="classical,telea")
    ap.add_argument("--grain", type=float, default=1.0, help="film grain std of the scenes (0: noise-free)")
    ap.add_argument("--seams", action=argparse.BooleanOptionalAction, default=True,
                    help="run a multi-chunk shot through the pipeline and measure the seams")
    ap.add_argument("--seam-frames", type=int, default=400)
    ap.add_argument("--time-chunk", action="store_true", help="also time one 197x384x672 pan chunk")
    args = ap.parse_args(argv)

    rows, failures = [], []
    for kind in args.kinds.split(","):
        scene = make_scene(kind, args.frames, args.height, args.width, seed=args.seed, grain=args.grain)
        results = [evaluate(scene, m) for m in args.methods.split(",")]
        rows += results
        by = {r["method"]: r for r in results}
        if "classical" in by:
            c = by["classical"]
            target = 40.0 if kind == "static" else 30.0
            if c["psnr"] < target:
                failures.append(f"{scene.name}: classical PSNR {c['psnr']:.2f} < {target}")
            if "telea" in by and c["psnr"] <= by["telea"]["psnr"]:
                failures.append(f"{scene.name}: classical not above Telea")
        failures += [f"{r['scene']} {r['method']}: keep region changed (max {r['keep_max']})"
                     for r in results if r["keep_max"] != 0 and r["method"] != "telea"]
    print_table(rows)

    if args.time_chunk:
        scene = make_scene("pan", 197, 384, 672, seed=args.seed, grain=args.grain)
        backend = get_backend("classical")
        t0 = time.perf_counter()
        backend.remove(RemovalRequest(scene.plate, scene.quadmask, prompt="", seed=0))
        dt = time.perf_counter() - t0
        print(f"\nclassical, one 197x384x672 pan chunk: {dt:.2f} s ({1000 * dt / 197:.1f} ms/frame, "
              f"cv2 threads {cv2.getNumThreads()})")

    if args.seams:
        ratio = seam_ratio(args.seam_frames, args.seed, args.grain)
        print(f"\nseams, {args.seam_frames}-frame pan through prepare/remove/conform: worst frame-to-frame change "
              f"in the region across an overlap = {ratio:.2f} x the median elsewhere (target <= 1.5)")
        if ratio > 1.5:
            failures.append(f"seam ratio {ratio:.2f} > 1.5")

    return verdict(failures, "static >= 40 dB, pan/handheld >= 30 dB, above Telea, keep region exact")


if __name__ == "__main__":
    raise SystemExit(main())
