"""Edit ingest: an .otio, CMX 3600 .edl or FCP 7 .xml becomes a list of Shots.

OTIO objects stop here. For every video clip we take what the edit shows (`visible_range()`, so a
dissolve's overlap is extracted), add handles clamped to the media, resolve the media (the
reference, or `relink_dir` by file name / reel / clip name), and attach removal instructions from
clip metadata under 'voidbatch', a marker, or a sidecar shot list. A clip that cannot be
processed still becomes a Shot with `problem` set, so a batch reports it instead of crashing: bad
instructions in the edit name the edit, the clip and the key. A bad shot list or an edit that cannot
be read as a whole (several timelines, JSON nested absurdly deep) raises, naming the file.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import opentimelineio as otio

from shots import sidecar
from shots.frames import FrameRange, normalize_rate, rate_str
from shots.naming import ShotIds
from shots.shot import Instructions, MediaRef, Shot, check_instructions

log = logging.getLogger(__name__)

DEFAULT_HANDLES = 8
ADAPTERS = {".otio": "otio_json", ".otioz": "otioz", ".edl": "cmx_3600", ".xml": "fcp_xml"}
MOVIE_EXTS = {".mov", ".mp4", ".mkv", ".mxf", ".avi", ".m4v", ".webm"}
IMAGE_EXTS = {".exr", ".dpx", ".png", ".tif", ".tiff", ".jpg", ".jpeg"}
NAMESPACE = "voidbatch"
MAX_JSON_DEPTH = 200  # real edits nest a few dozen levels; OTIO's C++ reader segfaults near 100k


class EditError(ValueError):
    """The edit as a whole cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class IngestOptions:
    rate: Fraction | None = None  # required for EDLs, which carry no rate
    handles: int = DEFAULT_HANDLES
    sidecar: str | None = None
    relink_dir: str | None = None


def read_edit(path: str | os.PathLike, rate=None) -> otio.schema.Timeline:
    """Read an edit with the adapter its extension names; EDLs need `rate`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ADAPTERS:
        raise EditError(f"{path}: unknown edit format {suffix or '(no extension)'!r}; "
                        f"voidbatch reads {', '.join(sorted(ADAPTERS))}")
    if not path.is_file():
        raise EditError(f"{path}: edit file not found")
    if suffix == ".otio":
        _check_json_depth(path)
    kwargs = {}
    if suffix == ".edl":
        if rate is None:
            raise EditError(f"{path}: an EDL carries no frame rate; pass it with --rate (e.g. 24, 25, 23.976)")
        kwargs["rate"] = float(normalize_rate(rate))
    try:
        result = otio.adapters.read_from_file(str(path), adapter_name=ADAPTERS[suffix], **kwargs)
    except Exception as e:  # adapters raise anything from ValueError to their own parse errors
        msg = str(e).strip() or type(e).__name__
        if suffix == ".edl" and ("frames beyond" in msg or "don't match" in msg or "timecode" in msg.lower()):
            raise EditError(f"{path}: timecodes do not fit rate {rate_str(normalize_rate(rate))}: {msg}; "
                            f"pass the edit's real rate with --rate") from None
        raise EditError(f"{path}: cannot read as {ADAPTERS[suffix]}: {type(e).__name__}: {msg}") from None
    if isinstance(result, otio.schema.SerializableCollection):
        timelines = list(result.find_children(descended_from_type=otio.schema.Timeline))
        if not timelines:
            raise EditError(f"{path}: holds no timeline")
        if len(timelines) > 1:  # refused rather than guessed: which cut is meant is the editor's call
            names = ", ".join(repr(t.name) for t in timelines)
            raise EditError(f"{path}: holds {len(timelines)} timelines ({names}); voidbatch reads one timeline "
                            f"per file: export each timeline to its own .otio and run each")
        result = timelines[0]
    if not isinstance(result, otio.schema.Timeline):
        raise EditError(f"{path}: expected a timeline, got {type(result).__name__}")
    return result


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _check_json_depth(path: Path, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than `limit` before OpenTimelineIO parses it (its reader recurses and crashes).

    Brackets inside strings do not count; the scan is a regex and a numpy cumsum, cheap next to the parse.
    """
    import numpy as np

    try:
        data = path.read_bytes()
    except OSError as e:
        raise EditError(f"{path}: cannot read: {e.strerror or e}") from None
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if len(brackets) <= 2 * limit:
        return
    codes = np.frombuffer(brackets, np.uint8)
    steps = np.full(len(codes), -1, np.int32)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    depth = int(np.cumsum(steps).max())
    if depth > limit:
        raise EditError(f"{path}: JSON nested deeper than {limit} levels ({depth}); not an edit voidbatch will "
                        "hand to OpenTimelineIO (its reader crashes on such files)")


