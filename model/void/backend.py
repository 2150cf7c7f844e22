"""The `void` removal backend: VOID pass 1 on diffusers behind the `RemovalBackend` contract.

One request is one chunk at model resolution (T frames, 1 <= T <= 197). The chunk is mirror-padded to
the next valid VOID length (85, 93, ..., 197; `shots.plan.padded_length`), run through
`VoidPass1Pipeline` with a generator seeded from `request.seed` alone, trimmed back to T frames,
rounded to uint8, and keep pixels are copied back bit-exactly (`enforce_keep`).

Reference behaviour matched: ping-pong padding (section 1.3: the first padded frame repeats the last real
frame). Deliberate differences, all listed in the note's section 7: padded frames are dropped instead of
delivered; float -> uint8 rounds instead of truncating; keep pixels are composited back; one generator per
chunk instead of one per process, so results never depend on batch order.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Callable

import numpy as np
import torch

from model.backend import BackendIdentity, RemovalRequest, enforce_keep
from model.void.components import transformer_config
from model.void.files import PASS1_WEIGHTS, file_sha256, resolve_model_dir, weights_file
from model.void.loading import check_memory_mode, load_void_pass1, resolve_device_dtype
from model.void.pipeline_void import NOISE_AUG_STRENGTH, WINDOW_LATENTS, WINDOW_OVERLAP
from shots.plan import padded_length

log = logging.getLogger(__name__)

# Bump when a code change alters the output for the same request and weights (it is part of `version`).
PIPELINE_REVISION = 1


def to_chunk_frames(output: np.ndarray, frames: int, request: RemovalRequest) -> np.ndarray:
    """Pipeline output in [0,1] -> the chunk's own uint8 frames: padding dropped, keep pixels exact.

    Deliberate difference: the reference truncates to uint8 (x*255 cast); rounding avoids a -0.5 LSB bias.
    """
    result = np.clip(np.rint(output[:frames] * 255.0), 0, 255).astype(np.uint8)
    return enforce_keep(request, np.ascontiguousarray(result))


def resolve_noise_aug(noise_aug: float | None, add_noise_in_inpaint_model: bool) -> float:
    """Noise on the conditioning video: None follows the config's `add_noise_in_inpaint_model` (0.0563 when set,
    as the reference does)."""
    if noise_aug is None:
        return NOISE_AUG_STRENGTH if add_noise_in_inpaint_model else 0.0
    return float(noise_aug)


def compiles(compile: bool, device: torch.device) -> bool:
    """`torch.compile` is applied on CUDA only; elsewhere the flag is ignored (and is not in the version)."""
    return bool(compile and device.type == "cuda")


def pass1_identity(weights_sha256: str, steps: int, guidance: float, negative_prompt: str, noise_aug: float,
                   dtype: torch.dtype, batch_windows: bool, compiled: bool) -> BackendIdentity:
    """VOID pass 1's name and version for these resolved settings: the one place its version string is built."""
    neg = hashlib.sha256(negative_prompt.encode()).hexdigest()[:8] if guidance > 1.0 else "none"
    dtype_name = str(dtype).removeprefix("torch.")
    version = (f"pass1.r{PIPELINE_REVISION}+w{weights_sha256[:12]}+steps{int(steps)}+cfg{float(guidance):g}"
               f"+neg{neg}+aug{float(noise_aug):g}+win{WINDOW_LATENTS}o{WINDOW_OVERLAP}+{dtype_name}"
               f"+bw{int(batch_windows)}+compile{int(compiled)}")
    return BackendIdentity(VoidBackend.name, version, weights_sha256)


def mirror_indices(frames: int, target: int) -> np.ndarray:
    """Frame indices that ping-pong pad `frames` frames to `target`: 0..L-1, L-1..0, 0..L-1, ..."""
    if frames < 1 or target < frames:
        raise ValueError(f"cannot mirror-pad {frames} frames to {target}")
    period = np.concatenate([np.arange(frames), np.arange(frames - 1, -1, -1)])
    return period[np.arange(target) % len(period)]


