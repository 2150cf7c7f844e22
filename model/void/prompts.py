"""T5 prompt embeddings, computed once per prompt and model, so T5 is loaded only for prompts never seen."""
from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Iterable

import torch

from model.void.components import load_text_encoder
from model.void.files import file_sha256
from model.void.tokenizer import load_tokenizer
from storage.atomic import atomic_path
from storage.keys import content_key

MAX_SEQUENCE_LENGTH = 226


class PromptEmbeddings:
    """T5 states per prompt, computed once: an in-process dict, optionally a directory of safetensors files.

    The key covers the prompt, the token length, the dtype and device type T5 ran in, and a fingerprint of
    the tokenizer and text-encoder files, so a cache directory can be shared between workers and models.
    T5 (about 9.5 GB in bf16) is loaded only when a prompt is not cached; with `release_after_use` it is
    dropped again right after encoding, so offload modes never hold T5 and the transformer at once.
    """

    def __init__(self, model_dir: Path, device: torch.device, dtype: torch.dtype,
                 store_dir: str | os.PathLike | None = None, release_after_use: bool = False,
                 cache_dir: str | os.PathLike | None = None, max_sequence_length: int = MAX_SEQUENCE_LENGTH,
                 sequential_offload: bool = False):
        self.model_dir = Path(model_dir)
        self.sequential_offload = sequential_offload
        self.device = device
        self.dtype = dtype
        self.store_dir = Path(store_dir) if store_dir else None
        self.release_after_use = release_after_use
        self.max_sequence_length = max_sequence_length
        self._cache_dir = cache_dir
        self._memory: dict[str, torch.Tensor] = {}
        self._tokenizer = None
        self._text_encoder = None
        self._fingerprint: str | None = None
        self.encoded = 0  # prompts actually run through T5 (tests and logs)

    @property
    def fingerprint(self) -> str:
        """The tokenizer's and text encoder's files, by content."""
        if self._fingerprint is None:
            files = {}
            for sub in ("tokenizer", "text_encoder"):
                for p in sorted((self.model_dir / sub).rglob("*")):
                    if p.is_file():
                        files[p.relative_to(self.model_dir).as_posix()] = file_sha256(p, self._cache_dir)
            self._fingerprint = content_key("t5-files", files)
        return self._fingerprint

    def key(self, prompt: str) -> str:
        return content_key("t5-prompt-embeds", {"prompt": prompt, "max_len": self.max_sequence_length,
                                                "dtype": str(self.dtype), "device": self.device.type,
                                                "t5": self.fingerprint})

    def components(self):
        """(tokenizer, text_encoder), loading them if needed."""
        if self._text_encoder is None:
            self._tokenizer = load_tokenizer(self.model_dir / "tokenizer")
            if self.sequential_offload:
                from model.void.offload import sequential_offload

                self._text_encoder = load_text_encoder(self.model_dir / "text_encoder", self.dtype,
                                                       torch.device("cpu"))
                sequential_offload({"text_encoder": self._text_encoder}, self.device)
            else:
                self._text_encoder = load_text_encoder(self.model_dir / "text_encoder", self.dtype, self.device)
        return self._tokenizer, self._text_encoder

    def get(self, prompt: str) -> torch.Tensor:
        """(1, 226, d_model) T5 states for `prompt`, on `device` in `dtype`."""
        return self.get_many([prompt])[0]

    def get_many(self, prompts: Iterable[str]) -> list[torch.Tensor]:
        from safetensors.torch import load_file, save_file

        from model.void.pipeline_void import t5_prompt_embeds

        prompts = list(prompts)
        out: dict[str, torch.Tensor] = {}
        for prompt in prompts:
            k = self.key(prompt)
            if k in self._memory:
                out[prompt] = self._memory[k]
            elif self.store_dir is not None and (self.store_dir / f"{k}.safetensors").exists():
                self._memory[k] = load_file(str(self.store_dir / f"{k}.safetensors"))["prompt_embeds"].to(self.device)
                out[prompt] = self._memory[k]
        todo = [p for p in dict.fromkeys(prompts) if p not in out]
        if todo:
            tokenizer, text_encoder = self.components()
            for prompt in todo:
                embeds = t5_prompt_embeds(tokenizer, text_encoder, prompt, self.max_sequence_length, self.device,
                                          self.dtype)
                self.encoded += 1
                k = self.key(prompt)
                self._memory[k] = out[prompt] = embeds
                if self.store_dir is not None:
                    with atomic_path(self.store_dir / f"{k}.safetensors") as tmp:
                        save_file({"prompt_embeds": embeds.detach().cpu().contiguous()}, str(tmp),
                                  metadata={"prompt": prompt[:1000]})
            if self.release_after_use:
                self.release()
        return [out[p] for p in prompts]

    def release(self) -> None:
        """Drop T5 (and its device memory); cached embeddings stay."""
        if self._text_encoder is not None:
            self._text_encoder = None
            self._tokenizer = None
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
