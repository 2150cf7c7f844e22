"""Load VOID pass 1 from a model directory: strict, local, hashed, in the memory mode asked for.

The pieces are beside this file: `files` (where the model is, weight hashes), `tokenizer`, `components`
(T5, VAE, scheduler, the strictly checked transformer) and `prompts` (cached T5 embeddings). Here they are
put together into a pipeline on one device and dtype, with CPU offload when asked.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from model.void.components import load_scheduler, load_transformer, load_vae
from model.void.files import PASS1_WEIGHTS, file_sha256, resolve_model_dir, weights_file
from model.void.prompts import PromptEmbeddings

log = logging.getLogger(__name__)

MEMORY_MODES = ("full", "model_offload", "sequential_offload")


@dataclass
class VoidPass1:
    """A loaded pass 1 model: the pipeline, its prompt cache and what the manifest needs to know."""

    pipeline: "object"
    prompts: PromptEmbeddings
    model_dir: Path
    weights_sha256: str
    add_noise_in_inpaint_model: bool
    device: torch.device
    dtype: torch.dtype
    mode: str

    def release_device_memory(self) -> None:
        """After a chunk in model-offload mode: move whatever is still resident back to the CPU."""
        if self.mode == "model_offload":
            from model.void.offload import release

            release(self.pipeline)


def check_memory_mode(mode: str) -> None:
    """Refuse an unknown memory mode before anything is read."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"unknown memory mode {mode!r}; choose one of {', '.join(MEMORY_MODES)}")


def resolve_device_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None
                         ) -> tuple[torch.device, torch.dtype]:
    """The device and dtype pass 1 runs in: CUDA + bf16 when available, else CPU + fp32, unless told."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if isinstance(dtype, str):
        dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                 "fp32": torch.float32, "float32": torch.float32}[dtype]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def load_void_pass1(model_dir: str | os.PathLike, mode: str = "full", device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
                    embeddings_dir: str | os.PathLike | None = None, warm_prompts: Iterable[str] = (),
                    storage_options: dict | None = None) -> VoidPass1:
    """Load pass 1 from `model_dir` (local path or fsspec URI) in memory `mode` on `device` in `dtype`.

    Modes (reference section 2.4) only matter on CUDA; elsewhere everything simply runs where it is.
    - `full`: T5, VAE and transformer resident on the device (about 21 GB of bf16 weights).
    - `model_offload`: components live on the CPU and move to the device whole while they run; T5 is loaded
      only to encode prompts not yet cached and dropped before the transformer is used.
    - `sequential_offload`: weights move layer by layer (lowest VRAM, slowest); T5 too.
    (Both offload modes are diffusers' and accelerate's own, as the reference's: `model.void.offload`.)
    `warm_prompts` are encoded before the transformer is loaded (e.g. the negative prompt).
    """
    from model.void.pipeline_void import VoidPass1Pipeline

    check_memory_mode(mode)
    device, dtype = resolve_device_dtype(device, dtype)
    if device.type != "cuda" and mode != "full":
        log.info("memory mode %s only matters on CUDA; running everything on %s", mode, device)
        mode = "full"
    root = resolve_model_dir(model_dir, cache_dir, storage_options)
    weights = weights_file(root, PASS1_WEIGHTS)
    sha = file_sha256(weights, cache_dir)
    log.info("VOID pass 1 weights %s sha256 %s", weights, sha)

    offloading = mode != "full"
    home = torch.device("cpu") if offloading else device
    prompts = PromptEmbeddings(root, device, dtype, store_dir=embeddings_dir, release_after_use=offloading,
                               cache_dir=cache_dir, sequential_offload=mode == "sequential_offload")
    prompts.get_many(warm_prompts)  # with offloading, T5 is gone again before the transformer loads
    tokenizer, text_encoder = prompts.components() if not offloading else (None, None)

    transformer, info = load_transformer(root, weights, dtype, home)
    vae = load_vae(root / "vae", dtype, home)
    scheduler = load_scheduler(root / "scheduler")
    pipe = VoidPass1Pipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    if mode == "model_offload":
        from model.void.offload import model_offload

        model_offload(pipe, device)
    elif mode == "sequential_offload":
        from model.void.offload import sequential_offload

        sequential_offload({"transformer": transformer, "vae": vae}, device)
    return VoidPass1(pipeline=pipe, prompts=prompts, model_dir=root, weights_sha256=sha,
                     add_noise_in_inpaint_model=info.add_noise_in_inpaint_model, device=device, dtype=dtype,
                     mode=mode)