def ingest(edit_path: str | os.PathLike, options: IngestOptions = IngestOptions()) -> list[Shot]:
    """Every video clip of the edit as a Shot, in track order then edit order."""
    edit_path = Path(edit_path)
    timeline = read_edit(edit_path, options.rate)
    side = sidecar.read_from_file(options.sidecar) if options.sidecar else {}
    media_index = _MediaIndex(options.relink_dir) if options.relink_dir else None
    shots = [_shot_from_clip(clip, shot_id, track_name, i, edit_path, options, side, media_index)
             for track_name, i, clip, shot_id in iter_video_clips(timeline)]
    unused = set(side) - {s.clip_name for s in shots} - {s.shot_id for s in shots}
    for name in sorted(unused):
        log.warning("shot list %s names clip %r, which is not in %s", options.sidecar, name, edit_path)
    return shots


def iter_video_clips(timeline: otio.schema.Timeline):
    """(track name, clip index, clip, shot id) for every video clip, in the order shots are made.

    Conform walks the edit again with this, so a shot id always finds its clip.
    """
    ids = ShotIds()
    for t, track in enumerate(timeline.video_tracks(), start=1):
        track_name = track.name or f"V{t}"
        for i, clip in enumerate(track.find_clips()):
            if isinstance(clip.media_reference, otio.schema.GeneratorReference):
                continue  # titles, bars: nothing to remove
            yield track_name, i, clip, ids.claim(clip.name, fallback=f"{track_name}_clip{i + 1:03d}")


def _shot_from_clip(clip, shot_id, track_name, index, edit_path, options, side, media_index) -> Shot:
    rate_src = options.rate if (options.rate is not None and edit_path.suffix.lower() == ".edl") else None
    visible = clip.visible_range()
    rate = normalize_rate(rate_src or visible.start_time.rate)
    cut = FrameRange.from_otio(visible, rate)
    instructions, problems = _instructions(clip, side.get(clip.name) or side.get(shot_id), edit_path)

    media = None
    try:
        media = _resolve_media(clip, rate, edit_path, media_index)
    except MediaMissing as e:
        problems.append(str(e))

    # a zero-duration clip shows nothing: no handles either (it is skipped, see Shot.skip_reason)
    want = cut.extended_by(options.handles, options.handles) if cut.duration else cut
    if media is not None:
        if media.media_range.rate != rate:
            problems.append(f"media {media.path} runs at {rate_str(media.media_range.rate)} fps but the edit "
                            f"uses {rate_str(rate)} fps for this clip")
            source = want
        elif not media.media_range.contains(cut):
            mr = media.media_range
            problems.append(
                f"media {media.path} holds source frames {mr.start}-{mr.end_inclusive} "
                f"({media.timecode_at()}-{media.timecode_at(mr.end_inclusive)}) but the edit asks for "
                f"{cut.start}-{cut.end_inclusive} ({cut.timecode()}-{cut.timecode(cut.end_inclusive)})")
            source = want
        else:
            source = want.clamped(media.media_range)
    else:  # unresolved: clamp to what the edit declares, and never before frame 0
        ref = clip.media_reference
        bound = (FrameRange.from_otio(ref.available_range, rate) if ref is not None and ref.available_range
                 else FrameRange(0, max(want.end_exclusive, 0), rate))
        source = want.clamped(bound) if bound.contains(cut) else want
    handles = (cut.start - source.start, source.end_exclusive - cut.end_exclusive)

    record_in = None
    try:
        parent = clip.parent()
        rip = clip.range_in_parent().start_time
        offset = parent.source_range.start_time if parent and parent.source_range else None
        start = rip - offset if offset is not None else rip
        record_in = int(round(start.value_rescaled_to(float(rate))))
    except Exception:  # noqa: BLE001 - record position is informative only
        pass

    return Shot(shot_id=shot_id, clip_name=clip.name, track=track_name, clip_index=index, rate=rate,
                cut_range=cut, source_range=source, handles=handles, media=media,
                instructions=instructions, problem="; ".join(problems) or None, record_in=record_in)


