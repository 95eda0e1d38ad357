"""Layout strings: parsing, string forms, errors naming the bad token, per-stage specs."""

import pytest

from dnahnet.layout import (
    Layout,
    LayoutError,
    StageLayout,
    compact,
    expand_entry,
    parse_layout,
    per_stage,
    stage_block_specs,
)

PAPER = ["m4", ["T1m4", ["T8"], "m4T1"], "m4"]


def test_parse_paper_two_stage_layout():
    lay = parse_layout(PAPER)
    assert lay.n_stages == 2
    assert lay.stages == (StageLayout("mmmm", "mmmm"), StageLayout("Tmmmm", "mmmmT"))
    assert lay.main == "T" * 8
    assert lay.letters(1) == "Tmmmm" + "mmmmT" and lay.letters(2) == "T" * 8
    assert lay.to_list() == PAPER


@pytest.mark.parametrize("text", [
    '["m4", ["T1m4", ["T8"], "m4T1"], "m4"]',  # JSON
    "['m4', ['T1m4', ['T8'], 'm4T1'], 'm4']",  # Python repr
    "[m4, [T1m4, [T8], m4T1], m4]",  # YAML flow, bare tokens (command lines)
])
def test_string_forms(text):
    assert parse_layout(text) == parse_layout(PAPER)


def test_one_and_zero_stage_layouts_and_round_trip():
    assert parse_layout(["m2", ["T2"], "m2"]) == Layout((StageLayout("mm", "mm"),), "TT")
    assert parse_layout(["t3M1"]) == Layout((), "tttM")
    three = ["m1", ["m1", ["T1m1", ["T2"], "m1T1"], "m1"], "m1"]
    assert parse_layout(three).n_stages == 3
    assert parse_layout(str(parse_layout(three))).to_list() == three
    assert compact("TmmmmT") == "T1m4T1" and expand_entry("T1m4T1") == "TmmmmT"


@pytest.mark.parametrize("layout,token", [
    (["m4", ["T1x4", ["T8"], "m4T1"], "m4"], "'x4'"),  # unknown letter
    (["m4", ["T1m4", ["T8"], "m4T1"], "q2"], "'q2'"),
    (["m4", ["T"], "m4"], "'T'"),  # missing count
    (["m4", ["T0"], "m4"], "'T0'"),  # zero count
    (["m4", ["T2"], "m4-"], "'-'"),  # stray character
    (["4m", ["T2"], "m4"], "'4'"),
])
def test_errors_name_the_bad_token(layout, token):
    with pytest.raises(LayoutError, match=token):
        parse_layout(layout)


def test_structural_errors_say_where():
    with pytest.raises(LayoutError, match=r"layout\[1\]: a stage has 3 entries"):
        parse_layout(["m4", ["T1", "T2"], "m4"])
    with pytest.raises(LayoutError, match=r"layout\[1\]: expected a list"):
        parse_layout(["m4", "T8", "m4"])
    with pytest.raises(LayoutError, match=r"stage 0 decoder.*expected a string"):
        parse_layout(["m4", ["T8"], 4])
    with pytest.raises(LayoutError, match="empty entry"):
        parse_layout(["", ["T8"], "m4"])
    with pytest.raises(LayoutError, match="not a nested list"):
        parse_layout("[m4, [T8")


def test_keep_outer_drops_inner_stages_but_keeps_main():
    lay = parse_layout(PAPER).keep_outer(1)
    assert lay.to_list() == ["m4", ["T8"], "m4"]
    assert parse_layout(PAPER).keep_outer(0).to_list() == ["T8"]
    with pytest.raises(LayoutError):
        parse_layout(PAPER).keep_outer(3)


def test_per_stage_lists():
    assert per_stage("d_model", (64, 96, 128), 2, 2, with_main=True) == (64, 96, 128)
    assert per_stage("d_model", (64, 96, 128), 2, 1, with_main=True) == (64, 128)  # stage 1 dropped
    assert per_stage("d_model", (64, 128), 2, 1, with_main=True) == (64, 128)  # already per kept stage
    assert per_stage("window", (1023, 511), 2, 1, with_main=False) == (1023,)
    with pytest.raises(ValueError, match=r"d_model has 2 entries.*needs 3"):
        per_stage("d_model", (64, 96), 2, 2, with_main=True)


def test_stage_block_specs():
    lay = parse_layout(PAPER)
    specs = stage_block_specs(lay, (512, 768, 1024), (0, 2048, 2816), (8, 12, 16), (1023, 1023),
                              mamba={"d_state": 16})
    assert [s.d_model for s in specs] == [512, 768, 1024]
    assert [s.rotary_dim for s in specs] == [32, 32, 32]  # half of the 64-channel heads
    assert [s.window for s in specs] == [1023, 1023, None]  # main network global
    assert specs[1].mamba == {"d_state": 16}
    assert stage_block_specs(lay, (64, 64, 64), (0, 64, 64), (4, 4, 4), (-1, 7))[0].window is None
    with pytest.raises(ValueError, match=r"uses MLP blocks.*d_intermediate\[1\] = 0"):
        stage_block_specs(lay, (512, 768, 1024), (0, 0, 2816), (8, 12, 16), (1023, 1023))
    with pytest.raises(ValueError, match="widths must grow inward"):
        stage_block_specs(lay, (512, 256, 1024), (0, 64, 64), (8, 8, 16), (1023, 1023))
    with pytest.raises(ValueError, match=r"n_heads\[2\] = 7 must .* divide"):
        stage_block_specs(lay, (64, 64, 64), (0, 64, 64), (4, 4, 7), (1023, 1023))
    with pytest.raises(ValueError, match="window has 1 entries"):
        stage_block_specs(lay, (64, 64, 64), (0, 64, 64), (4, 4, 4), (1023,))
