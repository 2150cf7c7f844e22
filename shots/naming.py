"""Shot ids that are safe as folder and file names, whatever the editor typed as a clip name.

Clip names are not file names: `/`, `../../x`, an empty name, control characters or 300 characters
must still give a readable id that never escapes the output root and never collides.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_ID_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def slug(name: str, fallback: str = "clip") -> str:
    """ASCII letters, digits, '_' and '-' only; runs of anything else become one '_'."""
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE.sub("_", text).strip("_-")
    return text or fallback


class ShotIds:
    """Hands out unique shot ids in edit order; a repeated clip name gets _2, _3, ..."""

    def __init__(self):
        self._taken: set[str] = set()

    def claim(self, clip_name: str, fallback: str = "clip") -> str:
        base = slug(clip_name, fallback)
        if len(base) > MAX_ID_LENGTH:
            digest = hashlib.sha1(clip_name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
            base = f"{base[: MAX_ID_LENGTH - 9]}_{digest}"
        candidate, n = base, 1
        while candidate.lower() in self._taken:  # case-insensitive: macOS/Windows file systems
            n += 1
            candidate = f"{base}_{n}"
        self._taken.add(candidate.lower())
        return candidate