# -- instructions ---------------------------------------------------------------------------------

def _instructions(clip, side_entry: dict | None, edit_path: Path) -> tuple[Instructions | None, list[str]]:
    """The clip's instructions and what is wrong with them (one line naming the edit and the clip).

    OTIO metadata, then marker notes, then the sidecar entry (already checked by shots.sidecar); the
    sidecar wins: it is the newer, external note. Invalid keys or values leave the rest in place and
    mark the instructions invalid, so the shot is flagged and fails with the reason instead of being
    skipped as if it carried none.
    """
    merged: dict = {}
    problems: list[str] = []
    origin = None
    where = f"{edit_path}, clip {clip.name!r}"

    def take(raw, where: str) -> None:
        if not hasattr(raw, "items"):
            problems.append(f"{where}: metadata under {NAMESPACE!r} must be a dictionary of instructions, "
                            f"got {type(raw).__name__} {raw!r}")
            return
        clean, bad = check_instructions(raw, under=NAMESPACE)
        merged.update(_resolve_paths(clean, edit_path.parent))
        if bad:
            problems.append(f"{where}: {'; '.join(bad)}")

    meta = clip.metadata.get(NAMESPACE)
    if meta is not None:
        take(_plain(meta), where)
        origin = "otio"
    for marker in clip.markers:
        mmeta = marker.metadata.get(NAMESPACE)
        if mmeta is not None:
            take(_plain(mmeta), f"{where}, marker {marker.name!r}")
            origin = origin or "marker"
        elif re.match(r"^\s*void\s*:", marker.name or "", re.I):
            merged.setdefault("instruction", marker.name.split(":", 1)[1].strip())
            origin = origin or "marker"
    if side_entry:
        merged.update(side_entry)
        origin = "sidecar"
    if not merged and not problems:
        return None, []
    return Instructions(origin=origin or "otio", invalid=bool(problems), **merged), problems


