"""Load VOID pass 1 from a model directory: strict, local, hashed, in the memory mode asked for.

The directory is laid out like the base repo (CogVideoX-Fun-V1.5-5b-InP) plus VOID's weights:

    transformer/config.json     base config; in_channels is overridden to 48 (the base weights are not read:
                                void_pass1.safetensors is a full state dict, reference note section 2.3)
    vae/, text_encoder/, tokenizer/, scheduler/
    void_pass1.safetensors      the fine-tuned transformer

`model_dir` is a local path or any fsspec URI; a URI is copied once into a local cache. Nothing is ever
fetched from a hub: every `from_pretrained` gets a local directory and `local_files_only=True`.

Deliberate differences from the reference loader (section 2.3): it builds an fp32 model, loads the base
weights, widens the patch embed, then loads VOID's file with `strict=False` and only logs missing and
unexpected keys, so a wrong or partial checkpoint runs silently on base weights. Here the transformer is
built on the meta device, the checkpoint's keys and shapes are checked against it first (any difference
is an error naming the keys), and each tensor is read straight into the target dtype and device.
"""
from __future__ import annotations

import gc
import hashlib
import inspect
import json
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

log = logging.getLogger(__name__)

PASS1_WEIGHTS = "void_pass1.safetensors"
VOID_IN_CHANNELS = 48  # [noisy latent 16 | VAE(mask) 16 | VAE(video) 16], reference note section 0.2
MEMORY_MODES = ("full", "model_offload", "sequential_offload")
MAX_SEQUENCE_LENGTH = 226


def default_cache_dir() -> Path:
    return Path(os.environ.get("VOIDBATCH_CACHE", Path.home() / ".cache" / "voidbatch"))


# --- where the files are ----------------------------------------------------------------------------------

def resolve_model_dir(model_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                      storage_options: dict | None = None) -> Path:
    """A local directory holding the model: `model_dir` itself, or a cached copy of an fsspec URI.

    A URI is copied once into `cache_dir/models/<sha256(uri)[:16]>` (next to it first, then renamed, so a
    failed copy never looks finished); later calls reuse the copy.
    """
    text = os.fspath(model_dir)
    if "://" not in text or text.startswith("file://"):
        local = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()
        if not local.is_dir():
            raise FileNotFoundError(f"VOID model directory not found: {local}")
        return local
    import fsspec

    target = Path(cache_dir or default_cache_dir()) / "models" / hashlib.sha256(text.encode()).hexdigest()[:16]
    if (target / ".complete").exists():
        return target
    fs, root = fsspec.core.url_to_fs(text, **(storage_options or {}))
    root = root.rstrip("/")
    files = [p for p in fs.find(root) if not p.rstrip("/").endswith("/")]
    if not files:
        raise FileNotFoundError(f"VOID model directory is empty or missing: {text}")
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    try:
        for remote in files:
            rel = remote[len(root):].lstrip("/")
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            log.info("copying %s -> %s", remote, dest)
            fs.get_file(remote, str(dest))
        (tmp / ".complete").write_text(text)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another worker finished first
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


