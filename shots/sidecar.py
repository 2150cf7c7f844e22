"""Sidecar shot lists: removal instructions for edits whose format drops metadata (EDL, FCP XML).

Adapter-shaped, like an OTIO adapter: `read_from_file(path) -> {clip_name: instructions dict}`.

JSON: `{"shots": {"CLIP": {...}}}`, `{"CLIP": {...}}` or `[{"clip_name": "CLIP", ...}]`.
CSV: a `clip_name` column plus any of `prompt, instruction, quadmask, matte, mask_start_frame,
enabled`, and `points, negative_points, boxes` as JSON text. Relative mask paths are resolved
against the sidecar's folder. Keys and values are checked as in clip metadata
(`shots.shot.check_instructions`); anything wrong raises SidecarError naming the file, the clip and
the key, so a bad shot list is refused as a whole before any shot runs.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from shots.shot import INSTRUCTION_KEYS, KEY_ALIASES, check_instructions, unknown_key_problem

FIELDS = INSTRUCTION_KEYS + tuple(KEY_ALIASES)
_JSON_FIELDS = ("points", "negative_points", "boxes")
_ROW_KEYS = ("clip_name", "shot_id")


class SidecarError(ValueError):
    pass


def _normalise(entry: dict, where: str, csv_text: bool = False) -> dict:
    """The entry's valid instructions, typed; SidecarError listing every bad key or value."""
    entry = {k: v for k, v in entry.items() if v not in (None, "")}
    if csv_text:  # CSV cells are text: coordinates come as JSON text
        for k in _JSON_FIELDS:
            if isinstance(entry.get(k), str):
                try:
                    entry[k] = json.loads(entry[k])
                except json.JSONDecodeError as e:
                    raise SidecarError(f"{where}: {k!r} is not valid JSON: {e}") from None
    clean, problems = check_instructions(entry, extra_keys=_ROW_KEYS)
    if problems:
        raise SidecarError(f"{where}: {'; '.join(problems)}")
    return clean


def read_from_file(path: str | Path) -> dict[str, dict]:
    """Instructions by clip name. Raises SidecarError naming the file and the clip on bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SidecarError(f"cannot read shot list {path}: {e.strerror or e}") from None
    entries: list[tuple[str, dict, str]] = []
    is_csv = path.suffix.lower() == ".csv"
    if is_csv:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "clip_name" not in reader.fieldnames:
            raise SidecarError(f"{path}: a CSV shot list needs a 'clip_name' column")
        unknown = [c for c in reader.fieldnames if c not in FIELDS and c not in _ROW_KEYS]
        if unknown:
            raise SidecarError(f"{path}: " + "; ".join(unknown_key_problem(c, FIELDS + _ROW_KEYS, kind="column")
                                                   for c in unknown))
        for i, row in enumerate(reader, start=2):
            name = row.pop("clip_name") or ""
            where = f"{path} line {i}, clip {name!r}" if name else f"{path} line {i}"
            if None in row:  # csv puts cells beyond the header under None
                raise SidecarError(f"{where}: more cells than the header has columns")
            entries.append((name, row, where))
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SidecarError(f"{path}: not valid JSON: {e}") from None
        if isinstance(data, dict) and "shots" in data:
            data = data["shots"]
        if isinstance(data, dict):
            items = [(k, v) for k, v in data.items()]
        elif isinstance(data, list):
            items = [(e.get("clip_name", "") if isinstance(e, dict) else "", e) for e in data]
        else:
            raise SidecarError(f"{path}: expected an object or a list of shots")
        for i, (name, entry) in enumerate(items):
            where = f"{path}, clip {name!r}" if name else f"{path} entry {i}"
            if not isinstance(entry, dict):
                raise SidecarError(f"{where}: expected an object of instructions, got {json.dumps(entry)[:60]}")
            entries.append((name, {k: v for k, v in entry.items() if k != "clip_name"}, where))
    else:
        raise SidecarError(f"{path}: shot lists are .json or .csv, got {path.suffix or 'no extension'!r}")

    shots: dict[str, dict] = {}
    for name, entry, where in entries:
        if not name:
            raise SidecarError(f"{where}: missing clip_name")
        norm = _normalise(entry, where, csv_text=is_csv)
        for k in ("quadmask", "matte"):
            if k in norm and "://" not in norm[k] and not Path(norm[k]).is_absolute():
                norm[k] = str((path.parent / norm[k]).resolve())
        shots[name] = norm
    return shots
