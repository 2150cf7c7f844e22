"""Content keys: the one way voidbatch names work by what decides it, never by paths or mtimes.

`content_key(...)` is the sha256 of its arguments as canonical JSON, so two callers that
describe the same work get the same key whatever order their dicts were built in. Inputs on disk
enter a key through `files_sha256`: the bytes of every file that is read (a movie, or the frames
of a sequence that a shot uses), so a plate re-delivered in place, even with its old mtimes
restored, gets a new key. Decoded pixels enter through `PixelDigest`.
"""
from __future__ import annotations

import hashlib
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

_BLOCK = 1 << 22


def _plain(value):
    if isinstance(value, (Fraction, Path)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "model_dump"):  # pydantic models (the run spec's parts)
        return value.model_dump(mode="json")
    raise TypeError(f"cannot put {type(value).__name__} in a content key")


def content_key(*parts) -> str:
    """sha256 hex of `parts` as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def short(key: str, n: int = 12) -> str:
    """The first `n` hex digits of a key, for folder and file names."""
    return key[:n]


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(paths: Iterable[str | os.PathLike]) -> str:
    """One digest over several files, in order: each file's name and bytes (a sequence's frames)."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(Path(p).name.encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(_BLOCK):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


class PixelDigest:
    """sha256 over decoded frames (shape, dtype and bytes), fed one frame at a time as they stream by."""

    def __init__(self):
        self._digest = hashlib.sha256()

    def update(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame)
        self._digest.update(f"{frame.shape}{frame.dtype}".encode())
        self._digest.update(frame.data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