def _plain(value):
    """OTIO AnyDictionary/AnyVector -> plain dict/list (keeps a reference-free copy)."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "AnyVector":
        return [_plain(v) for v in value]
    return value


def _resolve_paths(d: dict, base: Path) -> dict:
    for k in ("quadmask", "matte"):
        v = d.get(k)
        if v and "://" not in v and not Path(v).is_absolute():
            d[k] = str((base / v).resolve())
        elif v and v.startswith("file://"):
            d[k] = _url_to_path(v)
    return d


# -- media ----------------------------------------------------------------------------------------

class MediaMissing(Exception):
    pass


def _url_to_path(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        p = unquote(parsed.path if parsed.scheme else url)
        if re.match(r"^/[A-Za-z]:", p):  # file:///D:/x -> D:/x
            p = p[1:]
        return p
    return url


class _MediaIndex:
    """Files under a relink folder by lower-case stem; sequences by their 'name.####' stem."""

    def __init__(self, root: str):
        self.root = Path(root)
        if not self.root.is_dir():
            raise EditError(f"relink folder {root} does not exist")
        self.movies: dict[str, Path] = {}
        self.sequences: dict[str, str] = {}
        seq_re = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)(?P<ext>\.[A-Za-z0-9]+)$")
        for p in sorted(self.root.rglob("*")):
            if not p.is_file():
                continue
            ext = p.suffix.lower()
            if ext in MOVIE_EXTS:
                self.movies.setdefault(p.stem.lower(), p)
                self.movies.setdefault(p.name.lower(), p)
            elif ext in IMAGE_EXTS and (m := seq_re.match(p.name)):
                pattern = str(p.parent / f"{m['prefix']}{'#' * len(m['num'])}{m['ext']}")
                prefix = m["prefix"].rstrip("._-").lower()
                self.sequences.setdefault(prefix, pattern)

    def find(self, names: list[str]) -> Path | str | None:
        for name in names:
            key = name.lower().strip()
            if not key:
                continue
            for cand in (key, Path(key).stem, Path(key).name):
                if cand in self.movies:
                    return self.movies[cand]
                if cand.rstrip("._-") in self.sequences:
                    return self.sequences[cand.rstrip("._-")]
        return None


def _candidate_names(clip) -> list[str]:
    names: list[str] = []
    ref = clip.media_reference
    if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
        names.append(Path(_url_to_path(ref.target_url).replace("\\", "/")).name)
    if isinstance(ref, otio.schema.ImageSequenceReference):
        names.append(ref.name_prefix)
    cmx = clip.metadata.get("cmx_3600") or {}
    for comment in cmx.get("comments", []) if hasattr(cmx, "get") else []:
        if str(comment).upper().startswith("SOURCE FILE:"):
            names.append(str(comment).split(":", 1)[1].strip())
    names.append(clip.name or "")
    names.append(re.sub(r"\s*\(.*\)\s*$", "", clip.name or ""))
    if hasattr(cmx, "get") and cmx.get("reel"):
        names.append(str(cmx.get("reel")))
    if ref is not None and ref.name:
        names.append(ref.name)
    return [n for n in names if n]


def _resolve_media(clip, rate: Fraction, edit_path: Path, media_index) -> MediaRef:
    """The clip's media as a MediaRef, probing the file; raises MediaMissing naming what was tried."""
    ref = clip.media_reference
    path: str | None = None
    declared: FrameRange | None = None
    if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
        path = _url_to_path(ref.target_url)
    elif isinstance(ref, otio.schema.ImageSequenceReference):
        base = _url_to_path(ref.target_url_base).rstrip("/")
        pad = "#" * max(1, ref.frame_zero_padding)
        path = f"{base}/{ref.name_prefix}{pad}{ref.name_suffix}"
    if ref is not None and ref.available_range is not None:
        declared = FrameRange.from_otio(ref.available_range, rate)
    if path and not Path(path).is_absolute() and "://" not in path:
        path = str((edit_path.parent / path).resolve())

    exists = path is not None and (Path(path).exists() or ("#" in path and Path(path).parent.is_dir()))
    if media_index is not None and not exists:
        found = media_index.find(_candidate_names(clip))
        if found is not None:
            path, exists = str(found), True
            # a relinked file's own timecode places it, unless the edit declares a start
    if not exists:
        what = "no media reference" if path is None else f"media not found: {path}"
        tried = f" (relink folder {media_index.root} has no match for {', '.join(_candidate_names(clip)[:4])})" \
            if media_index is not None else ""
        raise MediaMissing(f"{what}{tried}")
    from shots.media import MediaError, probe  # the decode stack loads only when media is touched

    try:
        info = probe(path)
    except MediaError as e:
        raise MediaMissing(f"unreadable media: {e}") from None
    start = declared.start if declared is not None else info.start_frame
    if info.kind == "sequence" and declared is None:
        start = info.start_frame
    media_range = FrameRange(start, info.frames, info.rate)
    return MediaRef(path=info.path, kind=info.kind, media_range=media_range, width=info.width,
                    height=info.height, timecode=info.timecode,
                    drop_frame=info.drop_frame if info.timecode else None)
