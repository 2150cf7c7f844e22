"""What the benches share: the synthetic scenes they run on, and how they end (targets missed or met)."""
from __future__ import annotations

import argparse


def scene_parser(description: str) -> argparse.ArgumentParser:
    """Arguments of a bench over generated scenes: frames, size, scene kinds, seed."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=672)
    ap.add_argument("--kinds", default="static,pan,handheld")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def verdict(failures: list[str], met: str) -> int:
    """Print the missed targets (exit code 1) or `met` (exit code 0)."""
    if failures:
        print("\nTARGETS MISSED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall targets met ({met})")
    return 0
