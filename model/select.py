"""Which removal backend a batch gets, and what it is before anything loads.

`auto` means VOID where CUDA and its weights exist, the classical CPU backend elsewhere.
`backend_identity` names the backend and its version (weights hash included) from the model
folder alone, so a process that only needs to know whether a chunk's result is already on the
store never loads a 5B-parameter model. Loaded backends are cached by the caller (one per worker
process and settings), not here.
"""
from __future__ import annotations

import os

from model.backend import BackendIdentity, RemovalBackend
from model.registry import BACKENDS

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


def backend_args(name: str, model_dir: str | None = None, steps: int = 50, guidance: float = 1.0,
                 passes: int = 1) -> tuple[str, dict]:
    """(registry name, constructor options) for a batch's backend settings.

    Two passes mean VOID's warped-noise refinement: pass 1 and pass 2 share one transformer whose
    weights are swapped in place.
    """
    resolved = resolve_backend(name, model_dir)
    if passes == 2:
        if resolved != "void":
            raise ValueError("--passes 2 is VOID's warped-noise refinement: it needs --backend void (or auto with "
                             "CUDA) and --model-dir")
        return "void2", {"model_dir": model_dir, "steps": steps, "guidance": guidance,
                         "raft_model": raft_model(model_dir)}
    if resolved == "void":
        return "void", {"model_dir": model_dir, "steps": steps, "guidance": guidance}
    return resolved, {}


def backend_identity(name: str, model_dir: str | None = None, steps: int = 50, guidance: float = 1.0,
                     passes: int = 1) -> BackendIdentity:
    """What `load_backend` with these settings would report, without loading any weights."""
    key, options = backend_args(name, model_dir, steps, guidance, passes)
    return BACKENDS.factory(key).identity_of(**options)


def load_backend(name: str, model_dir: str | None = None, steps: int = 50, guidance: float = 1.0,
                 passes: int = 1) -> RemovalBackend:
    """A new backend instance for these settings (weights load here)."""
    key, options = backend_args(name, model_dir, steps, guidance, passes)
    return BACKENDS.build(key, **options)
