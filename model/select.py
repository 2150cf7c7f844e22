"""Which removal backend a batch gets: `auto` means VOID where it can run, the classical one elsewhere."""
from __future__ import annotations

from functools import lru_cache

from model.backend import RemovalBackend, get_backend


def resolve_backend(name: str) -> str:
    """'auto' -> 'void' when CUDA and VOID weights exist, else 'classical'; explicit names are checked."""
    if name == "auto":
        return "classical"  # the VOID backend is not part of this build yet
    if name == "void":
        raise ValueError("the 'void' backend is not available in this build yet; use --backend classical "
                         "(or auto)")
    return name


@lru_cache(maxsize=2)
def load_backend(name: str) -> RemovalBackend:
    """One backend instance per process and name (weights load once per worker, not per chunk)."""
    return get_backend(resolve_backend(name))
