"""The input colour space of a plate, and the one transform between it and what the backends see."""
from __future__ import annotations

import numpy as np
import pytest

from shots.colour import BUILTIN_CONFIG, ColourPipeline, InputSpace, input_space, known_space
from shots.samples import Colour

TAGGED_LINEAR = Colour(primaries="aces-ap1", transfer="linear", matrix=None, range="pc", assumed=None)
UNTAGGED_HD = Colour(primaries="bt709", transfer="bt709", matrix="bt709", range="tv",
                     assumed="untagged HD video: BT.709 assumed (players' convention)")


@pytest.fixture(scope="module")
def rules_config(tmp_path_factory) -> str:
    """The built-in ACES config with one facility file rule: anything named *_acescg* is ACEScg."""
    import PyOpenColorIO as ocio

    cfg = ocio.Config.CreateFromBuiltinConfig(BUILTIN_CONFIG)
    rules = cfg.getFileRules()
    rules.insertRule(0, "acescg plates", "ACEScg", "*_acescg*", "*")
    cfg.setFileRules(rules)
    path = tmp_path_factory.mktemp("ocio") / "facility.ocio"
    path.write_text(cfg.serialize())
    assert ocio.Config.CreateFromFile(str(path)).getFileRules().getNumEntries() == 2
    return str(path)


def test_precedence_tags_then_file_rules_then_request_then_convention(rules_config):
    # The file's tags win over everything else.
    assert input_space("/p/shot_acescg.exr", TAGGED_LINEAR, "sRGB - Display", rules_config) == InputSpace("ACEScg",
                                                                                                          "tags")
    # Untagged: the config's file rules, before what the edit or command line asks.
    ruled = input_space("/p/shot_acescg.mov", UNTAGGED_HD, "sRGB - Display", rules_config)
    assert (ruled.name, ruled.decided_by) == ("ACEScg", "file rules") and "acescg plates" in ruled.note
    # No rule matches: the request, spelled as the config spells it (aliases and case are accepted).
    assert input_space("/p/shot.mov", UNTAGGED_HD, "acescg", rules_config) == InputSpace("ACEScg", "edit")
    # Nothing said: the players' convention, with the assumption recorded for the manifest.
    assumed = input_space("/p/shot.mov", UNTAGGED_HD, None, rules_config)
    assert assumed.name == "Rec.1886 Rec.709 - Display" and assumed.decided_by == "convention"
    assert "BT.709 assumed" in assumed.describe()


def test_an_unknown_colour_space_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"'ACES-ish' is not in the OCIO config; it has: .*ACEScg"):
        input_space("/p/shot.exr", None, "ACES-ish")
    assert known_space("ACES - ACEScg") == "ACEScg"


def test_display_referred_plates_are_only_rescaled():
    pipeline = ColourPipeline(InputSpace("Rec.1886 Rec.709 - Display", "tags"))
    deep = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64, 1).repeat(3, axis=2)
    assert np.array_equal(pipeline.to_model(deep), np.rint(deep / 257).astype(np.uint8))
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    back = pipeline.from_model(codes, np.uint16)
    assert np.array_equal(np.rint(back).astype(np.uint16), codes.astype(np.uint16) * 257)


def test_scene_linear_goes_through_the_sdr_view_and_back():
    """ACEScg -> ACES 1.0 SDR video: highlights up to 6.0 stay distinct (no hard clip at 1.0), mid grey lands
    mid-scale, and the inverse brings the backends' 8-bit output back to scene-linear values."""
    pipeline = ColourPipeline(InputSpace("ACEScg", "tags"))
    ramp = np.array([0.0, 0.02, 0.18, 0.5, 1.0, 2.0, 6.0], np.float32)
    frame = np.repeat(ramp[None, :, None], 3, axis=2)
    display = pipeline.to_model(frame)[0, :, 0].astype(int)
    assert list(display) == sorted(display) and len(set(display)) == len(ramp)  # monotonic, nothing merged
    assert 90 < display[2] < 140  # 18% grey is mid-scale on an SDR display
    assert display[-1] < 255  # 6.0 is below the display's white: the view rolls highlights off
    back = pipeline.from_model(pipeline.to_model(frame), np.float32)[0, :, 0]
    assert np.allclose(back[1:5], ramp[1:5], rtol=0.08)  # within an 8-bit display code through the view
    assert back[-1] > 3.0  # a highlight comes back a highlight
