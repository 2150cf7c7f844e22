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
from shots.shot import Shot
from shots.sidecar import SidecarError
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


@pytest.mark.parametrize("plate_tc,fcm,src_in,src_out,drop_frame", [
    ("01:00:00:00", "NON-DROP FRAME", "01:00:00:10", "01:00:01:00", False),
    ("01:00:00;00", "DROP FRAME", "01:00:00;10", "01:00:01;00", True),
])
def test_2997_plate_timecode_keeps_its_kind(tmp_path, plate_tc, fcm, src_in, src_out, drop_frame):
    """A 29.97 non-drop plate is formatted non-drop wherever its frames are named; a drop-frame one drop-frame."""
    make_movie(tmp_path / "shotA.mov", frames=60, rate=Fraction(30000, 1001), timecode=plate_tc)
    edl = tmp_path / "ntsc.edl"
    edl.write_text(f"TITLE: ntsc\nFCM: {fcm}\n\n"
                   f"001  A001 V     C        {src_in} {src_out} 01:00:00;00 01:00:00;20\n"
                   "* FROM CLIP NAME:  shotA\n")
    s = ingest(edl, IngestOptions(rate=29.97, handles=4, relink_dir=str(tmp_path)))[0]
    assert s.problem is None, s.problem
    assert (s.media.timecode, s.media.drop_frame) == (plate_tc, drop_frame)
    assert s.media.timecode_at() == plate_tc  # file frame 0
    assert s.file_start == 6 and s.source_timecode() == src_in[:-2] + "06"  # 4 frames of handle
    assert s.source_timecode(s.cut_range.start) == src_in
    assert s.source_range.timecode(s.cut_range.start, drop_frame=s.drop_frame) == src_in
    again = Shot.from_dict(json.loads(json.dumps(s.to_dict())))  # the kind travels with the shot
    assert again.media.drop_frame is drop_frame and again.source_timecode(s.cut_range.start) == src_in
    if not drop_frame:  # OTIO's 29.97 convention would have counted this plate drop-frame
        assert s.source_range.timecode(s.cut_range.start) != src_in


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


# -- bad input: one clear line naming the edit or shot list, the clip and what is wrong ----------

RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """48 frames at 24 fps, no timecode: file frame n is source frame n."""
    return make_movie(tmp_path_factory.mktemp("plate") / "plate.mov", frames=48, rate=24)


def write_edit(path: Path, clips) -> Path:
    """An .otio with one V1 clip per (name, start, duration, voidbatch metadata or None, media path)."""
    tl = otio.schema.Timeline("cut")
    track = otio.schema.Track("V1")
    tl.tracks.append(track)
    for name, start, duration, meta, media in clips:
        ref = otio.schema.ExternalReference(target_url=str(media), available_range=TR(RT(0, 24), RT(48, 24)))
        clip = otio.schema.Clip(name=name, media_reference=ref, source_range=TR(RT(start, 24), RT(duration, 24)))
        if meta is not None:
            clip.metadata["voidbatch"] = meta
        track.append(clip)
    otio.adapters.write_to_file(tl, str(path))
    return path


def round_trips(shot) -> bool:
    from shots.shot import Shot

    return Shot.from_dict(json.loads(json.dumps(shot.to_dict()))) == shot


def test_typo_in_otio_instructions_fails_the_shot(tmp_path, plate):
    edit = write_edit(tmp_path / "cut.otio", [
        ("sh010", 8, 16, {"prompt": "an empty street", "qaudmask": "m.mkv"}, plate),
        ("sh020", 8, 16, {"qaudmask": "m.mkv"}, plate),
        ("sh030", 8, 16, {"prompt": "x", "mask_start_frame": "ten", "enabled": "maybe", "quadmask": 5}, plate),
        ("sh040", 8, 16, {"prompt": "an empty room"}, plate),
    ])
    typo, only_typo, bad_values, good = ingest(edit)
    # flagged (the editor asked for a removal) and failing with the reason, never silently skipped
    assert typo.flagged and typo.skip_reason is None
    assert typo.problem == (f"{edit}, clip 'sh010': unknown key 'qaudmask' under 'voidbatch' "
                            "(did you mean 'quadmask'?)")
    assert typo.instructions.prompt == "an empty street"  # what could be read is kept, for the report
    assert only_typo.flagged and "unknown key 'qaudmask'" in only_typo.problem
    assert bad_values.flagged and bad_values.problem.startswith(f"{edit}, clip 'sh030': ")
    for part in ("'mask_start_frame'", "'ten'", "'enabled'", "'maybe'", "'quadmask'", "5"):
        assert part in bad_values.problem, part
    assert good.flagged and good.problem is None
    assert all(round_trips(s) for s in (typo, only_typo, bad_values, good))


