"""Sidecar shot lists: removal instructions for edits whose format drops metadata (EDL, FCP XML).

Adapter-shaped, like an OTIO adapter: `read_from_file(path) -> {clip_name: instructions dict}`.

JSON: `{"shots": {"CLIP": {...}}}`, `{"CLIP": {...}}` or `[{"clip_name": "CLIP", ...}]`.
CSV: a `clip_name` column plus any of `prompt, instruction, quadmask, matte, mask_start_frame,
enabled`, and `points, negative_points, boxes` as JSON text. Relative mask paths are resolved
against the sidecar's folder.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

FIELDS = ("prompt", "instruction", "quadmask", "matte", "mask_start_frame", "points", "negative_points",
          "boxes", "enabled", "bg")
_JSON_FIELDS = ("points", "negative_points", "boxes")


class SidecarError(ValueError):
    pass


def _normalise(entry: dict, where: str) -> dict:
    unknown = set(entry) - set(FIELDS) - {"clip_name", "shot_id"}
    if unknown:
        raise SidecarError(f"{where}: unknown fields {sorted(unknown)} (known: {', '.join(FIELDS)})")
    out = {k: v for k, v in entry.items() if k in FIELDS and v not in (None, "")}
    for k in _JSON_FIELDS:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except json.JSONDecodeError as e:
                raise SidecarError(f"{where}: field {k!r} is not valid JSON: {e}") from None
    if isinstance(out.get("enabled"), str):
        out["enabled"] = out["enabled"].strip().lower() not in ("0", "false", "no", "off")
    if "mask_start_frame" in out:
        try:
            out["mask_start_frame"] = int(out["mask_start_frame"])
        except (TypeError, ValueError):
            raise SidecarError(f"{where}: mask_start_frame must be an integer") from None
    return out


def read_from_file(path: str | Path) -> dict[str, dict]:
    """Instructions by clip name. Raises SidecarError naming the file and the row on bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise SidecarError(f"cannot read shot list {path}: {e.strerror or e}") from None
    entries: list[tuple[str, dict, str]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "clip_name" not in reader.fieldnames:
            raise SidecarError(f"{path}: a CSV shot list needs a 'clip_name' column")
        for i, row in enumerate(reader, start=2):
            entries.append((row.pop("clip_name") or "", row, f"{path} line {i}"))
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
            if not isinstance(entry, dict):
                raise SidecarError(f"{path}: entry {name or i} is not an object")
            entries.append((name, {k: v for k, v in entry.items() if k != "clip_name"}, f"{path} entry {name or i}"))
    else:
        raise SidecarError(f"{path}: shot lists are .json or .csv, got {path.suffix or 'no extension'!r}")

    shots: dict[str, dict] = {}
    for name, entry, where in entries:
        if not name:
            raise SidecarError(f"{where}: missing clip_name")
        norm = _normalise(entry, where)
        for k in ("quadmask", "matte"):
            if k in norm and "://" not in norm[k] and not Path(norm[k]).is_absolute():
                norm[k] = str((path.parent / norm[k]).resolve())
        shots[name] = norm
    return shots
