"""The T5 tokenizer of a model directory: its tokenizer.json, or a bare spiece.model read without protobuf."""
from __future__ import annotations

import os
from pathlib import Path

from model.void.files import read_json


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
    settings = read_json(directory / "tokenizer_config.json")
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
