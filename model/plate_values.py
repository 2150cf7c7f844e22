"""Plate samples as display-like floats and back: what fills and grain do their arithmetic in.

Why: a fill works the same on uint8, uint16 and scene-linear float plates when it measures and adds
noise on one display-like 0..255 scale (float plates through gamma 2.2, sign kept, values above
white allowed) and casts back to the plate's own sample type without clipping float.
"""
from __future__ import annotations

import numpy as np


def encode(x: np.ndarray, dtype) -> np.ndarray:
    """float32 values on a display-like 0..255 scale (float plates: gamma 2.2, sign kept, > 255 allowed)."""
    x = x.astype(np.float32)
    if dtype == np.uint8:
        return x
    if dtype == np.uint16:
        return x * np.float32(1 / 257)
    return np.sign(x) * np.abs(x) ** np.float32(1 / 2.2) * np.float32(255)


def decode(y: np.ndarray, dtype) -> np.ndarray:
    if dtype == np.uint8:
        return y
    if dtype == np.uint16:
        return y * np.float32(257)
    return np.sign(y) * np.abs(y * np.float32(1 / 255)) ** np.float32(2.2)


def cast(vals: np.ndarray, dtype) -> np.ndarray:
    """float32 values to the plate's dtype: integers rounded and clipped, float left alone (never clipped)."""
    if dtype == np.float32:
        return vals.astype(np.float32)
    top = 255 if dtype == np.uint8 else 65535
    return np.clip(np.rint(vals), 0, top).astype(dtype)
