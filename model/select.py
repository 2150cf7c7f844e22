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


def raft_model(model_dir: str) -> str:
    """raft_large (the reference's) unless the model folder only ships raft_small (the tiny dev model)."""
    if "://" not in model_dir:
        raft = os.path.join(model_dir, "raft")
        has = lambda name: any(os.path.isfile(os.path.join(raft, name + ext)) for ext in (".pth", ".safetensors"))  # noqa: E731
        if not has("raft_large") and has("raft_small"):
            return "raft_small"
    return "raft_large"


@lru_cache(maxsize=2)
def load_backend(name: str, model_dir: str | None = None, steps: int = 50, guidance: float = 1.0,
                 passes: int = 1) -> RemovalBackend:
    """One backend instance per process and settings (weights load once per worker, not per chunk).

    Two passes mean VOID's warped-noise refinement: pass 1 and pass 2 share one transformer whose
    weights are swapped in place.
    """
    resolved = resolve_backend(name, model_dir)
    if passes == 2:
        if resolved != "void":
            raise ValueError("--passes 2 is VOID's warped-noise refinement: it needs --backend void (or auto with "
                             "CUDA) and --model-dir")
        return get_backend("void2", model_dir=model_dir, steps=steps, guidance=guidance,
                           raft_model=raft_model(model_dir))
    if resolved == "void":
        return get_backend("void", model_dir=model_dir, steps=steps, guidance=guidance)
    return get_backend(resolved)
