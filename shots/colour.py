"""Colour management: one explicit transform from a plate's colour space to what the removal backends see.

The backends (VOID, the classical fill) were made for display-referred 8-bit video. A plate reaches
them through one OpenColorIO processor, from its input colour space to a display and view (for
scene-linear plates: ACES 1.0 SDR Video on a Rec.1886 Rec.709 display); their output comes back
through the inverse, and only the removal region takes it. The keep region is never transformed:
it stays the decoded source, at the source's precision. Display-referred plates (video, 8/16-bit
images) need no colour change: they are only rescaled to 8 bits and back.

The input colour space of a shot comes from the file's tags, then the OCIO config's file rules,
then the edit, sidecar or command line, then the players' convention, in that order; the manifest
records which decided, and what was assumed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from shots.samples import Colour

BUILTIN_CONFIG = "studio-config-v2.2.0_aces-v1.3_ocio-v2.4"
DISPLAY = "Rec.1886 Rec.709 - Display"
VIEW = "ACES 1.0 - SDR Video"
# Display-referred encodings: the backends take them as they are (8-bit codes), no transform.
DISPLAY_REFERRED = ("Rec.1886 Rec.709 - Display", "sRGB Encoded Rec.709 (sRGB)", "sRGB - Display",
                    "Gamma 2.4 Encoded Rec.709", "Camera Rec.709")

_PRIMARIES = {"aces-ap0": "ACES2065-1", "aces-ap1": "ACEScg", "bt709": "Linear Rec.709 (sRGB)",
              "bt2020": "Linear Rec.2020"}


@dataclass(frozen=True)
class InputSpace:
    """A shot's input colour space (an OCIO name), what decided it, and what was assumed on the way."""

    name: str
    decided_by: str  # tags | file rules | edit | convention
    note: str | None = None

    @property
    def display_referred(self) -> bool:
        return self.name in DISPLAY_REFERRED

    def describe(self) -> str:
        """For the manifest and logs: 'ACEScg (tags)', 'Rec.1886 Rec.709 - Display (convention: untagged ...)'."""
        return f"{self.name} ({self.decided_by}{': ' + self.note if self.note else ''})"


@lru_cache(maxsize=4)
def config(path: str | None = None):
    """The OCIO config: `path`, else $OCIO, else the built-in ACES studio config (no files needed)."""
    import PyOpenColorIO as ocio

    path = path or os.environ.get("OCIO")
    if path:
        return ocio.Config.CreateFromFile(path)
    return ocio.Config.CreateFromBuiltinConfig(BUILTIN_CONFIG)


def input_space(media_path: str, colour: Colour | None, requested: str | None = None,
                config_path: str | None = None) -> InputSpace:
    """The plate's input colour space: its tags, the config's file rules, the edit/CLI's `requested`, convention."""
    cfg = config(config_path)
    if colour is not None and colour.assumed is None:
        return InputSpace(_from_tags(colour), "tags")
    if not cfg.filepathOnlyMatchesDefaultRule(media_path):
        name, rule = cfg.getColorSpaceFromFilepath(media_path)
        return InputSpace(name, "file rules", f"OCIO file rule {cfg.getFileRules().getName(rule)!r}")
    if requested:
        return InputSpace(known_space(requested, config_path), "edit")
    if colour is not None:
        return InputSpace(_from_tags(colour), "convention", colour.assumed)
    return InputSpace("sRGB Encoded Rec.709 (sRGB)", "convention", "no colour information: sRGB assumed")


def known_space(name: str, config_path: str | None = None) -> str:
    """`name` as the OCIO config spells it (names and aliases match); a ValueError listing the config's spaces."""
    space = config(config_path).getColorSpace(name)
    if space is None:
        names = ", ".join(cs.getName() for cs in config(config_path).getColorSpaces())
        raise ValueError(f"colour space {name!r} is not in the OCIO config; it has: {names}")
    return space.getName()


def _from_tags(colour: Colour) -> str:
    if colour.transfer == "linear":
        return _PRIMARIES.get(colour.primaries, "Linear Rec.709 (sRGB)")
    if colour.transfer == "iec61966-2-1":
        return "sRGB Encoded Rec.709 (sRGB)"
    return "Rec.1886 Rec.709 - Display"  # BT.709/BT.601 video: display-referred Rec.709-like


class ColourPipeline:
    """Frames at the plate's precision <-> the backends' 8-bit display RGB, for one input colour space."""

    def __init__(self, space: InputSpace, config_path: str | None = None, display: str = DISPLAY, view: str = VIEW):
        self.space = space
        self._forward = self._inverse = None
        if not space.display_referred:
            import PyOpenColorIO as ocio

            cfg = config(config_path)
            transform = ocio.DisplayViewTransform(src=space.name, display=display, view=view)
            self._forward = cfg.getProcessor(transform).getDefaultCPUProcessor()
            transform.setDirection(ocio.TRANSFORM_DIR_INVERSE)
            self._inverse = cfg.getProcessor(transform).getDefaultCPUProcessor()

    def to_model(self, frame: np.ndarray) -> np.ndarray:
        """uint8 display RGB of a frame at the plate's precision (what the backends and people look at)."""
        if frame.dtype == np.uint8 and self._forward is None:
            return frame
        x = _unit(frame)
        if self._forward is not None:
            x = np.ascontiguousarray(x, dtype=np.float32)
            self._forward.applyRGB(x)
        return np.rint(np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)

    def from_model(self, display: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Float values in the plate's units (codes for integer plates) of 8-bit display RGB from a backend."""
        x = display.astype(np.float32) / 255.0
        if self._inverse is not None:
            x = np.ascontiguousarray(x)
            self._inverse.applyRGB(x)
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)
        return x * scale


def _unit(frame: np.ndarray) -> np.ndarray:
    """Samples as floats where 1.0 is full scale."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255.0
    if frame.dtype == np.uint16:
        return frame.astype(np.float32) / 65535.0
    return frame.astype(np.float32)
