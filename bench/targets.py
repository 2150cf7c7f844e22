"""How a bench ends: the targets it missed, or that all were met; the exit code says which."""
from __future__ import annotations


def verdict(failures: list[str], met: str) -> int:
    """Print the missed targets (exit code 1) or `met` (exit code 0)."""
    if failures:
        print("\nTARGETS MISSED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall targets met ({met})")
    return 0