_SHA_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a file, remembered in `cache_dir/sha256.json` by (path, size, mtime) so 11 GB is read once."""
    path = Path(path).resolve()
    st = path.stat()
    ident = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    index_path = Path(cache_dir or default_cache_dir()) / "sha256.json"
    with _SHA_LOCK:
        index = _read_json(index_path)
        if ident in index:
            return index[ident]
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        index = _read_json(index_path)
        index[ident] = digest.hexdigest()
        try:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_name(f"{index_path.name}.{uuid.uuid4().hex}.partial")
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
            os.replace(tmp, index_path)
        except OSError as e:  # a read-only cache only costs a re-hash next time
            log.warning("could not record sha256 in %s: %s", index_path, e)
        return index[ident]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --- components ---------------------------------------------------------------------------------------------

def load_tokenizer(directory: str | os.PathLike):
    """The T5 tokenizer in `directory`: from tokenizer.json when present, else built from spiece.model.

    transformers 5 reads a bare spiece.model only through protobuf, which this environment does not ship;
    the fallback reads the pieces with `sentencepiece` and the normalizer table from the model file itself,
    which gives the same tokens (T5's id layout: <pad> 0, </s> 1, <unk> 2, sentinels after the pieces).
    """
    from transformers import T5Tokenizer

    directory = Path(directory)
    if (directory / "tokenizer.json").exists():
        return T5Tokenizer.from_pretrained(str(directory), local_files_only=True)
    spiece = directory / "spiece.model"
    if not spiece.exists():
        raise FileNotFoundError(f"no tokenizer.json or spiece.model in {directory}")
    import sentencepiece as spm

    proto = spiece.read_bytes()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    vocab = [(sp.id_to_piece(i), 0.0 if sp.is_control(i) or sp.is_unknown(i) else sp.get_score(i))
             for i in range(sp.get_piece_size())]
    settings = _read_json(directory / "tokenizer_config.json")
    settings = {k: v for k, v in settings.items()
                if k in ("model_max_length", "extra_ids", "eos_token", "unk_token", "pad_token")}
    return T5Tokenizer(vocab=vocab, _spm_precompiled_charsmap=_spm_precompiled_charsmap(proto), **settings)


def _spm_precompiled_charsmap(proto: bytes) -> bytes | None:
    """ModelProto.normalizer_spec (field 3).precompiled_charsmap (field 2), read from protobuf wire format."""
    normalizer = _proto_field(proto, 3)
    return _proto_field(normalizer, 2) if normalizer else None


def _proto_field(buf: bytes, number: int) -> bytes | None:
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _varint(buf, i)
            if key >> 3 == number:
                return buf[i:i + size]
            i += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in spiece.model")
    return None


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def load_text_encoder(directory: str | os.PathLike, dtype: torch.dtype, device: torch.device):
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
    return model.to(device).eval().requires_grad_(False)


def load_vae(directory: str | os.PathLike, dtype: torch.dtype, device: torch.device):
    from model.void.vae import AutoencoderKLVoid

    vae = AutoencoderKLVoid.from_pretrained(str(directory), torch_dtype=dtype, local_files_only=True)
    vae = AutoencoderKLVoid.from_vae(vae)  # swap in VOID's upsamplers now, before any offload hooks wrap modules
    return vae.to(device).eval().requires_grad_(False)


def load_scheduler(directory: str | os.PathLike):
    """DDIMScheduler from the base config (reference pass 1, `sampler_name="DDIM_Origin"`, section 2.1).

    `snr_shift_scale` belongs to CogVideoXDDIMScheduler (pass 2): DDIM ignores it, but it is logged because
    the two passes only agree when it is 1.0 (the note measured divergence at the class default 3.0).
    """
    from diffusers import DDIMScheduler

    raw = _read_json(Path(directory) / "scheduler_config.json")
    snr = raw.get("snr_shift_scale")
    log.info("scheduler config: class %s, prediction %s, spacing %s, zero-SNR %s, snr_shift_scale %s",
             raw.get("_class_name"), raw.get("prediction_type"), raw.get("timestep_spacing"),
             raw.get("rescale_betas_zero_snr"), snr if snr is not None else "absent (CogVideoXDDIM default 3.0)")
    return DDIMScheduler.from_config({k: v for k, v in raw.items() if k != "snr_shift_scale"})


@dataclass(frozen=True)
class TransformerInfo:
    add_noise_in_inpaint_model: bool
    ignored_config_keys: tuple[str, ...]


def load_transformer(model_dir: str | os.PathLike, weights: str | os.PathLike, dtype: torch.dtype,
                     device: torch.device) -> tuple["torch.nn.Module", TransformerInfo]:
    """`CogVideoXTransformer3DModel(in_channels=48)` with exactly the tensors of `weights`, in `dtype` on `device`.

    Raises ValueError naming missing keys, unexpected keys and shape mismatches: a partial checkpoint, a
    33-channel one, or one for other dimensions never runs.
    """
    from diffusers import CogVideoXTransformer3DModel
    from safetensors import safe_open

    config = _read_json(Path(model_dir) / "transformer" / "config.json")
    if not config:
        raise FileNotFoundError(f"missing or unreadable {Path(model_dir) / 'transformer' / 'config.json'}")
    accepted = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters) - {"self"}
    ignored = tuple(sorted(k for k in config if not k.startswith("_") and k not in accepted))
    if ignored:
        log.info("transformer config keys diffusers does not take (ignored): %s", ", ".join(ignored))
    kwargs = {k: v for k, v in config.items() if k in accepted}
    kwargs["in_channels"] = VOID_IN_CHANNELS
    with torch.device("meta"):
        model = CogVideoXTransformer3DModel.from_config(kwargs)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    weights = Path(weights)
    load_device = "cpu" if device.type == "meta" else str(device)
    with safe_open(str(weights), framework="pt", device=load_device) as f:
        found = set(f.keys())
        missing = sorted(set(expected) - found)
        unexpected = sorted(found - set(expected))
        mismatched = sorted(f"{k}: checkpoint {tuple(f.get_slice(k).get_shape())} vs model {expected[k]}"
                            for k in set(expected) & found if tuple(f.get_slice(k).get_shape()) != expected[k])
        if missing or unexpected or mismatched:
            raise ValueError(
                f"{weights.name} does not fit CogVideoXTransformer3DModel(in_channels={VOID_IN_CHANNELS}) from "
                f"{Path(model_dir) / 'transformer' / 'config.json'}: " + "; ".join(
                    f"{label} ({len(items)}): {_preview(items)}"
                    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                         ("shape mismatches", mismatched)) if items))
        state = {k: f.get_tensor(k).to(dtype) for k in sorted(found)}
    model.load_state_dict(state, strict=True, assign=True)
    del state
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"tensors not covered by {weights.name}: {_preview(leftover)}")
    model = model.eval().requires_grad_(False)
    return model, TransformerInfo(bool(config.get("add_noise_in_inpaint_model", False)), ignored)


def _preview(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


# --- prompt embeddings --------------------------------------------------------------------------------------

class PromptEmbeddings:
    """T5 states per prompt, computed once: an in-process dict, optionally a directory of safetensors files.

    The key covers the prompt, the token length, the dtype and device type T5 ran in, and a fingerprint of
    the tokenizer and text-encoder files, so a cache directory can be shared between workers and models.
    T5 (about 9.5 GB in bf16) is loaded only when a prompt is not cached; with `release_after_use` it is
    dropped again right after encoding, so offload modes never hold T5 and the transformer at once.
    """

    def __init__(self, model_dir: Path, device: torch.device, dtype: torch.dtype,
                 store_dir: str | os.PathLike | None = None, release_after_use: bool = False,
                 cache_dir: str | os.PathLike | None = None, max_sequence_length: int = MAX_SEQUENCE_LENGTH,
                 sequential_offload: bool = False):
        self.model_dir = Path(model_dir)
        self.sequential_offload = sequential_offload
        self.device = device
        self.dtype = dtype
        self.store_dir = Path(store_dir) if store_dir else None
        self.release_after_use = release_after_use
        self.max_sequence_length = max_sequence_length
        self._cache_dir = cache_dir
        self._memory: dict[str, torch.Tensor] = {}
        self._tokenizer = None
        self._text_encoder = None
        self._fingerprint: str | None = None
        self.encoded = 0  # prompts actually run through T5 (tests and logs)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            parts = []
            for sub in ("tokenizer", "text_encoder"):
                for p in sorted((self.model_dir / sub).rglob("*")):
                    if p.is_file():
                        parts.append(f"{p.relative_to(self.model_dir)}={file_sha256(p, self._cache_dir)}")
            self._fingerprint = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return self._fingerprint

    def key(self, prompt: str) -> str:
        ident = json.dumps({"prompt": prompt, "max_len": self.max_sequence_length, "dtype": str(self.dtype),
                            "device": self.device.type, "t5": self.fingerprint}, sort_keys=True)
        return hashlib.sha256(ident.encode()).hexdigest()

    def components(self):
        """(tokenizer, text_encoder), loading them if needed."""
        if self._text_encoder is None:
            self._tokenizer = load_tokenizer(self.model_dir / "tokenizer")
            if self.sequential_offload:
                from model.void.offload import SequentialOffload

                self._text_encoder = load_text_encoder(self.model_dir / "text_encoder", self.dtype,
                                                       torch.device("cpu"))
                SequentialOffload({"text_encoder": self._text_encoder}, self.device)
            else:
                self._text_encoder = load_text_encoder(self.model_dir / "text_encoder", self.dtype, self.device)
        return self._tokenizer, self._text_encoder

    def get(self, prompt: str) -> torch.Tensor:
        """(1, 226, d_model) T5 states for `prompt`, on `device` in `dtype`."""
        return self.get_many([prompt])[0]

    def get_many(self, prompts: Iterable[str]) -> list[torch.Tensor]:
        from safetensors.torch import load_file, save_file

        from model.void.pipeline_void import t5_prompt_embeds

        prompts = list(prompts)
        out: dict[str, torch.Tensor] = {}
        for prompt in prompts:
            k = self.key(prompt)
            if k in self._memory:
                out[prompt] = self._memory[k]
            elif self.store_dir is not None and (self.store_dir / f"{k}.safetensors").exists():
                self._memory[k] = load_file(str(self.store_dir / f"{k}.safetensors"))["prompt_embeds"].to(self.device)
                out[prompt] = self._memory[k]
        todo = [p for p in dict.fromkeys(prompts) if p not in out]
        if todo:
            tokenizer, text_encoder = self.components()
            for prompt in todo:
                embeds = t5_prompt_embeds(tokenizer, text_encoder, prompt, self.max_sequence_length, self.device,
                                          self.dtype)
                self.encoded += 1
                k = self.key(prompt)
                self._memory[k] = out[prompt] = embeds
                if self.store_dir is not None:
                    self.store_dir.mkdir(parents=True, exist_ok=True)
                    tmp = self.store_dir / f"{k}.{uuid.uuid4().hex}.partial"
                    save_file({"prompt_embeds": embeds.detach().cpu().contiguous()}, str(tmp),
                              metadata={"prompt": prompt[:1000]})
                    os.replace(tmp, self.store_dir / f"{k}.safetensors")
            if self.release_after_use:
                self.release()
        return [out[p] for p in prompts]

    def release(self) -> None:
        """Drop T5 (and its device memory); cached embeddings stay."""
        if self._text_encoder is not None:
            self._text_encoder = None
            self._tokenizer = None
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


# --- the whole thing ----------------------------------------------------------------------------------------

@dataclass
class VoidPass1:
    """A loaded pass 1 model: the pipeline, its prompt cache and what the manifest needs to know."""

    pipeline: "object"
    prompts: PromptEmbeddings
    model_dir: Path
    weights_sha256: str
    add_noise_in_inpaint_model: bool
    device: torch.device
    dtype: torch.dtype
    mode: str
    offload: "object | None" = field(default=None, repr=False)

    def release_device_memory(self) -> None:
        """After a chunk in an offload mode: move whatever is still resident back to the CPU."""
        if self.offload is not None:
            self.offload.offload_all()


def resolve_device_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None
                         ) -> tuple[torch.device, torch.dtype]:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if isinstance(dtype, str):
        dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                 "fp32": torch.float32, "float32": torch.float32}[dtype]
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def load_void_pass1(model_dir: str | os.PathLike, mode: str = "full", device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
                    embeddings_dir: str | os.PathLike | None = None, warm_prompts: Iterable[str] = (),
                    storage_options: dict | None = None) -> VoidPass1:
    """Load pass 1 from `model_dir` (local path or fsspec URI) in memory `mode` on `device` in `dtype`.

    Modes (reference section 2.4) only matter on CUDA; elsewhere everything simply runs where it is.
    - `full`: T5, VAE and transformer resident on the device (about 21 GB of bf16 weights).
    - `model_offload`: components live on the CPU and move to the device whole while they run; T5 is loaded
      only to encode prompts not yet cached and dropped before the transformer is used.
    - `sequential_offload`: weights move layer by layer (lowest VRAM, slowest); T5 too.
    (Both offload modes are `model.void.offload`'s hooks: diffusers' own need accelerate, absent here.)
    `warm_prompts` are encoded before the transformer is loaded (e.g. the negative prompt).
    """
    from model.void.pipeline_void import VoidPass1Pipeline

    if mode not in MEMORY_MODES:
        raise ValueError(f"unknown memory mode {mode!r}; choose one of {', '.join(MEMORY_MODES)}")
    device, dtype = resolve_device_dtype(device, dtype)
    if device.type != "cuda" and mode != "full":
        log.info("memory mode %s only matters on CUDA; running everything on %s", mode, device)
        mode = "full"
    root = resolve_model_dir(model_dir, cache_dir, storage_options)
    weights = root / PASS1_WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(f"{PASS1_WEIGHTS} not found in {root}")
    sha = file_sha256(weights, cache_dir)
    log.info("VOID pass 1 weights %s sha256 %s", weights, sha)

    offloading = mode != "full"
    home = torch.device("cpu") if offloading else device
    prompts = PromptEmbeddings(root, device, dtype, store_dir=embeddings_dir, release_after_use=offloading,
                               cache_dir=cache_dir, sequential_offload=mode == "sequential_offload")
    prompts.get_many(warm_prompts)  # with offloading, T5 is gone again before the transformer loads
    tokenizer, text_encoder = prompts.components() if not offloading else (None, None)

    transformer, info = load_transformer(root, weights, dtype, home)
    vae = load_vae(root / "vae", dtype, home)
    scheduler = load_scheduler(root / "scheduler")
    pipe = VoidPass1Pipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    offload = None
    if mode == "model_offload":
        from model.void.offload import ModelOffload

        offload = ModelOffload(pipe, device)
    elif mode == "sequential_offload":
        from model.void.offload import SequentialOffload

        offload = SequentialOffload({"transformer": transformer, "vae": vae}, device, pipe)
    return VoidPass1(pipeline=pipe, prompts=prompts, model_dir=root, weights_sha256=sha,
                     add_noise_in_inpaint_model=info.add_noise_in_inpaint_model, device=device, dtype=dtype,
                     mode=mode, offload=offload)
