import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest

from shots.frames import frames_from_timecode
from shots.ingest import EditError, IngestOptions, ingest
from tests.conftest import ROOT, make_movie, shared

SCREENING_CLIPS = ["ZZ100_501", "ZZ100_502A", "ZZ100_503A", "ZZ100_504C", "ZZ100_504B", "ZZ100_507C",
                   "ZZ100_508", "ZZ100_510", "ZZ100_510B"]


@pytest.fixture(scope="module")
def screening_media(tmp_path_factory):
    """One 24 fps movie starting at 01:00:00:00, long enough for every clip, linked under each clip's name."""
    d = tmp_path_factory.mktemp("screening_media")
    master = make_movie(d / "master.mov", frames=480, rate=24, timecode="01:00:00:00")
    for name in SCREENING_CLIPS:
        os.link(master, d / f"{name}.mov")
    master.unlink()
    return d


def test_screening_edl_relinked(screening_media):
    shots = ingest(shared("otio", "screening_example.edl"),
                   IngestOptions(rate=Fraction(24), relink_dir=str(screening_media)))
    assert len(shots) == 9
    first = shots[0]
    assert first.clip_name == "ZZ100_501 (LAY3)" and first.shot_id == "ZZ100_501_LAY3"
    # SRC 01:00:04:05-01:00:05:12 at 24 fps; handles of 8 fit in the media
    assert first.cut_range.start == frames_from_timecode("01:00:04:05", Fraction(24)) == 86501
    assert first.cut_range.end_exclusive == frames_from_timecode("01:00:05:12", Fraction(24))
    assert (first.source_range.start, first.handles) == (86493, (8, 8))
    assert first.media.path.endswith("ZZ100_501.mov") and first.file_start == 93
    assert first.media.timecode == "01:00:00:00"
    assert first.record_in == frames_from_timecode("00:59:53:11", Fraction(24))
    assert all(s.problem is None for s in shots), [s.problem for s in shots]
    assert not any(s.flagged for s in shots)  # no instructions anywhere


def test_handles_clamped_to_media(tmp_path):
    # media 01:00:04:00 .. +40 frames: the head handle of clip 1 (cut-in 01:00:04:05) clamps to 5
    make_movie(tmp_path / "ZZ100_501.mov", frames=40, rate=24, timecode="01:00:04:00")
    shots = ingest(shared("otio", "screening_example.edl"), IngestOptions(rate=Fraction(24), relink_dir=str(tmp_path)))
    s = shots[0]
    assert s.problem is None and s.handles == (5, 4)  # 86496..86536 is all the file holds
    assert s.source_range.start == 86496 and s.source_range.end_exclusive == 86536 and s.file_start == 0
    others = shots[1:]
    assert all(o.problem and "not found" in o.problem or "no media" in (o.problem or "") for o in others)


def test_media_shorter_than_edit_is_reported(tmp_path):
    make_movie(tmp_path / "ZZ100_501.mov", frames=20, rate=24, timecode="01:00:04:00")
    s = ingest(shared("otio", "screening_example.edl"), IngestOptions(rate=24, relink_dir=str(tmp_path)))[0]
    assert "ZZ100_501.mov" in s.problem and "01:00:04:05" in s.problem


def test_media_rate_mismatch_is_reported(tmp_path):
    make_movie(tmp_path / "ZZ100_501.mov", frames=200, rate=25, timecode="01:00:00:00")
    s = ingest(shared("otio", "screening_example.edl"), IngestOptions(rate=24, relink_dir=str(tmp_path)))[0]
    assert "25 fps" in s.problem and "24 fps" in s.problem


def test_edl_rate_required_and_checked():
    edl = shared("otio", "screening_example.edl")
    with pytest.raises(EditError, match="--rate"):
        ingest(edl, IngestOptions())
    with pytest.raises(EditError, match="screening_example.edl.*rate 25"):
        ingest(edl, IngestOptions(rate=25))


