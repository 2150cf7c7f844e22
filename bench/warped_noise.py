"""Warped noise for VOID pass 2: statistics, correlation along the motion, flow and warp cost (CPU).

    .venv/bin/python bench/warped_noise.py [--frames 85] [--clips lime moving_ball] [--model-dir DIR]
                                           [--skip-raft] [--json out.json]

What it measures, at the model's size (384x672 frames, 16 x 48 x 84 latent noise per latent frame):

1. Generated motion with a known answer: a textured plate (`shots.synthetic.texture`) translated by
   (2.0, 0.7) px per frame, translated by (0.3, 0.7) px (sub-pixel), and rotated by 0.5 deg per frame about the
   centre. Noise is warped with the exact (analytic) flow, and with flow estimated from the frames (RAFT
   with real weights when --model-dir has them, else OpenCV DIS, labelled as such) between consecutive
   frames (s1, the default) and between every 4th frame (s4, `flow_stride=4`); judged against the exact motion.
2. VOID sample clips (../shared/data/void_samples/*/input_video.mp4), read at 384x672 and mirror-padded to
   the chunk's VOID length like the backend does; flow estimated as above, judged against the s1 estimate.
3. RAFT seconds per frame pair on this CPU (random weights: the weights' values do not change the cost),
   raft_small and raft_large, at 384x672 and 192x336, 12 iterations; and the warp's seconds per frame.

Per clip and flow: per-latent-frame mean and std of the *raw* warped noise (before the optional
re-normalisation; target |mean| < 0.02, std 1.00 +/- 0.03), excess kurtosis (0 for a Gaussian), and
correlations between consecutive latent frames (`model.void.noise_warp.flow_correlation`):
  along      n_k at a latent cell vs n_k+1 at the cell the motion takes it to (high is good)
  ideal      what perfect transport of 8x8 block sums allows there (sub-cell shifts cap it below 1)
  unrelated  the same pairs with the target half a frame away (should be ~0)
  static     n_k vs n_k+1 at the same cell (what motion-blind noise would line up with)
with two baselines on the same motion: fresh noise per frame, and one frozen noise for the whole clip.
The reference pass 2's std after its 60x90 -> 48x84 bilinear resize is printed for comparison.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.void.backend import mirror_indices  # noqa: E402
from model.void.flow import compute_flows, load_raft  # noqa: E402
from model.void.noise_warp import (  # noqa: E402
    NoiseWarper,
    flow_correlation,
    latent_displacements,
    rotation_flow,
    translation_flow,
    warp_noise,
)
from shots.media import probe, read_frames  # noqa: E402
from shots.plan import padded_length  # noqa: E402
from shots.synthetic import texture  # noqa: E402

SIZE = (384, 672)
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "void_samples"
CHANNELS = 16


# --- frames with known motion -------------------------------------------------------------------------------

def moving_plate(kind: str, frames: int, height: int, width: int) -> tuple[np.ndarray, torch.Tensor]:
    """(frames (T,H,W,3) uint8, exact forward flows (T-1,2,H,W)) for a plate under a known motion."""
    # enough plate around the frame that no border ever shows: 2 px x frames of travel, or the frame's
    # circumradius for the rotation
    margin = 2 * frames + 48 if kind != "rotation" else int(0.5 * np.hypot(height, width)) - min(height, width) // 2 + 8
    tex = texture(height + 2 * margin, width + 2 * margin, seed=3)
    out = np.empty((frames, height, width, 3), np.uint8)
    big_c = ((width + 2 * margin - 1) / 2, (height + 2 * margin - 1) / 2)
    if kind.startswith("translation"):
        d = (2.0, 0.7) if kind == "translation" else (0.3, 0.7)
        flow = translation_flow(height, width, *d)
        # content moves by +d per frame: the plate pixel at `margin - 24 - t*d` is frame pixel 0 at frame t
        start = np.array([-margin + 24.0, -margin + 24.0])
        for t in range(frames):
            m = np.float32([[1, 0, start[0] + t * d[0]], [0, 1, start[1] + t * d[1]]])
            out[t] = np.clip(cv2.warpAffine(tex, m, (width, height), flags=cv2.INTER_CUBIC), 0, 255)
    else:
        deg = 0.5
        flow = rotation_flow(height, width, deg)
        for t in range(frames):
            m = cv2.getRotationMatrix2D(big_c, t * deg, 1.0)
            m[:, 2] -= [margin, margin]  # rotate about the centre of the big plate, then crop its middle
            out[t] = np.clip(cv2.warpAffine(tex, m, (width, height), flags=cv2.INTER_CUBIC), 0, 255)
    return out, flow[None].expand(frames - 1, 2, height, width).contiguous()


def dis_flows(frames: np.ndarray) -> torch.Tensor:
    """OpenCV DIS forward flows (T-1,2,H,W): the stand-in when no real RAFT weights are at hand."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    return torch.stack([torch.from_numpy(dis.calc(a, b, None)).permute(2, 0, 1)
                        for a, b in zip(gray[:-1], gray[1:])]).float()


