"""Which removal backend a batch gets: `auto` means VOID where it can run, the classical one elsewhere."""
from __future__ import annotations

import os
from functools import lru_cache

from model.backend import RemovalBackend, get_backend

PASS1_WEIGHTS = "void_pass1.safetensors"


def void_available(model_dir: str | None) -> bool:
    """CUDA is present and `model_dir` holds VOID's pass-1 weights (a local folder; remote ones are taken on trust)."""
    if not model_dir:
        return False
    if "://" not in model_dir and not os.path.isfile(os.path.join(model_dir, PASS1_WEIGHTS)):
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_backend(name: str, model_dir: str | None = None) -> str:
    """'auto' -> 'void' when CUDA and VOID weights exist, else 'classical'; explicit names are checked."""
    if name == "auto":
        return "void" if void_available(model_dir) else "classical"
    if name == "void" and not model_dir:
        raise ValueError("the 'void' backend needs --model-dir: a folder laid out like the base model "
                         "(transformer/, vae/, text_encoder/, tokenizer/, scheduler/) plus void_pass1.safetensors")
    return name


@lru_cache(maxsize=2)
def load_backend(name: str, model_dir: str | None = None, steps: int = 50, guidance: float = 1.0) -> RemovalBackend:
    """One backend instance per process and settings (weights load once per worker, not per chunk)."""
    resolved = resolve_backend(name, model_dir)
    if resolved == "void":
        return get_backend("void", model_dir=model_dir, steps=steps, guidance=guidance)
    return get_backend(resolved)