def test_typo_in_sidecar_names_file_clip_and_key(tmp_path, plate):
    edit = write_edit(tmp_path / "cut.otio", [("sh010", 8, 16, None, plate)])
    side = tmp_path / "shots.json"
    side.write_text(json.dumps({"sh010": {"prompt": "x", "qaudmask": "m.mkv"}}))
    with pytest.raises(SidecarError) as e:
        ingest(edit, IngestOptions(sidecar=str(side)))
    assert str(e.value) == f"{side}, clip 'sh010': unknown key 'qaudmask' (did you mean 'quadmask'?)"
    side = tmp_path / "shots.csv"
    side.write_text("clip_name,prompt,qaudmask\nsh010,x,m.mkv\n")
    with pytest.raises(SidecarError) as e:
        ingest(edit, IngestOptions(sidecar=str(side)))
    assert str(e.value) == f"{side}: unknown column 'qaudmask' (did you mean 'quadmask'?)"


BAD_COORDINATES = [
    ("points", {"10": [["a", "b"]]}, "frame 10"),
    ("points", "1,2", "'1,2'"),
    ("negative_points", {"x": [[1, 2]]}, "'x'"),
    ("points", {"4": [[1, 2, 3]]}, "frame 4"),
    ("boxes", {"3": [0, 0, 5]}, "frame 3"),
    ("boxes", {"3": [5, 5, 1, 1]}, "frame 3"),
    ("boxes", [[0, 0, 5, 5]], "frame numbers"),
]


@pytest.mark.parametrize("field,value,detail", BAD_COORDINATES)
def test_bad_coordinates_in_sidecar(tmp_path, plate, field, value, detail):
    edit = write_edit(tmp_path / "cut.otio", [("sh010", 8, 16, None, plate)])
    side = tmp_path / "shots.json"
    side.write_text(json.dumps({"shots": {"sh010": {"prompt": "x", field: value}}}))
    with pytest.raises(SidecarError) as e:
        ingest(edit, IngestOptions(sidecar=str(side)))
    msg = str(e.value)
    assert msg.startswith(f"{side}, clip 'sh010': '{field}'") and detail in msg, msg


@pytest.mark.parametrize("field,value,detail", BAD_COORDINATES)
def test_bad_coordinates_in_otio_metadata(tmp_path, plate, field, value, detail):
    edit = write_edit(tmp_path / "cut.otio", [("sh010", 8, 16, {"prompt": "x", field: value}, plate)])
    shot, = ingest(edit)
    assert shot.flagged and shot.problem.startswith(f"{edit}, clip 'sh010': '{field}'"), shot.problem
    assert detail in shot.problem
    assert round_trips(shot)


def test_good_coordinates_pass(tmp_path, plate):
    meta = {"prompt": "x", "points": {"10": [[1, 2.5]], "11": [3, 4]}, "negative_points": {"12": []},
            "boxes": {"13": [0, 0, 5, 5]}, "mask_start_frame": 2, "enabled": True}
    side = tmp_path / "shots.csv"
    side.write_text('clip_name,points,enabled,mask_start_frame\nsh020,"{""10"": [[1, 2]]}",yes,3\n')
    a, b = ingest(write_edit(tmp_path / "cut.otio", [("sh010", 8, 16, meta, plate), ("sh020", 8, 16, None, plate)]),
                  IngestOptions(sidecar=str(side)))
    assert a.problem is None and a.flagged
    assert (a.instructions.points, a.instructions.boxes) == ({10: [[1, 2.5]], 11: [3, 4]}, {13: [0, 0, 5, 5]})
    assert b.problem is None and b.flagged and b.instructions.points == {10: [[1, 2]]}
    assert b.instructions.mask_start_frame == 3 and b.instructions.enabled is True


