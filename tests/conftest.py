"""Shared test fixtures: where the shared data lives and how to make small movies with known content."""
from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test when the shared data is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data not found: {p}")
    return p


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_exr_sequence(folder: Path, stem: str, frames, first: int = 1001) -> list[Path]:
    """Half-float EXR frames `{stem}.{NNNN}.exr` through PyAV's encoder (values above 1.0 kept)."""
    import av
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(folder / f"{stem}.%04d.exr"), "w", format="image2", options={"start_number": str(first)}) as out:
        stream = out.add_stream("exr", rate=24)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "gbrpf32le"
        stream.options = {"format": "half", "compression": "zip1"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(f, np.float32), format="gbrpf32le")))
        out.mux(stream.encode(None))
    return [folder / f"{stem}.{first + i:04d}.exr" for i in range(len(frames))]


def make_movie(path: Path, frames: int, rate: Fraction | int = 24, size: tuple[int, int] = (64, 36),
               timecode: str | None = None, codec: str = "libx264") -> Path:
    """A testsrc2 movie with `frames` frames; the frame counter is burnt into the picture."""
    rate = Fraction(rate)
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={size[0]}x{size[1]}:rate={rate.numerator}/{rate.denominator}",
           "-frames:v", str(frames), "-c:v", codec, "-pix_fmt", "yuv420p"]
    if codec == "libx264":
        cmd += ["-g", "12", "-bf", "2", "-crf", "18"]
    if timecode:
        cmd += ["-timecode", timecode]
    cmd.append(str(path))
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture
def stalled_path(tmp_path):
    """Factory: a FIFO nobody writes to, standing in for a file on a stalled network mount.

    Opening it for reading blocks until a writer appears. At teardown a writer opens and closes
    each one, so a reader still blocked in open() returns (it then reads end-of-file).
    """
    import os

    made: list[Path] = []

    def make(name: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    for path in made:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader is waiting on it
            continue
        os.close(fd)


@pytest.fixture
def short_media_timeout(monkeypatch) -> float:
    """VOIDBATCH_MEDIA_TIMEOUT of 2 s, so a stalled open or read fails fast."""
    monkeypatch.setenv("VOIDBATCH_MEDIA_TIMEOUT", "2")
    return 2.0


# --- VOID on a tiny random-weight model (tests/test_void_*.py) -----------------------------------------------

VOID_H = VOID_W = 32  # the tiny model: multiples of 16 (VAE x8, patch 2); the real model runs at 384x672


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny model's ops are too small to gain from threads; on a shared 2-core runner, spinning OpenMP
    threads made these modules several times slower. One thread, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def void_tiny_dir(tmp_path_factory):
    """A tiny VOID model directory (model.void.tiny), written once per session; tests must not change it."""
    from model.void.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("void_tiny_model"))


@pytest.fixture(scope="session")
def void_cache_dir(tmp_path_factory):
    """Model copies, weight hashes, prompt embeddings and pass-2 noise of the tiny VOID model."""
    return tmp_path_factory.mktemp("void_cache")


def void_clip(frames: int, seed: int = 0, h: int = VOID_H, w: int = VOID_W):
    """Random frames and a quadmask with all four levels: remove, overlap, affected (a shadow), keep."""
    import numpy as np

    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8)
    mask = np.full((frames, h, w), 255, np.uint8)
    mask[:, 8:20, 8:20] = 0  # remove
    mask[:, 6:8, 8:20] = 63  # overlap
    mask[:, 20:26, 4:24] = 127  # affected
    return video, mask


@pytest.fixture
def void_loads_nothing(monkeypatch):
    """Every way a VOID model or RAFT gets loaded raises: for code that must answer from config files and hashes."""
    import diffusers
    import transformers

    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded")

    for target in ("model.void.backend.load_void_pass1", "model.void.loading.load_transformer",
                   "model.void.loading.load_vae", "model.void.prompts.load_text_encoder", "model.void.pass2.load_raft",
                   "model.void.flow.load_raft", "torch.load"):
        monkeypatch.setattr(target, refuse)
    for cls in (diffusers.CogVideoXTransformer3DModel, diffusers.AutoencoderKLCogVideoX, transformers.T5EncoderModel):
        monkeypatch.setattr(cls, "from_pretrained", refuse)
    for cls in (diffusers.CogVideoXTransformer3DModel, diffusers.AutoencoderKLCogVideoX):
        monkeypatch.setattr(cls, "from_config", refuse)


@pytest.fixture(scope="module")
def prefect_server():
    """A real (temporary) Prefect server and database for the flows of one test module."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        yield


def mount_namespace(*mounts: str) -> list[str]:
    """A command prefix that runs a command in a private mount namespace after `mounts` (shell commands).

    How tests get a full or read-only filesystem of their own (a 2 MB tmpfs, say) without touching the
    machine's: the mounts vanish with the command. Skips the test where namespaces are not allowed.
    """
    import os
    import shutil
    import subprocess

    unshare = shutil.which("unshare")
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    if unshare is None or subprocess.run([unshare, *flags, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private mount namespace here (unshare)")
    return [unshare, *flags, "sh", "-c", " && ".join([*mounts, 'exec "$@"']), "sh"]
