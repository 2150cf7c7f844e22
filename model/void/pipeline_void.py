"""VOID pass 1 (object-and-effect removal) as a diffusers pipeline.

Re-implemented from the behaviour described in `reference/void_inference.md` (sections named in the
comments); no code is taken from Netflix/void-model. What it does, in the order of `__call__`:

1. check the inputs: 8m+5 frames (<= 197), H and W multiples of 16, quadmask levels {0, 63, 127, 255};
2. encode the prompt with T5 (226 tokens, padded, no attention mask);
3. DDIM timesteps from the base model's scheduler config;
4. draw the initial noise for the whole clip from the caller's generator;
5. encode the conditions: the quadmask mapped to the VAE-mask video and the *full* original video,
   each VAE-encoded with `.mode()` and scaled: 32 channels per latent pixel;
6. denoise: the transformer sees `[noisy 16 | mask 16 | video 16]` = 48 channels; clips longer than
   one window (22 latents) are denoised in overlapping windows blended with linear ramps;
7. decode with VOID's 4T-3 schedule (`AutoencoderKLVoid`), so 8m+5 frames come back as 8m+5 frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from diffusers import CogVideoXTransformer3DModel, DDIMScheduler
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers import CogVideoXDDIMScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import T5EncoderModel, T5Tokenizer

from model.void.vae import AutoencoderKLVoid

log = logging.getLogger(__name__)

MAX_FRAMES = 197
QUADMASK_LEVELS = (0, 63, 127, 255)
QUADMASK_VALUES_TEXT = "{0, 63, 127, 255}"
WINDOW_LATENTS = 22  # (85 - 1) // 4 + 1: the reference's temporal_window_size of 85 frames
WINDOW_OVERLAP = 4  # the reference's multidiffusion stride of 16 frames = 4 latents
NOISE_AUG_STRENGTH = 0.0563  # reference `noise_aug_strength` default (section 1.5)
# Schedulers whose `step` keeps no state between calls, so one timestep may be stepped window by window.
_STATELESS_SCHEDULERS = (DDIMScheduler, CogVideoXDDIMScheduler)


@dataclass
class VoidOutput(BaseOutput):
    """Output of `VoidPass1Pipeline`.

    Args:
        frames (`np.ndarray` or `torch.Tensor`):
            `np`: float32 `(batch, frames, height, width, 3)` in [0, 1]; `pt`: float32 `(batch, frames, 3, height,
            width)` in [0, 1]; `latent`: the denoised latents `(batch, latent_frames, 16, height/8, width/8)`.
    """

    frames: np.ndarray | torch.Tensor


def quadmask_to_vae_mask(quadmask: torch.Tensor, binarize: bool = False) -> torch.Tensor:
    """float32 VAE-mask values in [0, 1] for a uint8 quadmask: remove/overlap 0.0, affected 128/255, keep 1.0.

    Matches the reference's two stages (section 1.4) rather than a table, so the thresholds are the same:
    stage A re-quantizes (<=31 -> 0, <=95 -> 63, <=191 -> 127, else 255) and inverts, m = (255 - q) / 255;
    stage B (pass 1, `use_trimask=True`) maps m > 0.75 -> 1, [0.25, 0.75] -> 127/255, < 0.25 -> 0, or with
    `binarize` (the reference's pass 2) m > 0.5 -> 1, else 0; the VAE sees 1 - that. Overlap (63) lands on
    remove, as in training.
    """
    q = quadmask.to(torch.int16)
    q = torch.where(q <= 31, 0, torch.where(q <= 95, 63, torch.where(q <= 191, 127, 255)))
    m = (255 - q).to(torch.float32) / 255.0
    if binarize:
        condition = (m > 0.5).to(torch.float32)
    else:
        condition = torch.where(m > 0.75, 1.0, torch.where(m >= 0.25, 127.0 / 255.0, 0.0))
    return 1.0 - condition


def temporal_windows(latent_frames: int, window: int = WINDOW_LATENTS,
                     overlap: int = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """Latent windows `[start, end)` covering `latent_frames`, each `window` long (one if the clip is shorter).

    Reference behaviour (section 3): windows of 22 latents start at 0 and each next one `overlap` (4) before
    the previous end. Deliberate difference: the reference clips the last window to the clip, leaving a short
    tail (6 latents for 93 frames) with little temporal context; here the last window is anchored at the end
    (`[T-22, T)`), so every window has full context and the same length, which also lets a step batch its
    windows into one transformer call.
    """
    if latent_frames <= window:
        return [(0, latent_frames)]
    stride = window - overlap
    windows = []
    start = 0
    while start + window < latent_frames:
        windows.append((start, start + window))
        start += stride
    windows.append((latent_frames - window, latent_frames))
    return windows


def window_weights(windows: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per-latent float32 blend weights for each window: 1, ramped linearly where windows overlap.

    Reference behaviour (section 3): a window that is not first ramps in over its first 4 latents
    [0.2, 0.4, 0.6, 0.8], one that is not last ramps out [0.8, 0.6, 0.4, 0.2]; overlapping ramps sum to 1.
    Here the ramps span the actual overlap with the neighbour, i.e. (1..o)/(o+1) for an overlap of o
    latents: the same numbers for the regular overlap of 4, and a longer linear cross-fade into the
    end-anchored last window.
    """
    weights = []
    for k, (start, end) in enumerate(windows):
        w = torch.ones(end - start, dtype=torch.float32)
        if k > 0:
            o = windows[k - 1][1] - start
            w[:o] = torch.arange(1, o + 1, dtype=torch.float32) / (o + 1)
        if k < len(windows) - 1:
            o = end - windows[k + 1][0]
            w[-o:] = torch.minimum(w[-o:], torch.arange(o, 0, -1, dtype=torch.float32) / (o + 1))
        weights.append(w)
    return weights


def t5_prompt_embeds(tokenizer, text_encoder, prompt: str, max_sequence_length: int, device: torch.device,
                     dtype: torch.dtype) -> torch.Tensor:
    """T5 hidden states `(1, max_sequence_length, d_model)` for one prompt.

    Reference behaviour (section 2.1): T5Tokenizer, padded to 226 tokens, truncated, no attention mask passed
    to the encoder (the padding tokens are encoded too, as in training).
    """
    ids = tokenizer([prompt], padding="max_length", max_length=max_sequence_length, truncation=True,
                    add_special_tokens=True, return_tensors="pt").input_ids
    if len(tokenizer(prompt).input_ids) > max_sequence_length:
        log.warning("prompt truncated to %d tokens: %r", max_sequence_length, prompt)
    with torch.no_grad():
        embeds = text_encoder(ids.to(device))[0]
    return embeds.to(dtype=dtype, device=device)


class VoidPass1Pipeline(DiffusionPipeline):
    r"""
    VOID pass 1: remove an object and the physical effects it causes from a clip, given a quadmask.

    Args:
        tokenizer ([`T5Tokenizer`]):
            Tokenizer of the T5 text encoder.
        text_encoder ([`T5EncoderModel`]):
            Frozen T5 v1.1 XXL encoder. Optional: callers that cache prompt embeddings pass `prompt_embeds`.
        vae ([`AutoencoderKLVoid`]):
            CogVideoX VAE with VOID's 4T-3 decode schedule (`AutoencoderKLVoid.from_vae` converts a stock one).
        transformer ([`CogVideoXTransformer3DModel`]):
            CogVideoX 1.5 DiT with `in_channels=48` carrying the VOID pass 1 weights.
        scheduler ([`DDIMScheduler`]):
            DDIM built from the base model's scheduler config (the reference's pass 1 sampler).
    """

    _optional_components = ["tokenizer", "text_encoder"]
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        tokenizer: T5Tokenizer | None,
        text_encoder: T5EncoderModel | None,
        vae: AutoencoderKLVoid,
        transformer: CogVideoXTransformer3DModel,
        scheduler: DDIMScheduler,
    ):
        super().__init__()
        if vae is not None and not isinstance(vae, AutoencoderKLVoid):
            raise TypeError(
                f"`vae` must be an AutoencoderKLVoid (stock diffusers decodes 4T frames, VOID needs 4T-3); got "
                f"{type(vae).__name__}. Convert it with `AutoencoderKLVoid.from_vae(vae)`.")
        if vae is not None:
            AutoencoderKLVoid.from_vae(vae)  # idempotent: makes sure its upsamplers are VOID's
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        self.vae_scale_factor_spatial = (
            2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        )
        self.vae_scale_factor_temporal = (
            self.vae.config.temporal_compression_ratio if getattr(self, "vae", None) else 4
        )
        self.vae_scaling_factor_image = self.vae.config.scaling_factor if getattr(self, "vae", None) else 0.7

    # --- step 1 -------------------------------------------------------------------------------------------
    def check_inputs(
        self,
        video: torch.Tensor,
        quadmask: torch.Tensor,
        prompt,
        negative_prompt,
        prompt_embeds,
        negative_prompt_embeds,
        guidance_scale: float,
        num_inference_steps: int,
        window_size: int,
        window_overlap: int,
        callback_on_step_end_tensor_inputs,
        output_type: str = "np",
    ) -> None:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"`video` must be (frames, height, width, 3), got shape {tuple(video.shape)}")
        if video.dtype != torch.uint8 and not video.is_floating_point():
            raise ValueError(f"`video` must be uint8 or float in [0, 1], got {video.dtype}")
        num_frames, height, width = video.shape[:3]
        if num_frames > MAX_FRAMES or num_frames % 8 != 5:
            raise ValueError(
                f"`video` must have 8m+5 frames and at most {MAX_FRAMES} (5, 13, ..., 85, 93, ..., 197) so that its "
                f"latent count is even for patch_size_t=2; got {num_frames}. Mirror-pad the chunk first.")
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        if height % multiple or width % multiple:
            raise ValueError(
                f"`height` and `width` have to be divisible by {multiple} (VAE x{self.vae_scale_factor_spatial}, "
                f"patch {self.transformer.config.patch_size}) but are {height} and {width}; VOID runs at 384x672.")
        if tuple(quadmask.shape) != (num_frames, height, width):
            raise ValueError(f"`quadmask` must be (frames, height, width) = {(num_frames, height, width)}, "
                             f"got {tuple(quadmask.shape)}")
        if quadmask.dtype != torch.uint8:
            raise ValueError(f"`quadmask` must be uint8 with values in {QUADMASK_VALUES_TEXT}, got {quadmask.dtype}")
        found = torch.unique(quadmask).tolist()
        bad = sorted(set(found) - set(QUADMASK_LEVELS))
        if bad:
            raise ValueError(f"`quadmask` values must be in {QUADMASK_VALUES_TEXT}; found {bad[:8]} "
                             "(re-quantize a lossy mask first)")
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("Pass exactly one of `prompt` and `prompt_embeds`.")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"`prompt` has to be a str (one clip per call), got {type(prompt).__name__}")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass at most one of `negative_prompt` and `negative_prompt_embeds`.")
        if prompt_embeds is not None and guidance_scale > 1.0 and negative_prompt_embeds is None \
                and negative_prompt is None:
            raise ValueError("guidance_scale > 1 with `prompt_embeds` needs `negative_prompt_embeds` too.")
        if prompt is not None and self.text_encoder is None:
            raise ValueError("This pipeline has no text encoder; pass `prompt_embeds` instead of `prompt`.")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'np', 'pt' or 'latent', got {output_type!r}")
        if window_size < 2 or window_size % 2 or not 0 <= window_overlap < window_size:
            raise ValueError(f"`window_size` must be even and >= 2 (patch_size_t=2) with 0 <= window_overlap < "
                             f"window_size; got {window_size} and {window_overlap}")
        latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        if latent_frames > window_size and not isinstance(self.scheduler, _STATELESS_SCHEDULERS):
            raise ValueError(f"Windowed denoising ({latent_frames} latents > window {window_size}) steps each window "
                             f"separately, which only a stateless sampler allows (DDIM); got "
                             f"{type(self.scheduler).__name__}.")
        if callback_on_step_end_tensor_inputs is not None and not all(
            k in self._callback_tensor_inputs for k in callback_on_step_end_tensor_inputs
        ):
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, but found "
                f"{[k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]}")

    # --- step 2 -------------------------------------------------------------------------------------------
    def encode_prompt(
        self,
        prompt: str,
        max_sequence_length: int = 226,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """T5 hidden states `(1, max_sequence_length, d_model)` for one prompt (see `t5_prompt_embeds`)."""
        device = device or self._execution_device
        dtype = dtype or self.text_encoder.dtype
        return t5_prompt_embeds(self.tokenizer, self.text_encoder, prompt, max_sequence_length, device, dtype)

    # --- step 4 -------------------------------------------------------------------------------------------
    def prepare_latents(
        self,
        latent_frames: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Initial noise `(1, latent_frames, 16, h/8, w/8)` for the whole clip, scaled by `init_noise_sigma`.

        Reference behaviour (section 2.2): one draw for the whole clip, windows slice it. The draw is float32 on
        the generator's device and then cast, so a CPU generator gives the same noise on any execution device.
        """
        shape = (1, latent_frames, self.transformer.config.out_channels,
                 height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}")
        return (latents.to(device=device, dtype=torch.float32) * self.scheduler.init_noise_sigma).to(dtype)

    # --- step 5 -------------------------------------------------------------------------------------------
    def prepare_mask_latents(
        self,
        video: torch.Tensor,
        quadmask: torch.Tensor,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        noise_aug_strength: float = 0.0,
        binarize_mask: bool = False,
    ) -> torch.Tensor:
        """The 32 conditioning channels `(1, latent_frames, 32, h/8, w/8)`: VAE(mask video) then VAE(full video).

        Reference behaviour (sections 1.4-1.6):
        - the mask video is `quadmask_to_vae_mask` tiled to 3 channels, in [0, 1] (not [-1, 1]);
        - the second condition is the *full original video* in [-1, 1], object included
          (`zero_out_mask_region=False`); the object is conveyed only by the mask;
        - both are encoded with `latent_dist.mode()` and multiplied by `scaling_factor` (no I2V
          `invert_scale_latents`), one batch item at a time.
        - optional noise augmentation of the video, N(0,1) * strength, skipping pixels exactly at -1. Deliberate
          difference: the reference draws it from the unseeded global RNG; here it comes from `generator`.
        `binarize_mask` is the reference's pass 2 quantization (affected -> remove), for a pass 2 pipeline.
        """
        vae_dtype = self.vae.dtype
        mask = quadmask_to_vae_mask(quadmask.to(device), binarize=binarize_mask)  # (T, H, W) float32
        mask = mask[None, None].expand(1, 3, *mask.shape)  # (1, 3, T, H, W)

        if video.dtype == torch.uint8:
            pixels = video.to(device=device, dtype=torch.float32) / 255.0
        else:
            pixels = video.to(device=device, dtype=torch.float32)
        pixels = pixels.permute(3, 0, 1, 2)[None] * 2.0 - 1.0  # (1, 3, T, H, W) in [-1, 1]
        if noise_aug_strength > 0:
            noise = randn_tensor(pixels.shape, generator=generator, device=device, dtype=torch.float32)
            pixels = torch.where(pixels == -1.0, pixels, pixels + noise * noise_aug_strength)

        def encode(x: torch.Tensor) -> torch.Tensor:
            latent = self.vae.encode(x.to(vae_dtype)).latent_dist.mode()
            return (latent * self.vae_scaling_factor_image).permute(0, 2, 1, 3, 4)  # (1, T_lat, 16, h, w)

        return torch.cat([encode(mask), encode(pixels)], dim=2).to(dtype)

    def _prepare_rotary_positional_embeddings(
        self, height: int, width: int, latent_frames: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """3-D RoPE for one window: `grid_type="slice"`, temporal size ceil(latent_frames / patch_size_t).

        Reference behaviour (section 2.1/2.5): slice RoPE, positions restarting at 0 in every window. "slice"
        takes positions 0..n-1 on each axis, so `max_size` only has to be at least the grid.
        """
        p = self.transformer.config.patch_size
        p_t = self.transformer.config.patch_size_t or 1
        grid_h = height // (self.vae_scale_factor_spatial * p)
        grid_w = width // (self.vae_scale_factor_spatial * p)
        max_size = (max(grid_h, self.transformer.config.sample_height // p),
                    max(grid_w, self.transformer.config.sample_width // p))
        return get_3d_rotary_pos_embed(
            embed_dim=self.transformer.config.attention_head_dim,
            crops_coords=None,
            grid_size=(grid_h, grid_w),
            temporal_size=(latent_frames + p_t - 1) // p_t,
            grid_type="slice",
            max_size=max_size,
            device=device,
        )

    # --- step 6 -------------------------------------------------------------------------------------------
    def denoise_step(
        self,
        latents: torch.Tensor,
        condition: torch.Tensor,
        t: torch.Tensor,
        prompt_embeds: torch.Tensor,
        windows: list[tuple[int, int]],
        weights: list[torch.Tensor],
        image_rotary_emb,
        batch_windows: bool,
        attention_kwargs: dict[str, Any] | None,
    ) -> torch.Tensor:
        """One timestep over every window; returns x_{t-1} for the whole clip in `latents.dtype`.

        Reference behaviour (section 3): each window runs the transformer on its slice of the noisy latents and
        of the conditions, takes a full scheduler step, and the *stepped* latents are blended with the window
        weights in float32 canvases. `batch_windows` stacks a step's windows (all the same length) into one
        transformer call instead of one call per window; the arithmetic is the same.
        """
        do_cfg = self.guidance_scale > 1.0
        canvas = torch.zeros(latents.shape, dtype=torch.float32, device=latents.device)
        total = torch.zeros(latents.shape[1], dtype=torch.float32, device=latents.device)
        groups = [windows] if batch_windows else [[w] for w in windows]
        for group in groups:
            n = len(group)
            x = torch.cat([latents[:, s:e] for s, e in group])  # (n, window, 16, h, w)
            model_input = torch.cat([x, torch.cat([condition[:, s:e] for s, e in group])], dim=2)
            if do_cfg:  # prompt_embeds is [negative; positive]: unconditional half first, as in diffusers
                model_input = torch.cat([model_input] * 2)
                text = torch.cat([prompt_embeds[:1].expand(n, -1, -1), prompt_embeds[1:].expand(n, -1, -1)])
            else:
                text = prompt_embeds.expand(n, -1, -1)
            model_input = self.scheduler.scale_model_input(model_input, t)
            with self.transformer.cache_context("cond_uncond"):
                noise_pred = self.transformer(
                    hidden_states=model_input,
                    encoder_hidden_states=text,
                    timestep=t.expand(model_input.shape[0]),
                    image_rotary_emb=image_rotary_emb,
                    attention_kwargs=attention_kwargs,
                    return_dict=False,
                )[0].float()
            if do_cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + self.guidance_scale * (cond - uncond)
            stepped = self.scheduler.step(noise_pred, t, x, return_dict=False)[0].float()
            for k, (s, e) in enumerate(group):
                w = weights[windows.index((s, e))].to(latents.device)
                canvas[:, s:e] += stepped[k : k + 1] * w[None, :, None, None, None]
                total[s:e] += w
        return (canvas / total[None, :, None, None, None]).to(latents.dtype)

    # --- step 7 -------------------------------------------------------------------------------------------
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames `(1, 3, 4T-3, H, W)` in [-1, 1] from latents `(1, T, 16, h, w)` (VOID's decode schedule)."""
        latents = latents.permute(0, 2, 1, 3, 4) / self.vae_scaling_factor_image
        return self.vae.decode(latents.to(self.vae.dtype)).sample

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @torch.no_grad()
    def __call__(
        self,
        video: np.ndarray | torch.Tensor,
        quadmask: np.ndarray | torch.Tensor,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        noise_aug_strength: float = 0.0,
        window_size: int = WINDOW_LATENTS,
        window_overlap: int = WINDOW_OVERLAP,
        batch_windows: bool = False,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[["VoidPass1Pipeline", int, torch.Tensor, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers convention)
        max_sequence_length: int = 226,
    ) -> VoidOutput | tuple:
        r"""
        Remove what the quadmask marks from `video`.

        Args:
            video (`np.ndarray` or `torch.Tensor`):
                `(frames, height, width, 3)` RGB, uint8 or float in [0, 1], at model resolution (384x672 for the
                real model). Frames must be 8m+5 <= 197; mirror-pad shorter chunks first.
            quadmask (`np.ndarray` or `torch.Tensor`):
                `(frames, height, width)` uint8: 0 remove, 63 overlap, 127 affected, 255 keep.
            prompt (`str`, *optional*):
                The scene after removal (VOID's `bg` prompt). Pass this or `prompt_embeds`.
            negative_prompt (`str`, *optional*):
                Used only when `guidance_scale > 1`; defaults to "".
            num_inference_steps (`int`, *optional*, defaults to 50):
                DDIM steps. The reference CLI hard-codes 30, its notebook and config use 50.
            guidance_scale (`float`, *optional*, defaults to 1.0):
                Classifier-free guidance; pass 1 runs without it (1.0).
            generator (`torch.Generator`, *optional*):
                Source of every random draw (initial noise, noise augmentation). Seed one per clip.
            latents (`torch.Tensor`, *optional*):
                Initial noise `(1, latent_frames, 16, h/8, w/8)` instead of drawing it.
            prompt_embeds (`torch.Tensor`, *optional*):
                Precomputed T5 states `(1, seq, d_model)`, e.g. from a prompt cache.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                Precomputed negative T5 states, needed with `prompt_embeds` when `guidance_scale > 1`.
            noise_aug_strength (`float`, *optional*, defaults to 0.0):
                Std of the noise added to the conditioning video; VOID uses 0.0563 when the base transformer config
                sets `add_noise_in_inpaint_model` (the loader reports it).
            window_size (`int`, *optional*, defaults to 22):
                Latent frames per transformer call; longer clips are denoised in overlapping windows.
            window_overlap (`int`, *optional*, defaults to 4):
                Latents shared by consecutive windows.
            batch_windows (`bool`, *optional*, defaults to False):
                Run all windows of a step in one batched transformer call (faster on a GPU, more memory).
            output_type (`str`, *optional*, defaults to `"np"`):
                `"np"`, `"pt"` or `"latent"`.
            return_dict (`bool`, *optional*, defaults to True):
                Return a [`VoidOutput`] instead of a tuple.
            attention_kwargs (`dict`, *optional*):
                Passed to the attention processors.
            callback_on_step_end (`Callable`, *optional*):
                Called after each step as `callback_on_step_end(self, i, t, callback_kwargs)`; may return
                replacements for the tensors named in `callback_on_step_end_tensor_inputs`.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `["latents"]`):
                Tensors passed in `callback_kwargs`.
            max_sequence_length (`int`, *optional*, defaults to 226):
                T5 tokens.

        Returns:
            [`VoidOutput`] or `tuple`: frames of the same length as `video` (see [`VoidOutput`]).
        """
        video = torch.as_tensor(video)
        quadmask = torch.as_tensor(quadmask)

        # 1. Check inputs. Raise error if not correct
        self.check_inputs(video, quadmask, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds,
                          guidance_scale, num_inference_steps, window_size, window_overlap,
                          callback_on_step_end_tensor_inputs, output_type)
        self._guidance_scale = guidance_scale
        self._interrupt = False
        num_frames, height, width = video.shape[:3]
        latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 2. Encode input prompt
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt, max_sequence_length, device)
        if do_cfg and negative_prompt_embeds is None:
            negative_prompt_embeds = self.encode_prompt(negative_prompt or "", max_sequence_length, device,
                                                        prompt_embeds.dtype)
        dtype = prompt_embeds.dtype
        prompt_embeds = prompt_embeds.to(device)
        if do_cfg:
            negative_prompt_embeds = negative_prompt_embeds.to(device, dtype)
        text_embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds

        # 3. Prepare timesteps (DDIM, "trailing" spacing from the base config)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 4. Prepare latents (initial noise for the whole clip)
        latents = self.prepare_latents(latent_frames, height, width, dtype, device, generator, latents)

        # 5. Prepare the 32 conditioning channels (mask video, full video)
        condition = self.prepare_mask_latents(video, quadmask, dtype, device, generator, noise_aug_strength)

        # 6. Denoising loop over temporal windows
        windows = temporal_windows(latent_frames, window_size, window_overlap)
        weights = window_weights(windows)
        image_rotary_emb = (
            self._prepare_rotary_positional_embeddings(height, width, windows[0][1] - windows[0][0], device)
            if self.transformer.config.use_rotary_positional_embeddings else None
        )
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                latents = self.denoise_step(latents, condition, t, text_embeds, windows, weights, image_rotary_emb,
                                            batch_windows, attention_kwargs)
                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "prompt_embeds": prompt_embeds,
                               "negative_prompt_embeds": negative_prompt_embeds}
                    callback_kwargs = {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                    if "prompt_embeds" in callback_outputs or "negative_prompt_embeds" in callback_outputs:
                        prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                        text_embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds
                progress_bar.update()

        # 7. Decode with VOID's 4T-3 schedule: 8m+5 frames in, 8m+5 frames out
        if output_type == "latent":
            frames = latents
        else:
            decoded = self.decode_latents(latents).float()
            frames = (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)  # (1, T, 3, H, W)
            if output_type == "np":
                frames = frames.permute(0, 1, 3, 4, 2).cpu().numpy()

        # Offload all models
        self.maybe_free_model_hooks()

        if not return_dict:
            return (frames,)
        return VoidOutput(frames=frames)

