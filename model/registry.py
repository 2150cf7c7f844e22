"""Named parts chosen on the command line: removal backends, segmenters, reasoners; one registry shape.

Each entry points at a factory as "module:attribute" and is imported on first use, so asking for
the classical backend never imports torch or diffusers and the heuristic reasoner never imports
google-genai. Policy names ("auto", "none") belong to whoever resolves them, not to a registry.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


class Registry:
    """Names -> lazily imported factories, with errors that list what is known."""

    def __init__(self, what: str, entries: dict[str, str]):
        self.what = what
        self._entries = dict(entries)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def factory(self, name: str) -> Callable[..., Any]:
        target = self._entries.get(name)
        if target is None:
            raise ValueError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        module, attrs = target.split(":")
        obj = importlib.import_module(module)
        for attr in attrs.split("."):  # "Class.constructor" too
            obj = getattr(obj, attr)
        return obj

    def build(self, name: str, **options) -> Any:
        """The part called `name`, built with `options` (its own keyword arguments)."""
        return self.factory(name)(**options)


BACKENDS = Registry("removal backend", {
    "classical": "model.classical:ClassicalBackend",
    "void": "model.void.backend:VoidBackend",
    "void2": "model.void.two_pass:VoidTwoPassBackend",
})

SEGMENTERS = Registry("segmenter", {
    "classical": "model.masks.segment:ClassicalSegmenter",
    "sam2": "model.masks.segment:SAM2Segmenter.from_dir",
})

REASONERS = Registry("reasoner", {
    "gemini": "model.masks.gemini:GeminiReasoner",
    "heuristic": "model.masks.heuristic:HeuristicReasoner",
})
