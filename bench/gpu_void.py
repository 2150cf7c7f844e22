"""Benchmark VOID pass 1 on diffusers: seconds per chunk, transformer time per step, peak VRAM, MFU.

    .venv/bin/python bench/gpu_void.py [--frames 85 197] [--steps 50] [--modes reference fast fast-compile]
                                       [--pass2] [--json out.json]

On CUDA it builds the full-size configuration with random weights (weights' values do not change
speed): CogVideoX 1.5 5B DiT with 48 input channels (42 layers, 48 heads x 64, text dim 4096), the
CogVideoX VAE, DDIM, 384x672 frames, bf16. T5 is left out: prompt embeddings are computed once per
prompt and cached, so random (1, 226, 4096) embeddings stand in for them.

Modes, side by side:
- reference: as VOID's reference runs (note section 2.4/3): model CPU offload (components move to the
  GPU whole while they run), one transformer call per temporal window, eager, no compile.
- fast: everything resident, a step's windows batched into one transformer call, fused QKV projections,
  PyTorch SDPA attention (diffusers' CogVideoX processor), eager.
- fast-compile: fast plus `torch.compile` of the 42 identical transformer blocks (compile time excluded:
  one warm-up run first).
Window positions are this pipeline's (end-anchored last window) in every mode; the reference's short tail
window costs the same number of calls.

Then 5 one-chunk shots (--warm-shots) through one warm worker (`model.removal.WarmBackend`, what a farm
worker keeps): the model loads for the first shot only (`model_load_s` 0 after), beside what a process
per shot would pay (the first load again for every shot). The load here builds random weights on the
device; a real worker also reads VOID's weights from disk, so its saving is larger.

With --pass2, after the pass-1 modes it times VOID pass 2 per chunk in the fast setup (model.void.pass2):
the in-place weight swap from a safetensors file (this bench writes the random weights to a temp file
once), RAFT-large flow between consecutive frames at 384x672 (random weights, 12 iterations), the noise
warp (CPU, as the backend does), and pass-2 sampling (CogVideoX DDIM, CFG 6: unconditional and conditional
halves with all windows in one transformer call per step).

Without CUDA it runs the tiny CPU configuration from `model.void.tiny` (32x32, few steps) and says so:
those numbers only show that the bench works, not how fast VOID is.

FLOPs are counted with `torch.utils.flop_counter` on one transformer call of each shape (matmuls and
attention), cross-checked with the closed form L * (24 N D^2 + 4 N^2 D); MFU = counted FLOPs per step /
measured transformer time per step / the GPU's dense bf16 peak.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import CogVideoXTransformer3DModel, DDIMScheduler  # noqa: E402

from model.void.offload import model_offload  # noqa: E402
from model.void.pipeline_void import VoidPass1Pipeline, temporal_windows  # noqa: E402
from model.void.tiny import SCHEDULER_CONFIG, TRANSFORMER_CONFIG, VAE_CONFIG  # noqa: E402
from model.void.vae import AutoencoderKLVoid  # noqa: E402

# CogVideoX 1.5 5B (the reference note's [unverified] standard values; section 2.1) with VOID's 48 channels.
FULL_TRANSFORMER = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=48, out_channels=16, time_embed_dim=512,
    text_embed_dim=4096, num_layers=42, sample_width=300, sample_height=300, sample_frames=81, patch_size=2,
    patch_size_t=2, temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False, patch_bias=True,
)
FULL_VAE = dict(block_out_channels=(128, 256, 256, 512), layers_per_block=3, latent_channels=16,
                temporal_compression_ratio=4, scaling_factor=0.7, sample_height=480, sample_width=720)
TEXT_TOKENS = 226

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s.
PEAK_BF16 = {"H200": 989.4e12, "H100 SXM": 989.4e12, "H100 80GB HBM3": 989.4e12, "H100 PCIe": 756.5e12,
             "H100 NVL": 835.5e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.05e12, "A10G": 70e12}


@dataclass
class Result:
    mode: str
    frames: int
    height: int
    width: int
    steps: int
    windows: int
    transformer_calls_per_step: int
    seconds_per_chunk: float
    transformer_s_per_step: float
    peak_vram_gib: float | None
    flops_per_step: float
    flops_per_step_closed_form: float
    mfu: float | None


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


def build(full: bool, device: torch.device, dtype: torch.dtype) -> VoidPass1Pipeline:
    t_cfg = FULL_TRANSFORMER if full else {**TRANSFORMER_CONFIG, "in_channels": 48}
    v_cfg = FULL_VAE if full else VAE_CONFIG
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # random init straight on the device, in the target dtype
            transformer = CogVideoXTransformer3DModel(**t_cfg).eval().requires_grad_(False)
            vae = AutoencoderKLVoid(**v_cfg).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)
    scheduler = DDIMScheduler.from_config({k: v for k, v in SCHEDULER_CONFIG.items() if k != "snr_shift_scale"})
    pipe = VoidPass1Pipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def closed_form_flops(pipe: VoidPass1Pipeline, batch: int, latent_frames: int, height: int, width: int) -> float:
    cfg = pipe.transformer.config
    d = cfg.num_attention_heads * cfg.attention_head_dim
    p, p_t = cfg.patch_size, cfg.patch_size_t
    n = TEXT_TOKENS + (latent_frames // p_t) * (height // 8 // p) * (width // 8 // p)
    return batch * cfg.num_layers * (24 * n * d * d + 4 * n * n * d)


def counted_flops(pipe: VoidPass1Pipeline, batch: int, latent_frames: int, height: int, width: int,
                  device: torch.device, dtype: torch.dtype) -> float:
    """FLOPs of one transformer call on (batch, latent_frames, 48, h, w), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = pipe.transformer.config
    x = torch.zeros(batch, latent_frames, 48, height // 8, width // 8, device=device, dtype=dtype)
    text = torch.zeros(batch, TEXT_TOKENS, cfg.text_embed_dim, device=device, dtype=dtype)
    rope = pipe._prepare_rotary_positional_embeddings(height, width, latent_frames, device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe.transformer(hidden_states=x, encoder_hidden_states=text, timestep=torch.full((batch,), 999, device=device),
                         image_rotary_emb=rope, return_dict=False)
    flops = float(counter.get_total_flops())
    ops = [str(op) for op in counter.get_flop_counts().get("Global", {})]
    if not any("attention" in op for op in ops):
        # Some SDPA kernels (e.g. the CPU flash kernel) have no FLOP formula registered: add QK^T and PV.
        d = cfg.num_attention_heads * cfg.attention_head_dim
        n = TEXT_TOKENS + (latent_frames // cfg.patch_size_t) * (height // 8 // cfg.patch_size) * (
            width // 8 // cfg.patch_size)
        flops += batch * cfg.num_layers * 4 * n * n * d
    return flops


class TransformerTimer:
    """Sums wall time inside transformer forward calls (CUDA events on a GPU)."""

    def __init__(self, transformer: torch.nn.Module, device: torch.device):
        self.device = device
        self.total = 0.0
        self.calls = 0
        self._start = None
        self._pending = []
        self._handles = [transformer.register_forward_pre_hook(self._pre),
                         transformer.register_forward_hook(self._post)]

    def _pre(self, *_):
        if self.device.type == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def _post(self, *_):
        self.calls += 1
        if self.device.type == "cuda":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._pending.append((self._start, end))
        else:
            self.total += time.perf_counter() - self._start

    def seconds(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.total += sum(s.elapsed_time(e) for s, e in self._pending) / 1000.0
            self._pending.clear()
        return self.total

    def reset(self):
        self.seconds()
        self.total, self.calls = 0.0, 0

    def remove(self):
        for h in self._handles:
            h.remove()


def inputs(frames: int, height: int, width: int):
    rng = np.random.default_rng(frames)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    mask = np.full((frames, height, width), 255, np.uint8)
    mask[:, height // 4: height // 2, width // 4: width // 2] = 0
    mask[:, height // 2: height // 2 + height // 8, width // 4: width // 2] = 127
    return video, mask


def run_once(pipe, video, mask, embeds, steps, batch_windows, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    pipe(video, mask, prompt_embeds=embeds, num_inference_steps=steps, batch_windows=batch_windows,
         generator=torch.Generator().manual_seed(0), output_type="np")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_mode(pipe, mode, frames, height, width, steps, device, dtype, flops_cache) -> Result:
    video, mask = inputs(frames, height, width)
    embeds = torch.randn(1, TEXT_TOKENS, pipe.transformer.config.text_embed_dim,
                         generator=torch.Generator().manual_seed(0)).to(device, dtype)
    latent_frames = (frames - 1) // 4 + 1
    windows = temporal_windows(latent_frames)
    batched = mode != "reference"
    calls_per_step = 1 if batched else len(windows)
    window_len = windows[0][1] - windows[0][0]

    # Warm-up (1 step): first-call costs (compilation, cuDNN/oneDNN kernel selection, allocator growth) are
    # not what a worker pays per chunk.
    run_once(pipe, video, mask, embeds, 1, batched, device)
    timer = TransformerTimer(pipe.transformer, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = run_once(pipe, video, mask, embeds, steps, batched, device)
    transformer_s = timer.seconds() / steps
    timer.remove()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    key = (len(windows), window_len)
    if key not in flops_cache:
        flops_cache[key] = counted_flops(pipe, len(windows), window_len, height, width, device, dtype)
    flops = flops_cache[key]
    closed = closed_form_flops(pipe, len(windows), window_len, height, width)
    peak_f = peak_flops(device)
    mfu = (flops / transformer_s) / peak_f if peak_f else None
    return Result(mode, frames, height, width, steps, len(windows), calls_per_step, round(seconds, 3),
                  round(transformer_s, 4), round(peak, 2) if peak is not None else None, float(f"{flops:.4g}"),
                  float(f"{closed:.4g}"), round(mfu, 4) if mfu is not None else None)


def set_mode(pipe, mode, device, state):
    """Switch the pipeline into `mode` (modes run in order: reference, fast, fast-compile)."""
    if mode == "reference":
        model_offload(pipe, device)  # diffusers' enable_model_cpu_offload, as the reference calls it
        state["offload"] = True
        return
    if state.pop("offload", None):
        pipe.remove_all_hooks()
        pipe.to(device)
    if not state.get("fused"):
        pipe.transformer.fuse_qkv_projections()
        state["fused"] = True
    if mode == "fast-compile" and not state.get("compiled"):
        for block in pipe.transformer.transformer_blocks:
            block.compile()
        state["compiled"] = True


def bench_warm_worker(shots: int, frames: int, height: int, width: int, steps: int, device, dtype,
                      full: bool) -> tuple[list[dict], int]:
    """(per-shot model_load_s and chunk seconds, loads) for `shots` one-chunk shots through one warm worker."""
    from model.removal import WarmBackend

    warm, rows = WarmBackend(), []
    video, mask = inputs(frames, height, width)
    for shot in range(shots):
        pipe, load_s = warm.get(("void", str(device), str(dtype)), lambda: build(full, device, dtype))
        embeds = torch.randn(1, TEXT_TOKENS, pipe.transformer.config.text_embed_dim,
                             generator=torch.Generator().manual_seed(shot)).to(device, dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        chunk_s = run_once(pipe, video, mask, embeds, steps, True, device)
        rows.append({"shot": shot, "model_load_s": round(load_s, 3), "chunk_s": round(chunk_s, 3)})
    return rows, warm.loads


def bench_pass2(pipe, frames: int, height: int, width: int, steps: int, device, dtype, weights_file: Path,
                full: bool) -> dict:
    """Seconds per chunk for pass 2's parts: weight swap, RAFT flow, noise warp, CFG sampling."""
    from diffusers.schedulers import CogVideoXDDIMScheduler
    from torchvision.models.optical_flow import raft_large, raft_small

    from model.void.flow import compute_flows
    from model.void.noise_warp import warp_noise
    from model.void.pass2 import VoidPass2Pipeline, load_transformer_weights_in_place

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    pipe2 = VoidPass2Pipeline(None, None, pipe.vae, pipe.transformer, CogVideoXDDIMScheduler.from_config(
        SCHEDULER_CONFIG))
    pipe2.set_progress_bar_config(disable=True)
    sync()
    t0 = time.perf_counter()
    load_transformer_weights_in_place(pipe.transformer, weights_file)
    sync()
    swap_s = time.perf_counter() - t0

    video, mask = inputs(frames, height, width)
    raft = (raft_large if full else raft_small)(weights=None, progress=False).to(device).eval()
    compute_flows(raft, video[:3], iters=12, device=device)  # warm-up (cuDNN algorithm choice)
    sync()
    t0 = time.perf_counter()
    flows = compute_flows(raft, video, iters=12, device=device).half().float()
    sync()
    flow_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    noise = warp_noise(flows, frames, 16, torch.Generator().manual_seed(0))[None]
    warp_s = time.perf_counter() - t0

    embeds = torch.randn(2, TEXT_TOKENS, pipe.transformer.config.text_embed_dim,
                         generator=torch.Generator().manual_seed(0)).to(device, dtype)
    kwargs = dict(prompt_embeds=embeds[1:], negative_prompt_embeds=embeds[:1], guidance_scale=6.0,
                  batch_windows=True, generator=torch.Generator().manual_seed(0), output_type="np")
    pipe2(video, mask, warped_noise=noise, num_inference_steps=1, **kwargs)  # warm-up
    timer = TransformerTimer(pipe.transformer, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0 = time.perf_counter()
    pipe2(video, mask, warped_noise=noise, num_inference_steps=steps, **kwargs)
    sync()
    sample_s = time.perf_counter() - t0
    transformer_s = timer.seconds() / steps
    timer.remove()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"frames": frames, "steps": steps, "swap_s": round(swap_s, 3), "raft": "raft_large" if full else
            "raft_small", "flow_s": round(flow_s, 3), "flow_s_per_pair": round(flow_s / (frames - 1), 4),
            "warp_s": round(warp_s, 3), "sample_s": round(sample_s, 3),
            "transformer_s_per_step": round(transformer_s, 4),
            "total_s": round(flow_s + warp_s + sample_s, 3), "peak_vram_gib": round(peak, 2) if peak else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[85, 197])
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50 on CUDA, 4 on CPU)")
    parser.add_argument("--modes", nargs="+", default=None, choices=["reference", "fast", "fast-compile"])
    parser.add_argument("--pass2", action="store_true", help="also time VOID pass 2 (fast setup)")
    parser.add_argument("--warm-shots", type=int, default=5, help="one-chunk shots through one warm worker (0: skip)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    height, width = (384, 672) if cuda else (32, 32)
    steps = args.steps or (50 if cuda else 4)
    modes = args.modes or (["reference", "fast", "fast-compile"] if cuda else ["reference", "fast"])
    if cuda:
        print(f"device: {torch.cuda.get_device_name(device)}; full-size VOID pass 1 (CogVideoX 1.5 5B, 48 ch), "
              f"random weights, bf16, {height}x{width}, {steps} steps; T5 excluded (cached embeddings)")
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        print("CUDA is not available: running the SMALL CPU configuration (model.void.tiny: 2-layer DiT, tiny VAE) "
              f"at {height}x{width}, fp32, {steps} steps. These numbers do not describe VOID's speed; run on a GPU.")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {torch.get_num_threads()} CPU threads")

    pipe = build(cuda, device, dtype)
    state, flops_cache, results = {}, {}, []
    for mode in modes:
        set_mode(pipe, mode, device, state)
        for frames in args.frames:
            results.append(bench_mode(pipe, mode, frames, height, width, steps, device, dtype, flops_cache))
            r = results[-1]
            print(f"  {mode:12s} {frames:3d} frames: {r.seconds_per_chunk:8.2f} s/chunk, "
                  f"{r.transformer_s_per_step:7.3f} s transformer/step ({r.transformer_calls_per_step} call(s), "
                  f"{r.windows} window(s)), peak VRAM {r.peak_vram_gib if r.peak_vram_gib is not None else 'n/a'} GiB, "
                  f"{r.flops_per_step:.3g} FLOP/step (closed form {r.flops_per_step_closed_form:.3g}), "
                  f"MFU {f'{r.mfu:.1%}' if r.mfu is not None else 'n/a'}", flush=True)

    print()
    header = ["mode", "frames", "windows", "calls/step", "s/chunk", "transf s/step", "peak VRAM GiB", "FLOP/step",
              "MFU"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in results:
        print(" | ".join(str(x) for x in [r.mode, r.frames, r.windows, r.transformer_calls_per_step,
                                           r.seconds_per_chunk, r.transformer_s_per_step,
                                           r.peak_vram_gib if r.peak_vram_gib is not None else "n/a",
                                           f"{r.flops_per_step:.3g}", f"{r.mfu:.1%}" if r.mfu is not None else "n/a"]))
    warm = []
    if args.warm_shots:
        frames = args.frames[0]
        print(f"\nwarm worker: {args.warm_shots} one-chunk shots of {frames} frames, fast setup, one process:")
        warm, loads = bench_warm_worker(args.warm_shots, frames, height, width, steps, device, dtype, cuda)
        for r in warm:
            print(f"  shot {r['shot']}: model_load_s {r['model_load_s']:.2f}, chunk {r['chunk_s']:.2f} s", flush=True)
        first_load, chunks = warm[0]["model_load_s"], sum(r["chunk_s"] for r in warm)
        print(f"  loads: {loads} for {len(warm)} shots; GPU seconds warm {first_load + chunks:.1f}, a process per "
              f"shot {len(warm) * first_load + chunks:.1f} (the first load again for each shot)")
    pass2 = []
    if args.pass2:
        import tempfile

        from safetensors.torch import save_file

        set_mode(pipe, "fast", device, state)
        # the temp checkpoint is this model's own state dict (fused QKV included), so the swap's key check holds
        print("\npass 2 (fast setup: resident, windows + CFG halves batched, eager):")
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "void_pass2.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in pipe.transformer.state_dict().items()},
                      str(weights))
            for frames in args.frames:
                r = bench_pass2(pipe, frames, height, width, steps, device, dtype, weights, cuda)
                pass2.append(r)
                print(f"  {frames:3d} frames: swap {r['swap_s']:.2f} s, {r['raft']} flow {r['flow_s']:.2f} s "
                      f"({r['flow_s_per_pair'] * 1000:.1f} ms/pair), warp {r['warp_s']:.2f} s, sampling "
                      f"{r['sample_s']:.2f} s ({r['transformer_s_per_step']:.3f} s transformer/step), "
                      f"total {r['total_s']:.2f} s/chunk, peak VRAM {r['peak_vram_gib'] or 'n/a'} GiB", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "cuda": cuda,
                                         "gpu": torch.cuda.get_device_name(device) if cuda else None,
                                         "results": [asdict(r) for r in results], "warm_worker": warm, "pass2": pass2},
                                        indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
