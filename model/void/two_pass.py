"""The two-pass VOID backend: pass 1, then pass 2's warped-noise refinement, per chunk, one transformer.

    backend = VoidTwoPassBackend(model_dir, steps=50)            # or get_backend("void2", ...) once registered
    pass1, pass2 = backend.remove_two_pass(request, progress)    # both (T, H, W, 3) uint8, keep pixels exact
    backend.remove(request, progress)                            # RemovalBackend contract: pass 2's frames

For one `RemovalRequest` (a chunk at model resolution, 1..197 frames):
1. pass 1 exactly as `VoidBackend.remove` (same padding, seed, rounding, keep compositing, same output);
2. the pass-1 result is mirror-padded to the chunk's VOID length (85, 93, ..., 197) like the input, RAFT
   flow is computed on it and warped noise for every latent frame is drawn from the chunk seed (cached);
3. the pass-2 weights are copied into the same transformer in place, and pass 2 samples from the warped
   noise with the original chunk, quadmask and prompt as conditioning (CFG 6, negative prompt "", 50 steps
   by default), trimmed back to T frames, rounded, keep pixels copied back.

Reference behaviour and deliberate differences: `model.void.pass2`. One more difference: the reference
computes flow on pass 1's raw padded output; here it is computed on the delivered pass-1 frames (keep
pixels exact) mirror-padded like the input, so the noise moves exactly as the conditioning video does in
the padded tail, and pass 2 can also be run later from a stored pass-1 result (`remove_pass2`).
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from model.backend import PASS1_SHARE, BackendIdentity, RemovalRequest
from model.void.backend import VoidBackend, mirror_indices
from model.void.files import PASS1_WEIGHTS, default_cache_dir, file_sha256, resolve_model_dir, weights_file
from model.void.flow import raft_weights_path
from model.void.pass2 import (
    MASK_MODES,
    PASS2_GUIDANCE,
    PASS2_NEGATIVE_PROMPT,
    PASS2_STEPS,
    PASS2_WEIGHTS,
    VoidPass2Pipeline,
    WarpedNoiseSource,
    check_flow_settings,
    derive_seed,
    load_pass2_scheduler,
    load_transformer_weights_in_place,
    noise_version,
)
from shots.plan import padded_length

log = logging.getLogger(__name__)

# Bump when a code change alters pass 2's output for the same request and weights (it is part of `version`).
PASS2_REVISION = 1


def two_pass_identity(pass1: BackendIdentity, pass2_sha256: str, steps: int, guidance: float,
                      negative_prompt: str, mask_mode: str, noise: str) -> BackendIdentity:
    """The two-pass backend's name and version (pass 1's, then pass 2's settings and the warped noise's `noise`
    version): the one place its version string is built."""
    neg = hashlib.sha256(negative_prompt.encode()).hexdigest()[:8]
    version = (f"{pass1.version}+pass2.r{PASS2_REVISION}+w{pass2_sha256[:12]}+steps{int(steps)}"
               f"+cfg{float(guidance):g}+neg{neg}+mask-{mask_mode}+{noise}")
    return BackendIdentity(VoidTwoPassBackend.name, version, pass2_sha256, pass1)


class TwoPassFrames(NamedTuple):
    """Both results for one chunk, each (T, H, W, 3) uint8 with keep pixels bit-identical to the input."""

    pass1: np.ndarray
    pass2: np.ndarray


class VoidTwoPassBackend(VoidBackend):
    """VOID pass 1 + pass 2 on one model directory; see the module docstring.

    Args:
        model_dir, steps, guidance, negative_prompt, mode, device, dtype, batch_windows, compile, noise_aug,
        embeddings_dir, storage_options: pass 1's, as for `VoidBackend` (pass 2 shares mode, device, dtype,
            window batching, compile and noise augmentation).
        pass2_steps: CogVideoX DDIM steps for pass 2 (50, as the reference).
        pass2_guidance: CFG scale for pass 2 (6.0, as the reference); uncond + cond run as one batch.
        pass2_negative_prompt: "" as the reference.
        mask_mode: "trimask" (default; affected regions as pass 2 was trained) or "binary" (the reference's
            pass 2: affected treated as remove). Part of `version`.
        raft_model: "raft_large" (default, the reference's) or "raft_small"; weights are read from
            `<model_dir>/raft/<raft_model>.pth` (or `.safetensors`), never downloaded.
        flow_iters, flow_scale, flow_stride, flow_batch: RAFT refinement iterations (12), resolution factor
            (1.0: the model's own 384x672), frames between flow pairs (1, 2 or 4), pairs per RAFT call.
        noise_cache: where flow and warped noise are cached (an `ArtifactStore`, or a folder / URI for one);
            None: `<cache_dir>/void-pass2`; False: no cache.
        cache_flow: cache flows too (float16, about 1 MB per frame at 384x672), not only the noise.
        cache_dir: as for `VoidBackend` (model copies, file hashes), and the default noise cache's parent.
    """

    name = "void2"

    def __init__(self, model_dir, steps: int = 50, guidance: float = 1.0, negative_prompt: str = "",
                 mode: str = "full", device=None, dtype=None, *, pass2_steps: int = PASS2_STEPS,
                 pass2_guidance: float = PASS2_GUIDANCE, pass2_negative_prompt: str = PASS2_NEGATIVE_PROMPT,
                 mask_mode: str = "trimask", raft_model: str = "raft_large", flow_iters: int = 12,
                 flow_scale: float = 1.0, flow_stride: int = 1, flow_batch: int = 8, noise_cache=None,
                 cache_flow: bool = True, cache_dir=None, storage_options=None, **options):
        # Everything pass 2 needs is checked before the (large) pass-1 load.
        root, self.pass2_weights, _ = _pass2_files(model_dir, cache_dir, storage_options, mask_mode, pass2_steps,
                                                   raft_model, flow_iters, flow_stride)
        super().__init__(str(root), steps, guidance, negative_prompt, mode, device, dtype, cache_dir=cache_dir,
                         **options)
        self.pass1_weights = root / PASS1_WEIGHTS
        self.pass1_name = VoidBackend.name
        self.pass1_version = self.version  # exactly what a plain `VoidBackend` with these settings reports
        self.pass2_steps = int(pass2_steps)
        self.pass2_guidance = float(pass2_guidance)
        self.pass2_negative_prompt = pass2_negative_prompt
        self.mask_mode = mask_mode
        self.pass2_sha256 = file_sha256(self.pass2_weights, cache_dir)
        log.info("VOID pass 2 weights %s sha256 %s", self.pass2_weights, self.pass2_sha256)

        pipe = self.pipeline
        self.pipeline2 = VoidPass2Pipeline(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae,
                                           transformer=pipe.transformer,
                                           scheduler=load_pass2_scheduler(root / "scheduler"))
        self.pipeline2.set_progress_bar_config(disable=True)
        if noise_cache is None:
            noise_cache = Path(cache_dir or default_cache_dir()) / "void-pass2"
        self.noise_source = WarpedNoiseSource(root, raft_model, flow_iters, flow_scale, flow_stride, flow_batch,
                                              device=self.model.device, cache=noise_cache or None,
                                              cache_flow=cache_flow, sha_cache_dir=cache_dir)
        self.model.prompts.get_many([self.pass2_negative_prompt])  # before any chunk, like pass 1's warm-up
        self._active = "pass1"
        self.weights_swaps, self.weights_swap_s = 0, 0.0  # since load: what the scheduler saves shows here
        self.last_info: dict = {}  # last chunk: swap/pass/flow/warp seconds, cache hits (logs, manifests, benches)

        self.identity = two_pass_identity(self.identity, self.pass2_sha256, self.pass2_steps, self.pass2_guidance,
                                          pass2_negative_prompt, mask_mode, self.noise_source.version)
        self.version = self.identity.version
        log.info("void two-pass backend %s", self.version)

    @classmethod
    def identity_of(cls, model_dir, steps: int = 50, guidance: float = 1.0, negative_prompt: str = "",
                    mode: str = "full", device=None, dtype=None, *, pass2_steps: int = PASS2_STEPS,
                    pass2_guidance: float = PASS2_GUIDANCE, pass2_negative_prompt: str = PASS2_NEGATIVE_PROMPT,
                    mask_mode: str = "trimask", raft_model: str = "raft_large", flow_iters: int = 12,
                    flow_scale: float = 1.0, flow_stride: int = 1, flow_batch: int = 8, noise_cache=None,
                    cache_flow: bool = True, cache_dir=None, storage_options=None, **options) -> BackendIdentity:
        """What a backend built with these arguments reports, known without loading it: `pass1` is pass 1's
        identity, `weights_sha256` pass 2's. Reads config files and hashes the pass-1, pass-2 and RAFT weights
        (memoised); no model is built. flow_batch, noise_cache and cache_flow do not change the output."""
        root, pass2_weights, raft_weights = _pass2_files(model_dir, cache_dir, storage_options, mask_mode,
                                                         pass2_steps, raft_model, flow_iters, flow_stride)
        pass1 = VoidBackend.identity_of(str(root), steps, guidance, negative_prompt, mode, device, dtype,
                                        cache_dir=cache_dir, **options)
        noise = noise_version(raft_model, file_sha256(raft_weights, cache_dir), flow_iters, flow_scale, flow_stride)
        return two_pass_identity(pass1, file_sha256(pass2_weights, cache_dir), pass2_steps, pass2_guidance,
                                 pass2_negative_prompt, mask_mode, noise)

    # --- weights --------------------------------------------------------------------------------------------
    @property
    def active_weights(self) -> str:
        """"pass1" or "pass2": which checkpoint the one transformer holds now."""
        return self._active

    def use_weights(self, which: str) -> float:
        """Copy `which` ("pass1" / "pass2") into the transformer in place if it is not there; seconds spent."""
        if which not in ("pass1", "pass2"):
            raise ValueError(f"weights must be 'pass1' or 'pass2', got {which!r}")
        if self._active == which:
            return 0.0
        t0 = time.perf_counter()
        load_transformer_weights_in_place(self.pipeline.transformer,
                                          self.pass1_weights if which == "pass1" else self.pass2_weights)
        self._active = which
        seconds = time.perf_counter() - t0
        self.weights_swaps += 1
        self.weights_swap_s += seconds
        log.info("transformer now holds %s weights (%.2f s)", which, seconds)
        return seconds

    # --- the passes -----------------------------------------------------------------------------------------
    def remove_pass1(self, request: RemovalRequest, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(T,H,W,3) uint8: pass 1 alone, identical to `VoidBackend.remove` with the same settings."""
        swap = self.use_weights("pass1")
        t0 = time.perf_counter()
        result = VoidBackend.remove(self, request, progress)
        self.last_info = {"pass1_swap_s": swap, "pass1_s": time.perf_counter() - t0}
        return result

    def remove_pass2(self, request: RemovalRequest, pass1_frames: np.ndarray,
                     progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(T,H,W,3) uint8: pass 2 for `request`, given its pass-1 result (e.g. `remove_pass1`'s, or a stored one)."""
        if not isinstance(pass1_frames, np.ndarray) or pass1_frames.dtype != np.uint8 \
                or pass1_frames.shape != request.frames.shape:
            raise ValueError(f"pass1_frames must be uint8 {request.frames.shape} like the request's frames, got "
                             f"{getattr(pass1_frames, 'shape', None)} {getattr(pass1_frames, 'dtype', None)}")
        frames = request.frames.shape[0]
        index = mirror_indices(frames, padded_length(frames))
        if progress is not None:
            progress(0.0)
        pipe = self.pipeline2
        noise = self.noise_source.noise(pass1_frames[index], request.seed, pipe.transformer.config.out_channels,
                                        pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal)
        info = dict(self.noise_source.last)
        info["noise_latent_frames"] = int(noise.shape[1])
        if progress is not None:
            progress(0.1)
        generator = torch.Generator(device="cpu").manual_seed(derive_seed(request.seed, "void-pass2-sampling"))
        info["pass2_swap_s"] = self.use_weights("pass2")
        t0 = time.perf_counter()
        result = self.run_pipeline(pipe, request, self.pass2_steps, self.pass2_guidance, self.pass2_negative_prompt,
                                   generator, progress, (0.1, 0.85), warped_noise=noise, mask_mode=self.mask_mode)
        info["pass2_s"] = time.perf_counter() - t0
        self.last_info = info
        if progress is not None:
            progress(1.0)
        return result

    def remove_two_pass(self, request: RemovalRequest,
                        progress: Callable[[float], None] | None = None) -> TwoPassFrames:
        """Pass 1 then pass 2 for one chunk: `TwoPassFrames(pass1, pass2)`, progress 0 -> 1 across both."""
        first = None if progress is None else (lambda f: progress(PASS1_SHARE * f))
        second = None if progress is None else (lambda f: progress(PASS1_SHARE + (1 - PASS1_SHARE) * f))
        pass1 = self.remove_pass1(request, first)
        info = self.last_info
        pass2 = self.remove_pass2(request, pass1, second)
        self.last_info = {**info, **self.last_info}
        return TwoPassFrames(pass1, pass2)

    def remove(self, request: RemovalRequest, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(T,H,W,3) uint8: the pass-2 result (the `RemovalBackend` contract); see `remove_two_pass` for both."""
        return self.remove_two_pass(request, progress).pass2


def _pass2_files(model_dir, cache_dir, storage_options, mask_mode: str, pass2_steps: int, raft_model: str,
                 flow_iters: int, flow_stride: int) -> tuple[Path, Path, Path]:
    """(local model dir, pass-2 weights, RAFT weights), after refusing settings pass 2 cannot run with."""
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
    if pass2_steps < 1:
        raise ValueError(f"pass2_steps must be >= 1, got {pass2_steps}")
    check_flow_settings(flow_iters, flow_stride)
    root = resolve_model_dir(model_dir, cache_dir, storage_options)
    pass2 = weights_file(root, PASS2_WEIGHTS, f" (VOID pass 2 needs it next to {PASS1_WEIGHTS})")
    return root, pass2, raft_weights_path(root, raft_model)