def test_dissolve_extracts_visible_range():
    shots = ingest(shared("otio", "dissolve_test.edl"), IngestOptions(rate=24))
    a = shots[0]
    assert a.clip_name == "clip_A"
    assert a.cut_range.duration == 9 + 10  # what the dissolve shows of clip_A too
    assert [s.shot_id for s in shots] == ["clip_A", "clip_B", "clip_B_2"]


def test_multiple_track_otio(tmp_path):
    tl = otio.adapters.read_from_file(str(shared("otio", "multiple_track.otio")))
    ends: dict[str, int] = {}
    for clip in tl.find_clips():
        name = Path(clip.media_reference.target_url).name
        ends[name] = max(ends.get(name, 0), int(clip.available_range().duration.value))
    for name, end in ends.items():
        make_movie(tmp_path / name, frames=end, rate=24)
    shots = ingest(shared("otio", "multiple_track.otio"), IngestOptions(relink_dir=str(tmp_path)))
    assert {s.track for s in shots} == {"Track-001", "Track-002", "Track-003"}
    assert len(shots) == len(list(tl.find_clips()))
    for s, clip in zip(shots, tl.find_clips()):
        assert s.problem is None, s.problem
        assert s.cut_range.start == int(clip.source_range.start_time.value)
        # handles never reach outside what the OTIO reference says the media holds
        ar = clip.available_range()
        assert s.source_range.start >= ar.start_time.value
        assert s.source_range.end_exclusive <= ar.end_time_exclusive().value


def test_missing_media_is_reported_not_raised():
    shots = ingest(shared("otio", "multiple_track.otio"))
    assert shots and all(s.media is None and "not found" in s.problem for s in shots)


def test_image_sequence_reference(tmp_path):
    src = otio.adapters.read_from_file(str(shared("otio", "img_seq_media_reference.otio")))
    clip = src.find_clips()[0]
    ref = clip.media_reference
    # the sample's source_range (900000) lies outside its media (125..283): it must be reported
    shots = ingest(shared("otio", "img_seq_media_reference.otio"))
    assert shots[0].problem
    # point it at a generated PNG sequence and trim it into the media: then it resolves
    import numpy as np
    import cv2
    for f in range(125, 135):
        cv2.imwrite(str(tmp_path / f"plate.{f:04d}.png"), np.full((18, 32, 3), f % 256, np.uint8))
    ref.target_url_base = str(tmp_path)
    ref.name_prefix, ref.name_suffix, ref.frame_zero_padding = "plate.", ".png", 4
    ref.available_range = otio.opentime.TimeRange(otio.opentime.RationalTime(125, 24), otio.opentime.RationalTime(10, 24))
    clip.source_range = otio.opentime.TimeRange(otio.opentime.RationalTime(127, 24), otio.opentime.RationalTime(4, 24))
    path = tmp_path / "seq.otio"
    otio.adapters.write_to_file(src, str(path))
    s = ingest(path, IngestOptions(handles=3))[0]
    assert s.problem is None and s.media.kind == "sequence"
    assert (s.source_range.start, s.source_range.end_exclusive, s.handles) == (125, 134, (2, 3))
    assert s.file_start == 0


def test_instructions_from_metadata_and_sidecar(tmp_path):
    tl = otio.adapters.read_from_file(str(shared("otio", "multiple_track.otio")))
    clips = list(tl.find_clips())
    clips[0].metadata["voidbatch"] = {"prompt": "an empty street", "quadmask": "masks/c1.mkv",
                                      "points": {"3": [[10.0, 20.0]]}}
    edit = tmp_path / "cut.otio"
    otio.adapters.write_to_file(tl, str(edit))
    side = tmp_path / "shots.csv"
    side.write_text('clip_name,prompt,boxes\nClip-002,a quiet room,"{""2"": [0, 0, 5, 5]}"\n')
    shots = ingest(edit, IngestOptions(sidecar=str(side)))
    by_name = {s.clip_name: s for s in shots}
    a, b = by_name["Clip-001"], by_name["Clip-002"]
    assert a.flagged and a.instructions.prompt == "an empty street" and a.instructions.origin == "otio"
    assert a.instructions.quadmask == str(tmp_path / "masks" / "c1.mkv")
    assert a.instructions.points == {3: [[10.0, 20.0]]}
    assert b.flagged and b.instructions.origin == "sidecar" and b.instructions.boxes == {2: [0, 0, 5, 5]}
    assert sum(s.flagged for s in shots) == 2
    # shots survive the JSON form used across task boundaries
    from shots.shot import Shot
    assert all(Shot.from_dict(json.loads(json.dumps(s.to_dict()))) == s for s in shots)


