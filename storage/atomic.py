"""Writes that never leave a partial file under the final name: the one helper every writer uses.

The content goes to a hidden temp name beside the target (same directory, so the rename is
atomic), `.{name}.{random}.partial{suffix}`, and lands with one rename when the block succeeds;
on any error the temp file or folder is removed. `suffix` keeps the extension encoders choose
their format by (`.partial.mkv`). Readers and listings skip hidden `.partial` names, and
`sweep_partials` removes the ones a killed process left behind.

    with atomic_path(path, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), frame)
    write_atomic(path, data)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

PARTIAL = ".partial"


def temp_name(path: str | os.PathLike, suffix: str = "") -> Path:
    """A hidden, unique temp path beside `path`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PARTIAL}{suffix}")


def is_partial(name: str) -> bool:
    """True for names this module writes before they land (or that a killed writer left)."""
    return PARTIAL in name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def land(tmp: str | os.PathLike, path: str | os.PathLike, exclusive: bool = False) -> None:
    """Move a finished temp file or folder to `path` in one step.

    exclusive: never replace what is there (versions are never overwritten): FileExistsError instead.
    """
    tmp, path = Path(tmp), Path(path)
    if not exclusive:
        os.replace(tmp, path)
    elif tmp.is_dir():
        if path.exists():
            raise FileExistsError(f"{path} already exists")
        os.rename(tmp, path)  # onto an existing non-empty folder this fails too
    else:
        os.link(tmp, path)  # fails if `path` appeared meanwhile
        tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", exclusive: bool = False) -> Iterator[Path]:
    """A temp path beside `path` to write a file (or build a folder) into; it lands at `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, suffix)
    try:
        yield tmp
        land(tmp, path, exclusive)
    finally:
        _remove(tmp)


def write_atomic(path: str | os.PathLike, data: bytes, exclusive: bool = False, fsync: bool = True) -> Path:
    """`data` at `path`, all or nothing (flushed to disk first when `fsync`)."""
    with atomic_path(path, exclusive=exclusive) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(path)


def sweep_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove temp files and folders a killed writer left anywhere under `folder`; returns what went."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = sorted({p for p in folder.rglob(f"*{PARTIAL}*") if is_partial(p.name)}, key=lambda p: len(p.parts))
    gone: list[Path] = []
    for p in found:
        if not any(parent in gone for parent in p.parents):
            _remove(p)
            gone.append(p)
    return gone
