"""VOID pass 2: warped-noise refinement of pass 1's result, for every chunk length (85..197 frames).

Pass 2 runs the same model a second time with `void_pass2.safetensors`, starting the sampler from noise
that moves with the pass-1 result instead of fresh noise. What this module holds, in the order it is used:

- `WarpedNoiseSource`: RAFT flow on the pass-1 frames (`model.void.flow`) -> warped latent noise
  (`model.void.noise_warp`), both cached by content;
- `load_transformer_weights_in_place`: swap pass 1 <-> pass 2 weights into the one transformer;
- `load_pass2_scheduler`: CogVideoXDDIMScheduler from the base config;
- `VoidPass2Pipeline`: pass 1's pipeline steps with the warped noise as initial latents, CFG 6 with an
  empty negative prompt by default, and an explicit mask quantisation (`mask_mode`).

Reference behaviour matched (`reference/void_inference.md` section 4.4): the pass-2 checkpoint in the same
architecture, CogVideoXDDIMScheduler from the base scheduler config, 50 steps, CFG 6.0 with negative prompt
"", unconditional and conditional halves in one transformer call, the same video / quadmask / prompt
conditioning as pass 1 (the full original video; pass 1's output only shapes the noise), `strength` 1 with
the supplied latents as x_T.
Deliberate differences (section 7.2-7.5): the noise covers every latent frame of the chunk, so windowed
denoising works unchanged for 93..197 frames (the reference's 22 latents crash beyond 85 frames); the noise
is aligned, unit-variance and seeded (module `noise_warp`); the mask quantisation is a choice,
`mask_mode="trimask"` (as trained, the default) or `"binary"` (the reference's pass 2, `use_trimask=False`);
RAFT weights come from the model directory; the cache is keyed by content, not by file name; the weights
are swapped into one transformer in place instead of a second process loading a second model.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.void.components import checkpoint_mismatch
from model.void.flow import compute_flows, load_raft
from model.void.noise_warp import SPATIAL_FACTOR, TEMPORAL_FACTOR, warp_noise
from model.void.pipeline_void import VoidOutput, VoidPass1Pipeline
from storage.keys import PixelDigest, content_key

log = logging.getLogger(__name__)

PASS2_WEIGHTS = "void_pass2.safetensors"
MASK_MODES = ("trimask", "binary")
PASS2_STEPS = 50
PASS2_GUIDANCE = 6.0
PASS2_NEGATIVE_PROMPT = ""
# Bump when a change alters the flow or the noise computed from the same inputs (they are in the cache keys).
FLOW_REVISION = 1
NOISE_REVISION = 1


def derive_seed(seed: int, purpose: str) -> int:
    """A 31-bit seed for one use of a chunk seed, so that no two draws of a chunk share a random stream."""
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# --- weights ------------------------------------------------------------------------------------------------

def load_transformer_weights_in_place(transformer: torch.nn.Module, weights: str | os.PathLike) -> None:
    """Copy every tensor of `weights` (safetensors) into `transformer`'s existing parameters and buffers.

    One transformer, two checkpoints: the parameters keep their storage, device and dtype (values are cast),
    so offload hooks, compiled blocks and references to the module stay valid, and only one tensor at a time
    is held beside the model. Keys and shapes must match exactly; a mismatch is an error naming them, and
    nothing is copied.
    """
    from safetensors import safe_open

    from model.void.offload import live_weights

    weights = Path(weights)
    state = live_weights(transformer)  # tensors sharing storage with the live parameters (or offloaded weights)
    expected = {k: tuple(v.shape) for k, v in state.items()}
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        problems = checkpoint_mismatch(f, expected)
        if problems:
            raise ValueError(f"{weights.name} does not fit the loaded transformer: {problems}")
        with torch.no_grad():
            for key in sorted(f.keys()):
                state[key].copy_(f.get_tensor(key))


def load_pass2_scheduler(directory: str | os.PathLike):
    """CogVideoXDDIMScheduler from the base scheduler config, as the reference's pass 2 builds it (section 2.1).

    With `snr_shift_scale` 1.0 it gives DDIM's trajectories (note section 2.2, verified to 3e-6); a config
    without the key gets the class default 3.0, as in the reference, and a warning.
    """
    from diffusers.schedulers import CogVideoXDDIMScheduler

    path = Path(directory) / "scheduler_config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"missing or unreadable scheduler config {path}: {e}") from e
    if "snr_shift_scale" not in raw:
        log.warning("%s has no snr_shift_scale: CogVideoXDDIMScheduler uses 3.0 (the reference's pass 2 does "
                    "too), so pass 2 samples differently from pass 1's DDIM", path)
    return CogVideoXDDIMScheduler.from_config(raw)


# --- flow and noise, cached ---------------------------------------------------------------------------------

def check_flow_settings(iters: int, stride: int) -> None:
    """Refuse flow settings RAFT or the warp cannot use, before anything loads."""
    if iters < 1:
        raise ValueError(f"flow iterations must be >= 1, got {iters}")
    if stride not in (1, 2, 4):
        raise ValueError(f"flow stride must be 1, 2 or 4 (it must divide the VAE's 4 frames), got {stride}")


def noise_version(raft_model: str, raft_sha256: str, iters: int = 12, scale: float = 1.0, stride: int = 1,
                  normalize: bool = True, relocate: bool = True) -> str:
    """What decides the warped noise besides the frames and the seed (part of a two-pass backend's version)."""
    return (f"raft-{raft_model}-{raft_sha256[:8]}+it{int(iters)}+fs{float(scale):g}+st{int(stride)}"
            f"+flow.r{FLOW_REVISION}+noise.r{NOISE_REVISION}+norm{int(normalize)}+reloc{int(relocate)}")


class WarpedNoiseSource:
    """Warped latent noise for a chunk from its (padded) pass-1 frames: RAFT flow, then `warp_noise`.

    Flow and noise are cached on an `ArtifactStore` (or a local folder) by content:
    - flow key: sha256 of the frames (shape and bytes) + RAFT model, its weights' sha256, iterations,
      scale, stride and `FLOW_REVISION`; stored as float16 (P, 2, H, W), about 1 MB per frame at 384x672;
    - noise key: flow key + seed + channels, factors, normalisation, relocation and `NOISE_REVISION`;
      float32 (T_lat, C, H/8, W/8), about 0.26 MB per latent frame at 384x672.
    A rerun with the same pass-1 output and parameters reads the noise and runs neither RAFT nor the warp.
    Flows are rounded to float16 before warping whether fresh or cached, so both paths give the same noise.

    Args:
        model_dir: local model directory (RAFT weights under `raft/`).
        raft_model: `raft_large` (default, the reference's) or `raft_small`.
        iters, scale, stride, batch: see `model.void.flow.compute_flows`.
        device: where RAFT runs. `warp_device`: where the noise is warped (CPU: deterministic).
        cache: an `ArtifactStore`, a folder path or URI for one, or None for no cache.
        cache_flow: also cache the flows (large; the noise cache alone makes reruns free).
        normalize, relocate: `warp_noise` / `NoiseWarper` options.
    """

    def __init__(self, model_dir: str | os.PathLike, raft_model: str = "raft_large", iters: int = 12,
                 scale: float = 1.0, stride: int = 1, batch: int = 8, device: torch.device | str = "cpu",
                 warp_device: torch.device | str = "cpu", cache=None, cache_flow: bool = True,
                 normalize: bool = True, relocate: bool = True, sha_cache_dir=None):
        check_flow_settings(iters, stride)
        self.raft, self.raft_sha256 = load_raft(model_dir, raft_model, device, sha_cache_dir)
        self.raft_model, self.iters, self.scale, self.stride, self.batch = raft_model, int(iters), float(scale), \
            int(stride), int(batch)
        self.device = torch.device(device)
        self.warp_device = torch.device(warp_device)
        self.normalize, self.relocate = bool(normalize), bool(relocate)
        self.store = _as_store(cache)
        self.cache_flow = bool(cache_flow)
        self.last: dict[str, Any] = {}  # what the last `noise` call did (cache hits, seconds)

    @property
    def version(self) -> str:
        return noise_version(self.raft_model, self.raft_sha256, self.iters, self.scale, self.stride, self.normalize,
                             self.relocate)

    def flow_key(self, frames: np.ndarray) -> str:
        pixels = PixelDigest()
        pixels.update(frames)
        return content_key("void-pass2-flow", {
            "frames": pixels.hexdigest(), "raft": self.raft_model, "raft_sha256": self.raft_sha256,
            "iters": self.iters, "scale": self.scale, "stride": self.stride, "revision": FLOW_REVISION})

    def noise_key(self, flow_key: str, seed: int, channels: int, spatial_factor: int, temporal_factor: int) -> str:
        return content_key("void-pass2-noise", {
            "flow": flow_key, "seed": int(seed), "channels": channels, "spatial": spatial_factor,
            "temporal": temporal_factor, "normalize": self.normalize, "relocate": self.relocate,
            "revision": NOISE_REVISION})

    def flows(self, frames: np.ndarray, key: str | None = None) -> torch.Tensor:
        """Forward flows `(P, 2, H, W)` float32 (float16-rounded) for `frames`, from the cache if there."""
        key = key or self.flow_key(frames)
        cached = self._get(f"flow/{key}.safetensors", "flow")
        self.last["flow_cached"] = cached is not None
        if cached is not None:
            return cached.float()
        t0 = time.perf_counter()
        flows = compute_flows(self.raft, frames, stride=self.stride, iters=self.iters, scale=self.scale,
                              batch=self.batch, device=self.device).half()
        self.last["flow_s"] = time.perf_counter() - t0
        if self.cache_flow:
            self._put(f"flow/{key}.safetensors", "flow", flows, {"frames": str(frames.shape[0])})
        return flows.float()

    def noise(self, frames: np.ndarray, seed: int, channels: int = 16, spatial_factor: int = SPATIAL_FACTOR,
              temporal_factor: int = TEMPORAL_FACTOR) -> torch.Tensor:
        """Warped noise `(1, T_lat, channels, H/8, W/8)` float32 for the padded pass-1 `frames` `(T, H, W, 3)`.

        Seeded from `seed` (the chunk seed; its own stream via `derive_seed`); T = 4k+1 frames give k+1
        latent frames, every one of them warped.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"pass-1 frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        self.last = {"flow_cached": None, "noise_cached": False, "flow_s": 0.0, "warp_s": 0.0}
        flow_key = self.flow_key(frames)
        key = self.noise_key(flow_key, seed, channels, spatial_factor, temporal_factor)
        cached = self._get(f"noise/{key}.safetensors", "noise")
        if cached is not None:
            self.last["noise_cached"] = True
            return cached[None]
        flows = self.flows(frames, flow_key)
        t0 = time.perf_counter()
        generator = torch.Generator(device="cpu").manual_seed(derive_seed(seed, "void-pass2-warped-noise"))
        noise = warp_noise(flows, frames.shape[0], channels, generator, stride=self.stride,
                           spatial_factor=spatial_factor, temporal_factor=temporal_factor, normalize=self.normalize,
                           device=self.warp_device, relocate=self.relocate)
        self.last["warp_s"] = time.perf_counter() - t0
        self._put(f"noise/{key}.safetensors", "noise", noise, {"seed": str(int(seed)), "flow_key": flow_key})
        return noise[None]

    def _get(self, key: str, name: str) -> torch.Tensor | None:
        if self.store is None or not self.store.exists(key):
            return None
        from safetensors.torch import load

        try:
            return load(self.store.get_bytes(key))[name]
        except Exception as e:  # a damaged entry is recomputed (and overwritten), never trusted
            log.warning("ignoring unreadable pass-2 cache entry %s: %s", self.store.uri(key), e)
            return None

    def _put(self, key: str, name: str, tensor: torch.Tensor, metadata: dict[str, str]) -> None:
        if self.store is None:
            return
        from safetensors.torch import save

        try:
            self.store.put_bytes(key, save({name: tensor.contiguous()}, metadata=metadata))
        except Exception as e:  # the cache is an optimisation: a full or read-only store must not fail a chunk
            log.warning("could not write pass-2 cache entry %s: %s", key, e)


def _as_store(cache):
    if cache is None or cache is False:
        return None
    from storage.store import ArtifactStore

    if isinstance(cache, ArtifactStore):
        return cache
    return ArtifactStore(os.fspath(cache))


# --- the pipeline ---------------------------------------------------------------------------------------------

class VoidPass2Pipeline(VoidPass1Pipeline):
    r"""
    VOID pass 2: refine a removal by sampling again from noise warped along pass 1's motion.

    The components are pass 1's (the same objects: one transformer, holding the pass-2 weights while this
    runs, see `load_transformer_weights_in_place`), except the scheduler.

    Args:
        tokenizer ([`T5Tokenizer`]), text_encoder ([`T5EncoderModel`]), vae ([`AutoencoderKLVoid`]):
            As for [`VoidPass1Pipeline`].
        transformer ([`CogVideoXTransformer3DModel`]):
            `in_channels=48`, carrying the VOID pass 2 weights.
        scheduler ([`CogVideoXDDIMScheduler`]):
            From the base model's scheduler config (`load_pass2_scheduler`), the reference's pass 2 sampler.
    """

    def __init__(self, tokenizer, text_encoder, vae, transformer, scheduler):
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                         scheduler=scheduler)
        self._mask_mode = "trimask"

    def check_pass2_inputs(self, video: torch.Tensor, warped_noise: torch.Tensor, mask_mode: str) -> torch.Tensor:
        """The warped noise as `(1, T_lat, C, H/8, W/8)`; errors name the expected shape and mask modes."""
        if mask_mode not in MASK_MODES:
            raise ValueError(f"`mask_mode` must be one of {MASK_MODES} ('trimask': affected regions as trained, "
                             f"'binary': the reference pass 2's affected -> remove), got {mask_mode!r}")
        if warped_noise is None:
            raise ValueError("pass 2 needs `warped_noise` (see `WarpedNoiseSource.noise`)")
        noise = torch.as_tensor(warped_noise)
        if noise.ndim == 4:
            noise = noise[None]
        if video.ndim == 4:
            frames, height, width = video.shape[:3]
            shape = (1, (frames - 1) // self.vae_scale_factor_temporal + 1, self.transformer.config.out_channels,
                     height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
            if tuple(noise.shape) != shape:
                raise ValueError(
                    f"`warped_noise` must cover every latent frame of the {frames}-frame chunk: expected {shape}, "
                    f"got {tuple(noise.shape)} (the reference's fixed 22 latents only fit 85 frames)")
        return noise

    def prepare_mask_latents(self, video, quadmask, dtype, device, generator, noise_aug_strength: float = 0.0,
                             binarize_mask: bool | None = None) -> torch.Tensor:
        """Pass 1's step 5, with the quadmask quantised per this call's `mask_mode` unless told otherwise."""
        if binarize_mask is None:
            binarize_mask = self._mask_mode == "binary"
        return super().prepare_mask_latents(video, quadmask, dtype, device, generator, noise_aug_strength,
                                            binarize_mask)

    @torch.no_grad()
    def __call__(
        self,
        video: np.ndarray | torch.Tensor,
        quadmask: np.ndarray | torch.Tensor,
        warped_noise: torch.Tensor,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        num_inference_steps: int = PASS2_STEPS,
        guidance_scale: float = PASS2_GUIDANCE,
        mask_mode: str = "trimask",
        generator: torch.Generator | None = None,
        **pass1_kwargs,
    ) -> VoidOutput | tuple:
        r"""
        Refine the removal of what the quadmask marks from `video`, starting from `warped_noise`.

        0. Check the pass-2 inputs: `mask_mode`, and noise covering every latent frame of the chunk.
        1-7. Pass 1's steps (`VoidPass1Pipeline.__call__`) with the warped noise as step 4's initial latents
           (x_T, times `init_noise_sigma` = 1) and step 5's mask quantised per `mask_mode`; windowed
           denoising for chunks longer than one window works as in pass 1, since the noise spans the chunk.

        Args:
            video, quadmask, prompt:
                As for [`VoidPass1Pipeline`]. `video` is the original chunk (not pass 1's output), as in the
                reference.
            **pass1_kwargs:
                `prompt_embeds`, `negative_prompt_embeds`, `noise_aug_strength`, `window_size`, `window_overlap`,
                `batch_windows`, `output_type`, `return_dict`, `attention_kwargs`, `callback_on_step_end`,
                `callback_on_step_end_tensor_inputs`, `max_sequence_length`: as for [`VoidPass1Pipeline`], with
                its defaults (`latents` is the warped noise).
            warped_noise (`torch.Tensor`):
                `(1, latent_frames, 16, height/8, width/8)` (or without the batch axis), e.g. from
                `WarpedNoiseSource.noise` on the pass-1 result.
            negative_prompt (`str`, *optional*):
                None means `""`, the reference's pass 2 negative prompt. Pass this or `negative_prompt_embeds`.
            num_inference_steps (`int`, *optional*, defaults to 50):
                Steps of the CogVideoX DDIM scheduler.
            guidance_scale (`float`, *optional*, defaults to 6.0):
                Classifier-free guidance; unconditional and conditional halves run in one transformer call.
            mask_mode (`str`, *optional*, defaults to `"trimask"`):
                `"trimask"`: remove/overlap 0, affected 128/255, keep 1, as pass 2 was trained; `"binary"`:
                affected is treated as remove, as the reference's pass 2 runs (`use_trimask=False`).
            generator (`torch.Generator`, *optional*):
                Only used for the conditioning video's noise augmentation (the initial noise is given).

        Returns:
            [`VoidOutput`] or `tuple`: frames of the same length as `video`.
        """
        video = torch.as_tensor(video)
        quadmask = torch.as_tensor(quadmask)
        # 0. Check the pass-2 inputs
        latents = self.check_pass2_inputs(video, warped_noise, mask_mode)
        self._mask_mode = mask_mode
        try:
            # 1.-7. Pass 1's steps with the warped noise as x_T
            return super().__call__(
                video, quadmask, prompt=prompt, negative_prompt=negative_prompt,
                num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
                latents=latents, **pass1_kwargs)
        finally:
            self._mask_mode = "trimask"