class VoidBackend:
    """VOID pass 1 (Netflix's CogVideoX-Fun fine-tune) on a model directory; see the module docstring.

    Args:
        model_dir: local path or fsspec URI of the model directory (`model.void.files`).
        steps: DDIM steps (the reference CLI hard-codes 30; its notebook and config use 50).
        guidance: classifier-free guidance scale; pass 1 runs at 1.0 (no CFG, negative prompt unused).
        negative_prompt: used only when guidance > 1.
        mode: memory mode, `full`, `model_offload` or `sequential_offload` (CUDA only; ignored on CPU).
        device, dtype: default CUDA + bf16 when available, else CPU + fp32.
        batch_windows: run a step's temporal windows in one transformer call (same math, faster on a GPU).
        compile: `torch.compile` the transformer blocks (CUDA only).
        noise_aug: noise on the conditioning video; None follows the base config's `add_noise_in_inpaint_model`
            (0.0563 when set, as the reference does).
        cache_dir: local cache for fsspec model copies and file hashes.
        embeddings_dir: optional directory that keeps prompt embeddings across processes.
    """

    name = "void"

    def __init__(self, model_dir, steps: int = 50, guidance: float = 1.0, negative_prompt: str = "",
                 mode: str = "full", device=None, dtype=None, *, batch_windows: bool = True, compile: bool = False,
                 noise_aug: float | None = None, cache_dir=None, embeddings_dir=None, storage_options=None):
        self.steps = _checked_steps(steps)
        self.guidance = float(guidance)
        self.negative_prompt = negative_prompt
        self.batch_windows = batch_windows
        warm = [negative_prompt] if self.guidance > 1.0 else []
        self.model = load_void_pass1(model_dir, mode=mode, device=device, dtype=dtype, cache_dir=cache_dir,
                                     embeddings_dir=embeddings_dir, warm_prompts=warm,
                                     storage_options=storage_options)
        self.device = str(self.model.device)
        self.pipeline = self.model.pipeline
        self.pipeline.set_progress_bar_config(disable=True)
        self.noise_aug = resolve_noise_aug(noise_aug, self.model.add_noise_in_inpaint_model)
        self.compiled = compiles(compile, self.model.device)
        if compile and not self.compiled:
            log.info("compile=True ignored on %s", self.model.device)
        if self.compiled:
            compile_transformer(self.pipeline.transformer)
        self.identity = pass1_identity(self.model.weights_sha256, self.steps, self.guidance, negative_prompt,
                                       self.noise_aug, self.model.dtype, batch_windows, self.compiled)
        self.version = self.identity.version
        log.info("void backend %s on %s (%s)", self.version, self.model.device, self.model.mode)

    @classmethod
    def identity_of(cls, model_dir, steps: int = 50, guidance: float = 1.0, negative_prompt: str = "",
                    mode: str = "full", device=None, dtype=None, *, batch_windows: bool = True,
                    compile: bool = False, noise_aug: float | None = None, cache_dir=None, embeddings_dir=None,
                    storage_options=None) -> BackendIdentity:
        """What a backend built with these arguments reports, known without loading it.

        Reads the transformer config and hashes the pass-1 weights (memoised, `files.file_sha256`); T5, the
        VAE and the transformer stay on disk. A remote `model_dir` is copied to the local cache first.
        """
        check_memory_mode(mode)
        root = resolve_model_dir(model_dir, cache_dir, storage_options)
        sha = file_sha256(weights_file(root, PASS1_WEIGHTS), cache_dir)
        device, dtype = resolve_device_dtype(device, dtype)
        _, info = transformer_config(root)
        return pass1_identity(sha, _checked_steps(steps), guidance, negative_prompt,
                              resolve_noise_aug(noise_aug, info.add_noise_in_inpaint_model), dtype, batch_windows,
                              compiles(compile, device))

    @property
    def weights_sha256(self) -> str:
        return self.model.weights_sha256

    def remove(self, request: RemovalRequest, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(T,H,W,3) uint8: the chunk with the quadmask's remove/affected regions regenerated."""
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        if progress is not None:
            progress(0.0)
        result = self.run_pipeline(self.pipeline, request, self.steps, self.guidance, self.negative_prompt,
                                   generator, progress, (0.05, 0.9))
        if progress is not None:
            progress(1.0)
        return result

    def run_pipeline(self, pipe, request: RemovalRequest, steps: int, guidance: float, negative_prompt: str,
                     generator: torch.Generator, progress: Callable[[float], None] | None,
                     progress_span: tuple[float, float], **pipe_kwargs) -> np.ndarray:
        """One pass over the chunk: mirror-padded to a VOID length, run through `pipe`, trimmed back to T frames.

        Both passes run through here, so padding, conditioning, rounding and keep pixels are handled alike.
        Progress goes from `progress_span[0]` over `progress_span[1]` of the range as the steps finish.
        """
        frames = request.frames.shape[0]
        index = mirror_indices(frames, padded_length(frames))
        prompt_embeds = self.model.prompts.get(request.prompt)
        negative = self.model.prompts.get(negative_prompt) if guidance > 1.0 else None
        start, share = progress_span

        def on_step(_pipe, i, _t, _tensors):
            if progress is not None:
                progress(start + share * (i + 1) / steps)
            return {}

        try:
            output = pipe(
                video=request.frames[index],
                quadmask=request.quadmask[index],
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator,
                noise_aug_strength=self.noise_aug,
                batch_windows=self.batch_windows,
                callback_on_step_end=on_step,
                output_type="np",
                **pipe_kwargs,
            ).frames[0]
        finally:
            self.model.release_device_memory()
        return to_chunk_frames(output, frames, request)


def _checked_steps(steps: int) -> int:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return int(steps)


def compile_transformer(transformer: torch.nn.Module) -> None:
    """Compile the repeated transformer blocks (one graph reused 42 times); whole-model compile as fallback."""
    if getattr(transformer, "_repeated_blocks", None) and hasattr(transformer, "compile_repeated_blocks"):
        transformer.compile_repeated_blocks()
    else:
        for block in transformer.transformer_blocks:
            block.compile()
