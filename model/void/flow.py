"""Optical flow for VOID pass 2: torchvision RAFT with weights from the model directory, never the network.

    <model_dir>/raft/raft_large.pth     torchvision `Raft_Large_Weights.C_T_SKHT_V2` (the reference's choice)
    <model_dir>/raft/raft_small.pth     or `Raft_Small_Weights.C_T_V2`, for `raft_model="raft_small"`

(`.safetensors` next to them is read first if present.) Provision them once, offline, e.g. from
https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth (torchvision names its files
with the first 8 hex digits of their sha256; a mismatch is logged, not refused, so the tiny test model's
random weights load too). `.pth` files are read with `torch.load(weights_only=True)`: tensors only, no
pickled code.

Reference behaviour matched (note section 4.2): RAFT-large, C_T_SKHT_V2 weights, input in [-1, 1], flow
between consecutive frames, 12 refinement iterations. Deliberate differences: the weights come from a
local file (the reference downloads them on first use, section 7.5), and flow is computed on the whole
frame at the model's own resolution and aspect (384x672) instead of a 480x720 centre crop of a 72-frame
resample at half size. `scale` < 1 trades accuracy for speed without changing the aspect.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from model.void.files import file_sha256

log = logging.getLogger(__name__)

RAFT_MODELS = ("raft_large", "raft_small")
# sha256 prefixes in torchvision's file names (raft_large_C_T_SKHT_V2-ff5fadd5.pth, raft_small_C_T_V2-01064c6d.pth)
KNOWN_SHA256_PREFIX = {"raft_large": "ff5fadd5", "raft_small": "01064c6d"}
DOWNLOAD_HINT = {
    "raft_large": "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    "raft_small": "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
}
RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps >= 16 px, i.e. images >= 128 px
RAFT_MULTIPLE = 8


def raft_weights_path(model_dir: str | os.PathLike, raft_model: str = "raft_large") -> Path:
    """The RAFT weight file in `model_dir` (`raft/<model>.safetensors` if present, else `raft/<model>.pth`).

    Raises FileNotFoundError naming the expected path when neither exists.
    """
    if raft_model not in RAFT_MODELS:
        raise ValueError(f"raft_model must be one of {', '.join(RAFT_MODELS)}, got {raft_model!r}")
    folder = Path(model_dir) / "raft"
    for name in (f"{raft_model}.safetensors", f"{raft_model}.pth"):
        if (folder / name).is_file():
            return folder / name
    others = sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []
    raise FileNotFoundError(
        f"RAFT weights for VOID pass 2 not found: expected {folder / f'{raft_model}.pth'} (or .safetensors). "
        f"Nothing is downloaded at run time; copy torchvision's state dict there ({DOWNLOAD_HINT[raft_model]})"
        + (f". Found in {folder}: {', '.join(others)}" if others else ""))


def load_raft(model_dir: str | os.PathLike, raft_model: str = "raft_large", device: torch.device | str = "cpu",
              cache_dir=None) -> tuple[torch.nn.Module, str]:
    """(RAFT in eval mode on `device`, sha256 of its weight file). Keys and shapes must match exactly."""
    from torchvision.models.optical_flow import raft_large, raft_small

    path = raft_weights_path(model_dir, raft_model)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    model = (raft_large if raft_model == "raft_large" else raft_small)(weights=None, progress=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} is not a torchvision {raft_model} state dict: missing {len(missing)} keys "
                         f"({', '.join(missing[:5])}), unexpected {len(unexpected)} ({', '.join(unexpected[:5])})")
    sha = file_sha256(path, cache_dir)
    if not sha.startswith(KNOWN_SHA256_PREFIX[raft_model]):
        log.info("%s: sha256 %s... is not torchvision's released %s weights (%s)", path, sha[:12], raft_model,
                 KNOWN_SHA256_PREFIX[raft_model])
    return model.to(device).eval().requires_grad_(False), sha


def flow_size(height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
    """(h, w) RAFT runs at: `scale` x the frame, multiples of 8, enlarged (same aspect) to >= 128 px a side.

    Frames below RAFT's minimum only occur with tiny test models; they are enlarged and the flow scaled back.
    """
    if scale <= 0:
        raise ValueError(f"flow scale must be > 0, got {scale}")
    h, w = height * scale, width * scale
    grow = max(1.0, RAFT_MIN_SIDE / min(h, w))
    h, w = h * grow, w * grow
    return (max(RAFT_MIN_SIDE, int(round(h / RAFT_MULTIPLE)) * RAFT_MULTIPLE),
            max(RAFT_MIN_SIDE, int(round(w / RAFT_MULTIPLE)) * RAFT_MULTIPLE))


@torch.no_grad()
def compute_flows(raft: torch.nn.Module, frames, stride: int = 1, iters: int = 12, scale: float = 1.0,
                  batch: int = 8, device: torch.device | str | None = None) -> torch.Tensor:
    """Forward flows `(P, 2, H, W)` float32 (CPU) between frames `i*stride` and `(i+1)*stride` of `frames`.

    Args:
        frames: `(T, H, W, 3)` uint8 RGB (numpy or torch); P = (T - 1) // stride.
        iters: RAFT's recurrent refinement steps (`num_flow_updates`; 12 is torchvision's and the reference's).
        scale: RAFT runs at `flow_size(H, W, scale)`; the flow is resized back to H x W and its vectors
            rescaled, so it is always in pixels of the frames given.
        batch: frame pairs per RAFT call.
    Channel 0 is the horizontal (x) displacement, channel 1 the vertical (y), from frame i to frame i+stride.
    """
    device = torch.device(device) if device is not None else next(raft.parameters()).device
    video = torch.as_tensor(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {tuple(video.shape)} {video.dtype}")
    num_frames, height, width = video.shape[:3]
    if num_frames < stride + 1:
        raise ValueError(f"need at least {stride + 1} frames for flow at stride {stride}, got {num_frames}")
    fh, fw = flow_size(height, width, scale)
    pairs = (num_frames - 1) // stride
    out = torch.empty(pairs, 2, height, width, dtype=torch.float32)
    # Deterministic cuDNN convolutions: the same frames give the same flow, hence the same noise, run to run.
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True):
        for begin in range(0, pairs, batch):
            idx = torch.arange(begin, min(begin + batch, pairs))
            out[idx] = _raft_batch(raft, video, idx, stride, iters, fh, fw, height, width, device)
    return out


def _raft_batch(raft, video, idx, stride, iters, fh, fw, height, width, device) -> torch.Tensor:
    """Flows for pairs `idx` at RAFT's size, resized back to (height, width), on the CPU."""
    first = _prepare(video[idx * stride], fh, fw, device)
    second = _prepare(video[(idx + 1) * stride], fh, fw, device)
    flow = raft(first, second, num_flow_updates=iters)[-1].float()
    if (fh, fw) != (height, width):
        flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False,
                             antialias=fh > height or fw > width)
        flow[:, 0] *= width / fw
        flow[:, 1] *= height / fh
    return flow.cpu()


def _prepare(frames: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, height, width) in [-1, 1] on `device` (RAFT's input)."""
    x = frames.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if tuple(x.shape[-2:]) != (height, width):
        shrink = height < x.shape[-2] or width < x.shape[-1]
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return x.contiguous()