def test_sidecar_json_for_edl(tmp_path):
    side = tmp_path / "shots.json"
    side.write_text(json.dumps({"shots": {"ZZ100_508 (LAY2)": {"bg": "an empty stage", "quadmask": "q.mkv"}}}))
    shots = ingest(shared("otio", "screening_example.edl"), IngestOptions(rate=24, sidecar=str(side)))
    flagged = [s for s in shots if s.flagged]
    assert [s.clip_name for s in flagged] == ["ZZ100_508 (LAY2)"]
    assert flagged[0].instructions.prompt == "an empty stage"
    assert flagged[0].instructions.quadmask == str(tmp_path / "q.mkv")


def test_bad_edit_files(tmp_path):
    bad = tmp_path / "cut.otio"
    bad.write_text("{not json")
    with pytest.raises(EditError, match="cut.otio"):
        ingest(bad)
    with pytest.raises(EditError, match="unknown edit format '.aaf'"):
        ingest(tmp_path / "cut.aaf")
    with pytest.raises(EditError, match="not found"):
        ingest(tmp_path / "missing.edl", IngestOptions(rate=24))
    garbage = tmp_path / "cut.xml"
    garbage.write_text("<xmeml><nonsense/></xmeml>")
    with pytest.raises(EditError, match="cut.xml"):
        ingest(garbage)


def test_hostile_clip_names_get_safe_unique_ids(tmp_path):
    tl = otio.schema.Timeline("hostile")
    track = otio.schema.Track("V1")
    tl.tracks.append(track)
    names = ["/", "../../x", "", "\x01\x02ctl", "n" * 300, "../../x"]
    for n in names:
        track.append(otio.schema.Clip(name=n, source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(10, 24))))
    path = tmp_path / "hostile.otio"
    otio.adapters.write_to_file(tl, str(path))
    ids = [s.shot_id for s in ingest(path)]
    assert len(set(ids)) == len(ids) == len(names)
    for i in ids:
        assert i and len(i) <= 64 and all(c.isalnum() or c in "_-" for c in i)


def test_drop_frame_edl_at_2997(tmp_path):
    edl = tmp_path / "df.edl"
    edl.write_text("TITLE: df\nFCM: DROP FRAME\n\n"
                   "001  A001 V     C        00:10:00;00 00:10:01;00 01:00:00;00 01:00:01;00\n"
                   "* FROM CLIP NAME:  shotA\n")
    s = ingest(edl, IngestOptions(rate=29.97, handles=0))[0]
    assert s.rate == Fraction(30000, 1001)
    assert s.cut_range.start == 17982 and s.cut_range.duration == 30


def test_plan_cli_json(screening_media):
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "flows.cli", "plan", str(shared("otio", "screening_example.edl")),
                          "--rate", "24", "--relink", str(screening_media), "--json"],
                         cwd=ROOT, capture_output=True, text=True, env=env, check=True)
    doc = json.loads(out.stdout)  # exactly one JSON document
    s = doc["shots"][8]
    assert s["clip_name"] == "ZZ100_510B (LAY1)" and s["flagged"] is False and s["rate"] == "24"
    assert s["frames"] == s["source_out"] - s["source_in"] == 257 + 16
    assert s["handles"] == [8, 8] and s["media"].endswith("ZZ100_510B.mov")
    assert s["chunks"] == [{"start": 0, "end": 145, "padded_to": 149}, {"start": 128, "end": 273, "padded_to": 149}]
    bad = subprocess.run([sys.executable, "-m", "flows.cli", "plan", "nope.edl"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "nope.edl" in bad.stderr
