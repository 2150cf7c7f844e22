"""An fsspec-backed artifact store: keys under one root URI, atomic writes, content hashes.

One filesystem is built from the root URI once (`file://`, a local path, `memory://` in tests,
`s3://` with s3fs installed); everything else addresses artifacts by '/'-separated keys under the
root, so no caller ever builds a path that can escape it. Writes never leave a partial file
under the final name: locally a temp file in the same directory is `os.replace`d into place;
on object stores a single `pipe_file` (one PUT) is atomic by nature.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem


class StoreError(Exception):
    """A store operation failed; the message names the URI."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _clean_key(key: str) -> str:
    """A relative '/'-key with no '..', no absolute part and no empty segments."""
    text = str(key).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or any(p == ".." for p in parts):
        raise StoreError(f"invalid artifact key {key!r}: keys are relative and may not contain '..'")
    return "/".join(parts)


class ArtifactStore:
    """Artifacts under `root_uri`; `local_cache` holds downloaded copies of remote artifacts."""

    def __init__(self, root_uri: str, storage_options: dict | None = None, local_cache: str | None = None):
        self.root_uri = str(root_uri)
        self.fs, root = fsspec.core.url_to_fs(self.root_uri, **(storage_options or {}))
        self.root = root.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
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

    # -- reading -------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError as e:
            raise StoreError(f"no artifact at {self.uri(key)}") from e

    def list(self, prefix: str = "") -> list[str]:
        """Keys of finished files under `prefix`, sorted (temp '.partial' and hidden files are not listed)."""
        base = self.path(prefix) if prefix else self.root
        if not self.fs.exists(base):
            return []
        keys = (self.key_of(str(f)) for f in self.fs.find(base))
        names = ((k, k.rsplit("/", 1)[-1]) for k in keys)
        return sorted(k for k, name in names if ".partial" not in name and not name.startswith("."))

    def local_path(self, key: str) -> str:
        """A local file holding `key`: the file itself when local, a cached download otherwise."""
        if self.is_local:
            p = self.path(key)
            if not os.path.exists(p):
                raise StoreError(f"no artifact at {p}")
            return p
        digest = hashlib.sha1(self.uri(key).encode()).hexdigest()[:16]
        target = self._cache / digest / PurePosixPath(key).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
            try:
                self.fs.get_file(self.path(key), str(tmp))
            except FileNotFoundError as e:
                raise StoreError(f"no artifact at {self.uri(key)}") from e
            os.replace(tmp, target)
        return str(target)

    # -- writing -------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, mode: str = "overwrite") -> str:
        """Write `data` at `key` atomically; mode='create' refuses an existing key. Returns the URI."""
        path = self.path(key)
        if mode == "create" and self.fs.exists(path):
            raise StoreError(f"refusing to overwrite {self.uri(key)}: versions are never overwritten")
        if self.is_local:
            with self._local_tmp(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
        else:
            self.fs.pipe_file(path, data)
        return self.uri(key)

    def put_file(self, key: str, local_file: str | os.PathLike, mode: str = "overwrite") -> str:
        """Copy a finished local file to `key` atomically. Returns the URI."""
        path = self.path(key)
        if mode == "create" and self.fs.exists(path):
            raise StoreError(f"refusing to overwrite {self.uri(key)}: versions are never overwritten")
        if self.is_local:
            if os.path.abspath(local_file) == os.path.abspath(path):
                return path
            with self._local_tmp(path) as tmp:
                shutil.copyfile(local_file, tmp)
        else:
            self.fs.put_file(str(local_file), path)
        return self.uri(key)

    @contextlib.contextmanager
    def writing(self, key: str, suffix: str | None = None) -> Iterator[str]:
        """A local temp path to write `key`'s content into; it lands at `key` only if the block succeeds.

        Encoders (PyAV, cv2) want a real file name with the right extension; this gives one beside
        the target for local stores (so the rename is atomic) or in the temp dir for remote ones.
        """
        path = self.path(key)
        suffix = suffix if suffix is not None else PurePosixPath(key).suffix
        if self.is_local:
            with self._local_tmp(path, suffix) as tmp:
                yield tmp
        else:
            fd, tmp = tempfile.mkstemp(suffix=f".partial{suffix}")
            os.close(fd)
            try:
                yield tmp
                self.fs.put_file(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)

    @contextlib.contextmanager
    def _local_tmp(self, path: str, suffix: str = "") -> Iterator[str]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex[:12]}.partial{suffix}"
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)

    def publish_dir(self, key: str, local_dir: str | os.PathLike) -> str:
        """Publish a finished local folder as `key` (a version folder): never over an existing one.

        Locally the folder is staged beside the target and renamed in one step, so a reader never
        sees a half-written version; remotely the files are uploaded and a `_COMPLETE` marker last.
        """
        path = self.path(key)
        if self.fs.exists(path):
            raise StoreError(f"refusing to overwrite {self.uri(key)}: versions are never overwritten")
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            staging = f"{path}.{uuid.uuid4().hex[:12]}.partial"
            shutil.copytree(local_dir, staging)
            try:
                os.rename(staging, path)  # fails if the target appeared meanwhile
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                raise StoreError(f"refusing to overwrite {self.uri(key)}: versions are never overwritten")
        else:
            for f in sorted(Path(local_dir).rglob("*")):
                if f.is_file():
                    self.fs.put_file(str(f), f"{path}/{f.relative_to(local_dir).as_posix()}")
            self.fs.pipe_file(f"{path}/_COMPLETE", b"")
        return self.uri(key)

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(key), recursive=True)
