"""Grid geometry, VOID's combine rule, the reasoning rasterizer, answer validation, prompts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.masks import (AffectedObject, Grid, MaskStack, Prompts, Reasoning, combine, parse_answer,
                         quadmask_frames, rasterize, working_size)
from model.masks.gemini import redact
from model.masks.gemini_prompt import keyframe_indices
from model.masks.reasoning import InvalidAnswer
from shots.shot import Instructions


@pytest.mark.parametrize("size,grid", [((2160, 3840), (8, 14)), ((2160, 4096), (8, 15)), ((360, 544), (8, 12)),
                                       ((1920, 1080), (14, 8)), ((384, 672), (8, 14))])
def test_grid_matches_reference(size, grid):
    assert Grid.for_size(*size).shape == grid


def test_grid_cells_are_floor_bounds_and_gridify_roundtrips():
    g = Grid(8, 14)
    rb = g.row_bounds(2160)
    assert rb[0] == 0 and rb[-1] == 2160 and rb[3] == int(3 * 2160 / 8)
    cells = np.zeros(g.shape, bool)
    cells[2, 5] = cells[7, 13] = True
    m = g.cells_to_mask(cells, (216, 384))
    assert m.shape == (216, 384) and m.sum() == np.diff(g.row_bounds(216))[2] * np.diff(g.col_bounds(384))[5] + \
        np.diff(g.row_bounds(216))[7] * np.diff(g.col_bounds(384))[13]
    assert (g.gridify(m) == cells).all()
    one = np.zeros((216, 384), bool)
    one[100, 200] = True  # a single pixel makes its whole cell grey
    assert g.gridify(one).sum() == 1 and g.gridify(one)[g.cell_of(200, 100, (216, 384))]
    assert g.dilate(cells, 1).sum() == 9 + 4


def test_combine_rule_is_the_references():
    remove = np.array([[1, 1, 0, 0]], bool)
    affected = np.array([[0, 1, 1, 0]], bool)
    assert combine(remove, affected).tolist() == [[0, 63, 127, 255]]
    # frame-0 rule: grey dropped, overlap kept (stage4: 100 < v < 135 -> 255 on frame 0)
    assert combine(remove, affected, first_frame=True).tolist() == [[0, 63, 255, 255]]
    assert combine(remove, affected, first_frame=True, no_affected_on_first_frame=False).tolist() == [[0, 63, 127, 255]]


def test_quadmask_frames_dilate_remove_and_fill_cells():
    g = Grid(8, 8)
    remove = np.zeros((64, 64), bool)
    remove[30:34, 30:34] = True
    cells = np.zeros((2, 8, 8), bool)
    cells[:, 4, 4] = True  # cell rows/cols 32..39
    stats = {}
    q0, q1 = list(quadmask_frames([remove, remove], cells, g, (64, 64), dilate_px=2, stats=stats))
    assert (q1[32:40, 32:40] != 255).all() and set(np.unique(q1)) == {0, 63, 127, 255}
    assert q1[29, 29] == 0 and q1[27, 27] == 255  # grown by 2 px (disc)
    assert (q0 == 127).sum() == 0 and (q0 == 63).sum() > 0
    assert stats["frames"] == 2 and abs(sum(stats["fraction"].values()) - 1) < 1e-6


def test_rasterize_localizations_and_trajectories():
    shadow = AffectedObject("shadow", "visual_artifact", localizations={2: [(1, 1)], 6: [(3, 3)]},
                            first_appears_frame=1)
    cup = AffectedObject("cup", will_move=True, first_appears_frame=4, trajectory=[(4, 0, 0), (8, 4, 0)],
                         size_cells=(1, 1))
    ball = AffectedObject("ball", will_move=True, original_position=(5, 5), size_cells=(1, 1), first_appears_frame=3)
    cells = rasterize(Reasoning(6, 6, 10, [shadow, cup, ball]))
    assert cells.shape == (10, 6, 6)
    assert not cells[0].any()  # before first_appears_frame
    assert cells[1, 1, 1] and not cells[1, 3, 3]  # held before the first keyframe
    assert cells[4, 1, 1] and cells[4, 3, 3]  # between keyframes: union
    assert cells[6, 3, 3] and not cells[6, 1, 1] and cells[9, 3, 3]  # on / after the last keyframe
    assert [tuple(np.argwhere(cells[t, :, 0:1])[:, 0]) for t in (4, 6)] == [(0,), (1, 2)]  # interpolated, swept
    assert cells[9, 4, 0]  # held at the last trajectory point
    assert cells[3, 5, 5] and not cells[2, 5, 5]  # where the knocked ball would have stayed


def _answer(**over):
    obj = {"noun": "Shadow", "category": "visual_artifact", "why": "cast", "will_move": False,
           "first_appears_frame": 0, "grid_localizations": [{"frame": 3, "grid_regions": [{"row": 1, "col": 2}]}]}
    obj.update(over)
    return json.dumps({"integral_belongings": [{"noun": "Hat", "why": "worn"}], "affected_objects": [obj],
                       "scene_description": "empty street"})


def test_parse_answer_accepts_and_normalises():
    r = parse_answer(_answer(), Grid(8, 14), 10)
    assert r.objects[0].noun == "shadow" and r.objects[0].localizations == {3: [(1, 2)]}
    assert r.integral_belongings == [{"noun": "hat", "why": "worn"}] and r.scene_description == "empty street"
    fenced = "```json\n" + _answer() + "\n```"
    assert parse_answer(fenced, Grid(8, 14), 10).objects[0].noun == "shadow"
    # out-of-range frames are clamped and cells dropped, with warnings
    r = parse_answer(_answer(grid_localizations=[{"frame": 40, "grid_regions": [{"row": 8, "col": 0},
                                                                                {"row": 7, "col": 13}]}]),
                     Grid(8, 14), 10)
    assert r.objects[0].localizations == {9: [(7, 13)]} and len(r.warnings) == 2
    r2 = Reasoning.from_dict(json.loads(json.dumps(r.to_dict())))
    assert r2.to_dict() == r.to_dict()


@pytest.mark.parametrize("text,match", [
    ("", "empty"), ("{not json", "not JSON"), ("[1, 2]", "JSON list"), ('{"x": 1}', "affected_objects"),
    (_answer(noun=""), "noun"), (_answer(will_move="maybe"), "true/false"),
    (_answer(grid_localizations=[{"frame": "late", "grid_regions": []}]), "integer"),
    (_answer(grid_localizations="everywhere"), "list"),
])
def test_parse_answer_rejects_malformed(text, match):
    with pytest.raises(InvalidAnswer, match=match):
        parse_answer(text, Grid(8, 14), 10)


def test_prompts_from_instructions_use_shot_frames_and_drop_outside():
    ins = Instructions(points={105: [[10, 20]], 300: [[1, 1]]}, negative_points={106: [[5, 5]]},
                       boxes={110: [1, 2, 30, 40]})
    p, notes = Prompts.from_instructions(ins, file_start=100, n_frames=50, source_size=(100, 200))
    assert p.positive_frames == [5, 10] and p.frames == [5, 6, 10]
    assert len(notes) == 1 and "300" in notes[0]
    s = p.scaled(0.5, 0.25)
    assert s.points[5].tolist() == [[2.5, 10.0]] and s.boxes[10].tolist() == [0.25, 1.0, 7.5, 20.0]
    with pytest.raises(ValueError, match="outside"):
        Prompts.from_instructions(Instructions(points={100: [[500, 1]]}), 100, 5, (100, 200))
    with pytest.raises(ValueError, match="box"):
        Prompts.make(boxes={0: [5, 5, 1, 1]})


def test_mask_stack_packs_bits():
    rng = np.random.default_rng(0)
    a = rng.random((3, 17, 23)) > 0.5
    s = MaskStack.from_array(a)
    assert (s.to_array() == a).all() and s.areas.tolist() == a.sum(axis=(1, 2)).tolist()
    assert s.resized(0, (34, 46)).shape == (34, 46)
    assert working_size(2160, 3840, 1024) == (576, 1024) and working_size(200, 300, 1024) == (200, 300)


def test_keyframes_and_redaction():
    assert keyframe_indices(46, 10) == [0, 4, 9, 14, 19, 25, 30, 35, 40, 45]  # void_masks.md 3.2 (lime)
    assert keyframe_indices(4, 10) == [0, 1, 2, 3]
    assert redact("boom secret123 x", "secret123") == "boom [REDACTED] x"
    assert "AIza" not in redact("url?key=AIzaSyA1234567890123456789012345", None)
