"""Where a VOID model's files are, and what their bytes hash to: local, never fetched from a hub.

The model directory is laid out like the base repo (CogVideoX-Fun-V1.5-5b-InP) plus VOID's weights:

    transformer/config.json     base config (the base weights are not read: the VOID checkpoints are full
                                state dicts, reference note section 2.3)
    vae/, text_encoder/, tokenizer/, scheduler/
    void_pass1.safetensors      the fine-tuned transformer; void_pass2.safetensors for pass 2
    raft/                       RAFT weights for pass 2's optical flow (`model.void.flow`)

`model_dir` is a local path or any fsspec URI; a URI is copied once into a local cache.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from storage.atomic import atomic_path, write_atomic
from storage.keys import content_key, sha256_file, short

log = logging.getLogger(__name__)

PASS1_WEIGHTS = "void_pass1.safetensors"


def default_cache_dir() -> Path:
    return Path(os.environ.get("VOIDBATCH_CACHE", Path.home() / ".cache" / "voidbatch"))


def resolve_model_dir(model_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                      storage_options: dict | None = None) -> Path:
    """A local directory holding the model: `model_dir` itself, or a cached copy of an fsspec URI.

    A URI is copied once into `cache_dir/models/<key of the uri>` (beside it first, then renamed, so a
    failed copy never looks finished); later calls reuse the copy.
    """
    text = os.fspath(model_dir)
    if "://" not in text or text.startswith("file://"):
        local = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()
        if not local.is_dir():
            raise FileNotFoundError(f"VOID model directory not found: {local}")
        return local
    import fsspec

    target = Path(cache_dir or default_cache_dir()) / "models" / short(content_key("void-model-copy", text), 16)
    if (target / ".complete").exists():
        return target
    fs, root = fsspec.core.url_to_fs(text, **(storage_options or {}))
    root = root.rstrip("/")
    files = [p for p in fs.find(root) if not p.rstrip("/").endswith("/")]
    if not files:
        raise FileNotFoundError(f"VOID model directory is empty or missing: {text}")
    try:
        with atomic_path(target) as tmp:
            for remote in files:
                dest = tmp / remote[len(root):].lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                log.info("copying %s -> %s", remote, dest)
                fs.get_file(remote, str(dest))
            (tmp / ".complete").write_text(text)
    except OSError:  # another worker finished first
        if not (target / ".complete").exists():
            raise
    return target


def weights_file(root: Path, name: str, note: str = "") -> Path:
    """`root / name`, or FileNotFoundError saying which checkpoint is missing where (and `note`)."""
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found in {root}{note}")
    return path


_SHA_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a file, remembered in `cache_dir/sha256.json` so 11 GB of weights are read once.

    The memo is keyed by (path, inode, size, mtime, ctime): a file replaced or rewritten in place gets a new
    inode or ctime, and ctime cannot be set back by a user (mtime can), so it is hashed again.
    """
    path = Path(path).resolve()
    st = path.stat()
    ident = f"{path}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
    index_path = Path(cache_dir or default_cache_dir()) / "sha256.json"
    with _SHA_LOCK:
        index = read_json(index_path)
        if ident in index:
            return index[ident]
        digest = sha256_file(path)
        index = read_json(index_path)
        index[ident] = digest
        try:
            write_atomic(index_path, json.dumps(index, indent=1, sort_keys=True).encode(), fsync=False)
        except OSError as e:  # a read-only cache only costs a re-hash next time
            log.warning("could not record sha256 in %s: %s", index_path, e)
        return digest


def read_json(path: Path) -> dict:
    """A JSON file's object, or {} when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
