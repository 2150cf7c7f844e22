"""VOID's components from a model directory: T5, the VAE, the scheduler, and the strictly checked transformer.

Every `from_pretrained` gets a local directory and `local_files_only=True`. Deliberate difference from the
reference loader (section 2.3): it builds an fp32 model, loads the base weights, widens the patch embed,
then loads VOID's file with `strict=False` and only logs missing and unexpected keys, so a wrong or partial
checkpoint runs silently on base weights. Here the transformer is built on the meta device, the
checkpoint's keys and shapes are checked against it first (any difference is an error naming the keys),
and each tensor is read straight into the target dtype and device.
"""
from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from model.void.files import read_json

log = logging.getLogger(__name__)

VOID_IN_CHANNELS = 48  # [noisy latent 16 | VAE(mask) 16 | VAE(video) 16], reference note section 0.2


def load_text_encoder(directory: str | os.PathLike, dtype: torch.dtype, device: torch.device):
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
    return model.to(device).eval().requires_grad_(False)


def load_vae(directory: str | os.PathLike, dtype: torch.dtype, device: torch.device):
    from model.void.vae import AutoencoderKLVoid

    vae = AutoencoderKLVoid.from_pretrained(str(directory), torch_dtype=dtype, local_files_only=True)
    vae = AutoencoderKLVoid.from_vae(vae)  # swap in VOID's upsamplers now, before any offload hooks wrap modules
    return vae.to(device).eval().requires_grad_(False)


def load_scheduler(directory: str | os.PathLike):
    """DDIMScheduler from the base config (reference pass 1, `sampler_name="DDIM_Origin"`, section 2.1).

    `snr_shift_scale` belongs to CogVideoXDDIMScheduler (pass 2): DDIM ignores it, but it is logged because
    the two passes only agree when it is 1.0 (the note measured divergence at the class default 3.0).
    """
    from diffusers import DDIMScheduler

    raw = read_json(Path(directory) / "scheduler_config.json")
    snr = raw.get("snr_shift_scale")
    log.info("scheduler config: class %s, prediction %s, spacing %s, zero-SNR %s, snr_shift_scale %s",
             raw.get("_class_name"), raw.get("prediction_type"), raw.get("timestep_spacing"),
             raw.get("rescale_betas_zero_snr"), snr if snr is not None else "absent (CogVideoXDDIM default 3.0)")
    return DDIMScheduler.from_config({k: v for k, v in raw.items() if k != "snr_shift_scale"})


@dataclass(frozen=True)
class TransformerInfo:
    """What the transformer config says beyond diffusers' arguments."""

    add_noise_in_inpaint_model: bool  # VideoX-Fun's switch for noise on the conditioning video
    ignored_config_keys: tuple[str, ...]


def transformer_config(model_dir: str | os.PathLike) -> tuple[dict, TransformerInfo]:
    """(diffusers' arguments for VOID's transformer, with in_channels 48; the rest of what the config says).

    Reads transformer/config.json and builds nothing, so a backend's identity can be known without weights.
    """
    from diffusers import CogVideoXTransformer3DModel

    path = Path(model_dir) / "transformer" / "config.json"
    config = read_json(path)
    if not config:
        raise FileNotFoundError(f"missing or unreadable {path}")
    accepted = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters) - {"self"}
    ignored = tuple(sorted(k for k in config if not k.startswith("_") and k not in accepted))
    kwargs = {k: v for k, v in config.items() if k in accepted}
    kwargs["in_channels"] = VOID_IN_CHANNELS
    return kwargs, TransformerInfo(bool(config.get("add_noise_in_inpaint_model", False)), ignored)


def load_transformer(model_dir: str | os.PathLike, weights: str | os.PathLike, dtype: torch.dtype,
                     device: torch.device) -> tuple["torch.nn.Module", TransformerInfo]:
    """`CogVideoXTransformer3DModel(in_channels=48)` with exactly the tensors of `weights`, in `dtype` on `device`.

    Raises ValueError naming missing keys, unexpected keys and shape mismatches: a partial checkpoint, a
    33-channel one, or one for other dimensions never runs.
    """
    from diffusers import CogVideoXTransformer3DModel
    from safetensors import safe_open

    kwargs, info = transformer_config(model_dir)
    if info.ignored_config_keys:
        log.info("transformer config keys diffusers does not take (ignored): %s", ", ".join(info.ignored_config_keys))
    with torch.device("meta"):
        model = CogVideoXTransformer3DModel.from_config(kwargs)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    weights = Path(weights)
    load_device = "cpu" if device.type == "meta" else str(device)
    with safe_open(str(weights), framework="pt", device=load_device) as f:
        problems = checkpoint_mismatch(f, expected)
        if problems:
            raise ValueError(f"{weights.name} does not fit CogVideoXTransformer3DModel(in_channels={VOID_IN_CHANNELS}) "
                             f"from {Path(model_dir) / 'transformer' / 'config.json'}: {problems}")
        state = {k: f.get_tensor(k).to(dtype) for k in sorted(f.keys())}
    model.load_state_dict(state, strict=True, assign=True)
    del state
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"tensors not covered by {weights.name}: {_preview(leftover)}")
    return model.eval().requires_grad_(False), info


def checkpoint_mismatch(f, expected: dict[str, tuple[int, ...]]) -> str | None:
    """Why the open safetensors file `f` does not fit a model with `expected` key -> shape (None: it fits).

    Names missing keys, unexpected keys and shape mismatches, so a wrong checkpoint is refused before any
    tensor is read.
    """
    found = set(f.keys())
    missing = sorted(set(expected) - found)
    unexpected = sorted(found - set(expected))
    mismatched = sorted(f"{k}: checkpoint {tuple(f.get_slice(k).get_shape())} vs model {expected[k]}"
                        for k in set(expected) & found if tuple(f.get_slice(k).get_shape()) != expected[k])
    problems = [f"{label} ({len(items)}): {_preview(items)}"
                for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches", mismatched)) if items]
    return "; ".join(problems) or None


def _preview(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")
