"""An fsspec-backed artifact store: keys under one root URI, atomic writes, content hashes.

One filesystem is built from the root URI once (`file://`, a local path, `memory://` in tests,
`s3://` with s3fs installed); everything else addresses artifacts by '/'-separated keys under the
root, so no caller ever builds a path that can escape it. Writes never leave a partial file
under the final name: locally a temp file in the same directory is `os.replace`d into place;
on object stores a single `pipe_file` (one PUT) is atomic by nature.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from storage.atomic import atomic_path, is_partial, write_atomic
from storage.keys import content_key, short

COMPLETE = "_COMPLETE"  # written last into a folder published to an object store


class StoreError(Exception):
    """A store operation failed; the message names the URI."""


class DiskFull(OSError):
    """Not enough room on the output disk; the message names the disk (an ENOSPC OSError)."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def _clean_key(key: str) -> str:
    """A relative '/'-key with no '..', no absolute part and no empty segments."""
    text = str(key).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or any(p == ".." for p in parts):
        raise StoreError(f"invalid artifact key {key!r}: keys are relative and may not contain '..'")
    return "/".join(parts)


class ArtifactStore:
    """Artifacts under `root_uri`; `local_cache` holds downloaded copies of remote artifacts."""

    def __init__(self, root_uri: str, storage_options: dict | None = None, local_cache: str | None = None,
                 create: bool = True):
        """`create=False` never makes the root (readers such as `status` must not create what they read)."""
        self.root_uri = str(root_uri)
        self.fs, root = fsspec.core.url_to_fs(self.root_uri, **(storage_options or {}))
        self.root = root.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local and create:
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot use {self.root_uri} as the output folder: {e.strerror or e}") from None
        self._cache = Path(local_cache or tempfile.gettempdir()) / "voidbatch-cache"

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root_uri!r})"

    # -- addressing -------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """The filesystem path of `key` (inside the root, always)."""
        return f"{self.root}/{_clean_key(key)}" if self.root != "/" else f"/{_clean_key(key)}"

    def uri(self, key: str) -> str:
        """A full URI for `key`: a plain path for local stores, protocol://path otherwise."""
        p = self.path(key)
        if self.is_local:
            return p
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{p.lstrip('/')}" if protocol != "memory" else f"memory://{p}"

    def key_of(self, uri: str) -> str:
        """The key of a URI or path inside this store (inverse of `uri`)."""
        p = str(fsspec.core.url_to_fs(uri)[1]) if "://" in uri else str(uri)
        prefix = self.root.rstrip("/") + "/"
        if not p.startswith(prefix) and ("/" + p).startswith(prefix):
            p = "/" + p  # some filesystems drop the leading slash
        if not p.startswith(prefix):
            raise StoreError(f"{uri} is not inside the store root {self.root_uri}")
        return p[len(prefix):]

    def disk(self) -> str:
        """Where the output lives, for messages: the mount point of a local root, else the URI."""
        if not self.is_local:
            return self.root_uri
        p = Path(self.root).resolve()
        while not p.exists() or not os.path.ismount(p):
            p = p.parent
        return str(p)

    def free_bytes(self) -> int | None:
        """Free space for the output folder (None for object stores, which do not fill up this way)."""
        if not self.is_local:
            return None
        p = Path(self.root)
        while not p.exists():
            p = p.parent
        return shutil.disk_usage(p).free

    # -- reading -------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError as e:
            raise StoreError(f"no artifact at {self.uri(key)}") from e

    def list(self, prefix: str = "") -> list[str]:
        """Keys of finished files under `prefix`, sorted (temp, hidden and `_COMPLETE` marker files are not listed)."""
        base = self.path(prefix) if prefix else self.root
        if not self.fs.exists(base):
            return []
        keys = (self.key_of(str(f)) for f in self.fs.find(base))
        names = ((k, k.rsplit("/", 1)[-1]) for k in keys)
        return sorted(k for k, name in names if not is_partial(name) and not name.startswith(".") and name != COMPLETE)

    def local_path(self, key: str) -> str:
        """A local file holding `key`: the file itself when local, a cached download otherwise."""
        if self.is_local:
            p = self.path(key)
            if not os.path.exists(p):
                raise StoreError(f"no artifact at {p}")
            return p
        digest = short(content_key(self.uri(key)), 16)
        target = self._cache / digest / PurePosixPath(key).name
        if not target.exists():
            try:
                with atomic_path(target) as tmp:
                    self.fs.get_file(self.path(key), str(tmp))
            except FileNotFoundError as e:
                raise StoreError(f"no artifact at {self.uri(key)}") from e
        return str(target)

    # -- writing -------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, mode: str = "overwrite") -> str:
        """Write `data` at `key` atomically; mode='create' refuses an existing key. Returns the URI."""
        path = self._target(key, mode)
        if self.is_local:
            try:
                write_atomic(path, data, exclusive=mode == "create")
            except FileExistsError:
                raise self._exists(key) from None
        else:
            self.fs.pipe_file(path, data)
        return self.uri(key)

    def put_file(self, key: str, local_file: str | os.PathLike, mode: str = "overwrite") -> str:
        """Copy a finished local file to `key` atomically. Returns the URI."""
        with self.writing(key, mode=mode) as tmp:
            with open(local_file, "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
        return self.uri(key)

    @contextlib.contextmanager
    def writing(self, key: str, suffix: str | None = None, mode: str = "overwrite") -> Iterator[str]:
        """A local temp path to write `key`'s content into; it lands at `key` only if the block succeeds.

        Encoders (PyAV, cv2) want a real file name with the right extension; this gives one beside
        the target for local stores (so the rename is atomic) or in the temp dir for remote ones.
        """
        path = self._target(key, mode)
        suffix = suffix if suffix is not None else PurePosixPath(key).suffix
        if self.is_local:
            try:
                with atomic_path(path, suffix, exclusive=mode == "create") as tmp:
                    yield str(tmp)
            except FileExistsError:
                raise self._exists(key) from None
        else:
            with tempfile.TemporaryDirectory(prefix="voidbatch-") as folder:
                tmp = Path(folder) / f"upload{suffix}"
                yield str(tmp)
                self.fs.put_file(str(tmp), path)

    @contextlib.contextmanager
    def writing_dir(self, key: str) -> Iterator[Path]:
        """A local folder to build `key` (a version folder) in; published in one step, never over another.

        Locally the folder is built beside the target under a hidden temp name and renamed, so a
        reader never sees a half-written version and a crash leaves only a `.partial` folder (swept
        at the next run). Remotely it is built in a temp folder and uploaded, `_COMPLETE` last.
        """
        path = self._target(key, "create")
        if self.is_local:
            try:
                with atomic_path(path, exclusive=True) as tmp:
                    tmp.mkdir()
                    yield tmp
            except FileExistsError:
                raise self._exists(key) from None
        else:
            with tempfile.TemporaryDirectory(prefix="voidbatch-") as folder:
                yield Path(folder)
                if self.fs.exists(path):
                    raise self._exists(key)
                for f in sorted(Path(folder).rglob("*")):
                    if f.is_file():
                        self.fs.put_file(str(f), f"{path}/{f.relative_to(folder).as_posix()}")
                self.fs.pipe_file(f"{path}/{COMPLETE}", b"")

    def _target(self, key: str, mode: str) -> str:
        if mode not in ("overwrite", "create"):
            raise ValueError(f"mode must be 'overwrite' or 'create', got {mode!r}")
        path = self.path(key)
        if mode == "create" and self.fs.exists(path):
            raise self._exists(key)
        return path

    def _exists(self, key: str) -> StoreError:
        return StoreError(f"refusing to overwrite {self.uri(key)}: versions are never overwritten")

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(key), recursive=True)