# --- measuring ---------------------------------------------------------------------------------------------

def noise_report(noise: torch.Tensor, displacements: torch.Tensor) -> dict:
    flat = noise.flatten(1).double()
    mean, std = flat.mean(1), flat.std(1)
    z = (flat - mean[:, None]) / std[:, None]
    kurt = float((z ** 4).mean() - 3)
    corr = flow_correlation(noise, displacements)
    return {"latent_frames": noise.shape[0], "max_abs_mean": float(mean.abs().max()),
            "std_min": float(std.min()), "std_max": float(std.max()), "excess_kurtosis": kurt,
            **{k: round(v, 4) for k, v in corr.items()}}


def baselines(displacements: torch.Tensor, shape) -> dict:
    t_lat, c, h, w = shape
    g = torch.Generator().manual_seed(1)
    fresh = torch.randn(t_lat, c, h, w, generator=g)
    frozen = torch.randn(1, c, h, w, generator=g).expand(t_lat, c, h, w).contiguous()
    return {"fresh": flow_correlation(fresh, displacements)["along"],
            "frozen": flow_correlation(frozen, displacements)["along"]}


def measure(name: str, flow_name: str, frames: int, flows: torch.Tensor, displacements: torch.Tensor, rows: list,
            stride: int = 1, seed: int = 0):
    """Warp noise with `flows` (at `stride`) and judge it against `displacements` (the best motion known)."""
    t0 = time.perf_counter()
    noise = warp_noise(flows, frames, CHANNELS, torch.Generator().manual_seed(seed), stride=stride,
                       normalize=False)
    warp_s = time.perf_counter() - t0
    # fraction of fresh / merged pixels per step, on the same flows (diagnostic)
    w = NoiseWarper(1, flows.shape[-2], flows.shape[-1], torch.Generator().manual_seed(seed))
    fresh = merged = 0.0
    for f in flows:
        w.step(f)
        fresh += w.last_fresh_fraction
        merged += w.last_merged_fraction
    warper_stats = {"fresh_per_step": fresh / len(flows), "merged_per_step": merged / len(flows)}
    flow_name = f"{flow_name} s{stride}"
    row = {"clip": name, "flow": flow_name, "stride": stride, "frames": frames,
           **noise_report(noise, displacements),
           **{f"baseline_{k}": round(v, 4) for k, v in baselines(displacements, noise.shape).items()},
           **{k: round(v, 4) for k, v in warper_stats.items()}, "warp_s_per_frame": warp_s / len(flows)}
    rows.append(row)
    print(f"  {name:22s} {flow_name:17s} lat {row['latent_frames']:2d}  |mean|max {row['max_abs_mean']:.4f}  "
          f"std {row['std_min']:.4f}..{row['std_max']:.4f}  kurt {row['excess_kurtosis']:+.3f}  "
          f"along {row['along']:.3f} (ideal {row['ideal']:.3f}; fresh {row['baseline_fresh']:+.3f}, frozen "
          f"{row['baseline_frozen']:+.3f})  unrelated {row['unrelated']:+.4f}  static {row['static']:+.3f}  "
          f"fresh px/step {row['fresh_per_step']:.3%}  warp {row['warp_s_per_frame'] * 1000:.0f} ms/frame",
          flush=True)


def estimated_flows(frames: np.ndarray, raft, stride: int = 1) -> tuple[str, torch.Tensor]:
    if raft is not None:
        return "RAFT-large", compute_flows(raft, frames, stride=stride, iters=12).half().float()
    return "DIS (no RAFT)", dis_flows(frames[::stride])