def test_skip_reasons(tmp_path, plate):
    edit = write_edit(tmp_path / "cut.otio", [
        ("none", 8, 16, None, plate),
        ("off", 8, 16, {"prompt": "x", "enabled": False}, plate),
        ("zero", 20, 0, {"prompt": "x"}, plate),
        ("go", 8, 16, {"prompt": "x"}, plate),
    ])
    none, off, zero, go = ingest(edit)
    assert (none.skip_reason, none.flagged) == ("no removal instructions", False)
    assert (off.skip_reason, off.flagged) == ("instructions disabled (enabled: false)", False)
    assert (zero.skip_reason, zero.flagged) == ("zero-duration clip in the edit", False)
    assert zero.frames == 0 and zero.handles == (0, 0)  # no 16 frames of handles to extract
    assert (go.skip_reason, go.flagged, go.problem) == (None, True, None)
    for s in (none, off, zero, go):
        assert s.to_dict()["skip_reason"] == s.skip_reason and round_trips(s)


def test_otio_with_several_timelines_is_refused(tmp_path, plate):
    reels = [otio.adapters.read_from_file(str(write_edit(tmp_path / f"{n}.otio", [(n, 8, 16, None, plate)])))
             for n in ("reel1", "reel2")]
    reels[0].name, reels[1].name = "Reel 1", "Reel 2"
    path = tmp_path / "reels.otio"
    otio.adapters.write_to_file(otio.schema.SerializableCollection(name="reels", children=reels), str(path))
    with pytest.raises(EditError) as e:
        ingest(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "2 timelines" in msg and "'Reel 1'" in msg and "'Reel 2'" in msg
    assert "one timeline per file" in msg
    # a collection of exactly one timeline is that timeline
    otio.adapters.write_to_file(otio.schema.SerializableCollection(name="one", children=[reels[0].deepcopy()]),
                                str(path))
    assert [s.clip_name for s in ingest(path)] == ["reel1"]


def test_deeply_nested_otio_is_refused_before_otio_reads_it(tmp_path, monkeypatch):
    deep = tmp_path / "deep.otio"
    n = 100_000
    deep.write_text('{"OTIO_SCHEMA": "Timeline.1", "metadata": ' + '{"a": ' * n + "1" + "}" * n + "}")
    handed = []
    monkeypatch.setattr(otio.adapters, "read_from_file", lambda *a, **k: handed.append(a))  # would segfault
    with pytest.raises(EditError, match=r"deep\.otio: JSON nested deeper than 200 levels"):
        ingest(deep)
    assert not handed


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path, plate):
    name = "[{" * 300 + '\\"' + "}]" * 5
    edit = write_edit(tmp_path / "cut.otio", [(name, 8, 16, {"prompt": "{[" * 300}, plate)])
    shot, = ingest(edit)
    assert shot.clip_name == name and shot.problem is None


@pytest.mark.timeout(120)  # before the fix this hung forever
def test_media_that_never_opens_fails_that_shot_alone(tmp_path, plate, stalled_path, short_media_timeout):
    stalled = stalled_path("stalled.mov")
    edit = write_edit(tmp_path / "cut.otio", [("sh010", 8, 16, {"prompt": "x"}, stalled),
                                             ("sh020", 8, 16, {"prompt": "x"}, plate)])
    bad, good = ingest(edit)
    assert bad.flagged and bad.problem == f"unreadable media: {stalled}: did not open within 2 s " \
                                          "(stalled storage? VOIDBATCH_MEDIA_TIMEOUT sets the limit)"
    assert good.problem is None and good.media.path == str(plate)