def raft_timing(rows: list, pairs: int = 3) -> None:
    from torchvision.models.optical_flow import raft_large, raft_small

    rng = np.random.default_rng(0)
    for build in (raft_small, raft_large):
        model = build(weights=None, progress=False).eval()
        for size in (SIZE, (192, 336)):
            frames = rng.integers(0, 256, (pairs + 1, *size, 3), dtype=np.uint8)
            compute_flows(model, frames[:2], iters=12, batch=1)  # warm-up
            t0 = time.perf_counter()
            compute_flows(model, frames, iters=12, batch=1)
            per_pair = (time.perf_counter() - t0) / pairs
            rows.append({"raft": build.__name__, "size": f"{size[0]}x{size[1]}", "iters": 12,
                         "s_per_pair": round(per_pair, 3)})
            print(f"  {build.__name__:10s} {size[0]}x{size[1]}  12 iters  {per_pair:.2f} s per frame pair "
                  f"({torch.get_num_threads()} threads)", flush=True)


def reference_resize_std() -> float:
    g = np.random.default_rng(0).standard_normal((60, 90, 16)).astype(np.float32)
    return float(cv2.resize(g, (84, 48), interpolation=cv2.INTER_LINEAR).std())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=85, help="frames of generated motion (4k+1)")
    parser.add_argument("--clips", nargs="*", default=None, help="VOID sample names (default: all)")
    parser.add_argument("--model-dir", type=Path, default=None, help="use its raft/raft_large.pth for flow")
    parser.add_argument("--skip-raft", action="store_true", help="skip the RAFT timing")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, python {platform.python_version()}, {torch.get_num_threads()} CPU threads; "
          f"{SIZE[0]}x{SIZE[1]} frames, noise {CHANNELS} x {SIZE[0] // 8} x {SIZE[1] // 8} per latent frame")
    raft = None
    if args.model_dir is not None:
        raft, sha = load_raft(args.model_dir, "raft_large")
        print(f"flow: RAFT-large from {args.model_dir} (sha256 {sha[:12]})")
    else:
        print("flow: no --model-dir with real RAFT weights, so estimated flow is OpenCV DIS (medium preset); "
              "the library uses RAFT. Random-weight RAFT is only timed.")
    rows: list[dict] = []

    print("\n1. generated motion (exact flow, then estimated flow)")
    for kind in ("translation", "translation-subpx", "rotation"):
        frames, exact = moving_plate(kind, args.frames, *SIZE)
        truth = latent_displacements(exact, args.frames)
        measure(kind, "exact", args.frames, exact, truth, rows)
        for stride in (1, 4):
            name, est = estimated_flows(frames, raft, stride)
            if stride == 1:
                err = float((est - exact)[:, :, 40:-40, 40:-40].norm(dim=1).mean())
                print(f"    ({name} end-point error vs exact: {err:.3f} px)")
            measure(kind, name, args.frames, est, truth, rows, stride)

    print("\n2. VOID sample clips (mirror-padded to the VOID chunk length, as the backend does)")
    clips = args.clips or sorted(p.parent.name for p in SAMPLES.glob("*/input_video.mp4"))
    for clip in clips:
        path = SAMPLES / clip / "input_video.mp4"
        if not path.exists():
            print(f"  {clip}: {path} not found, skipped")
            continue
        count = min(probe(path).frames, 197)
        video = np.stack(list(read_frames(path, 0, count, size=SIZE)))
        length = padded_length(count)
        video = video[mirror_indices(count, length)]
        name, est = estimated_flows(video, raft)
        motion = latent_displacements(est, length)  # the best motion known here: the stride-1 estimate
        measure(f"{clip} ({count}->{length})", name, length, est, motion, rows)
        measure(f"{clip} ({count}->{length})", name, length, estimated_flows(video, raft, 4)[1], motion, rows, 4)

    if not args.skip_raft:
        print("\n3. RAFT on this CPU (random weights)")
        raft_timing(rows)

    ref = reference_resize_std()
    print(f"\nreference pass 2 (60x90 -> 48x84 bilinear resize of N(0,1)): std {ref:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "reference_resize_std": ref}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
