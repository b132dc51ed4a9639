"""Tests for datanas.spaces.darts_cnn.genotype (pure Python, no TensorFlow)."""

import copy
import json
import os

import pytest

from datanas.spaces.darts_cnn.genotype import (
    CONV_PRIMITIVES,
    DARTS_V2,
    GENOTYPE_OPS,
    Genotype,
    GenotypeError,
    load_genotype,
    save_genotype,
)

KEYS = {"normal", "normal_concat", "reduce", "reduce_concat"}


def _multi_op_dict():
    """A DATA-style genotype: several ops per edge, a 5-pair node, a 3-node reduce cell."""
    return {
        "normal": [
            [["sep_conv_3x3", 0], ["skip_connect", 0], ["dil_conv_5x5", 1]],
            [["max_pool_3x3", 1]],
            [["sep_conv_5x5", 0], ["sep_conv_3x3", 0], ["avg_pool_3x3", 2],
             ["skip_connect", 3], ["dil_conv_3x3", 1]],
            [["skip_connect", 4], ["sep_conv_3x3", 4]],
        ],
        "normal_concat": [5, 2, 3, 4],
        "reduce": [
            [["max_pool_3x3", 0], ["max_pool_3x3", 1]],
            [["avg_pool_3x3", 2]],
            [["dil_conv_5x5", 3], ["sep_conv_5x5", 0], ["skip_connect", 2]],
        ],
        "reduce_concat": [2, 3, 4],
    }


def _valid_dict():
    return DARTS_V2.to_dict()


# ---------------------------------------------------------------- constants


def test_primitives():
    assert CONV_PRIMITIVES[0] == "none"
    assert len(CONV_PRIMITIVES) == 8
    assert GENOTYPE_OPS == CONV_PRIMITIVES[1:]
    assert "none" not in GENOTYPE_OPS
    assert issubclass(GenotypeError, ValueError)


def test_darts_v2_structure():
    assert DARTS_V2.normal[3] == (("skip_connect", 0), ("dil_conv_3x3", 2))
    assert DARTS_V2.reduce[1] == (("skip_connect", 2), ("max_pool_3x3", 1))
    assert DARTS_V2.normal_concat == (2, 3, 4, 5)
    assert DARTS_V2.reduce_concat == (2, 3, 4, 5)
    assert DARTS_V2.cell("normal") is DARTS_V2.normal
    assert DARTS_V2.concat("reduce") == (2, 3, 4, 5)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("data", [_valid_dict(), _multi_op_dict()])
def test_dict_round_trip(data):
    g = Genotype.from_dict(data)
    again = Genotype.from_dict(g.to_dict())
    assert again == g
    assert hash(again) == hash(g)
    # Concat is sorted; everything else preserved in order.
    expected = copy.deepcopy(data)
    expected["normal_concat"] = sorted(expected["normal_concat"])
    expected["reduce_concat"] = sorted(expected["reduce_concat"])
    assert g.to_dict() == expected


def test_lists_normalised_to_tuples():
    g = Genotype(**_multi_op_dict())
    assert isinstance(g.normal, tuple)
    assert all(isinstance(node, tuple) for node in g.normal)
    assert all(isinstance(pair, tuple) for node in g.normal for pair in node)
    assert g.normal_concat == (2, 3, 4, 5)
    assert len(g.normal[2]) == 5
    assert len(g.reduce) == 3
    with pytest.raises(dataclasses_frozen_error()):
        g.normal = ()


def dataclasses_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("data", [_valid_dict(), _multi_op_dict()])
def test_json_round_trip(data):
    g = Genotype.from_dict(data)
    text = g.to_json()
    assert json.loads(text) == g.to_dict()
    assert Genotype.from_json(text) == g
    # Indented with two spaces.
    assert '\n  "normal": [' in text


def test_file_round_trip(tmp_path):
    g = Genotype.from_dict(_multi_op_dict())
    path = tmp_path / "nested" / "dir" / "genotype.json"
    save_genotype(g, path)
    assert path.is_file()
    assert load_genotype(path) == g
    assert load_genotype(str(path)) == g

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert set(data) == KEYS
    assert data["normal"][2] == [
        ["sep_conv_5x5", 0], ["sep_conv_3x3", 0], ["avg_pool_3x3", 2],
        ["skip_connect", 3], ["dil_conv_3x3", 1],
    ]
    assert data["normal_concat"] == [2, 3, 4, 5]
    assert data["reduce_concat"] == [2, 3, 4]


def test_atomic_save_leaves_no_temp_files(tmp_path):
    path = tmp_path / "g.json"
    save_genotype(DARTS_V2, path)
    g2 = Genotype.from_dict(_multi_op_dict())
    save_genotype(g2, path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["g.json"]
    assert load_genotype(path) == g2


def test_failed_save_cleans_up(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("simulated failure")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        save_genotype(DARTS_V2, tmp_path / "g.json")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- malformed


def _set_pair(data, cell, node, pair, value):
    data[cell][node][pair] = value
    return data


def _bad_cases():
    cases = []

    d = _valid_dict()
    _set_pair(d, "normal", 0, 1, ["conv_7x7", 1])
    cases.append(("unknown_op", d, r"unknown op 'conv_7x7'.*allowed ops: max_pool_3x3"))

    d = _valid_dict()
    _set_pair(d, "normal", 1, 0, ["none", 0])
    cases.append(("none_op", d, r"'none'.*dropped"))

    d = _valid_dict()
    _set_pair(d, "normal", 1, 0, ["sep_conv_3x3", 4])  # node 3 -> forward to 4
    cases.append(("forward_index", d,
                  r"normal cell, node 3, pair 1: input index 4 points forward.*0\.\.2"))

    d = _valid_dict()
    _set_pair(d, "reduce", 2, 1, ["skip_connect", 4])  # node 4 -> itself
    cases.append(("self_index", d,
                  r"reduce cell, node 4, pair 2: input index 4 points to the node itself.*0\.\.3"))

    d = _valid_dict()
    _set_pair(d, "normal", 0, 0, ["sep_conv_3x3", -1])
    cases.append(("negative_index", d, r"node 2, pair 1: input index -1 is negative"))

    d = _valid_dict()
    d["normal"][2] = []
    cases.append(("empty_node", d, r"normal cell, node 4: the node is empty"))

    d = _valid_dict()
    d["reduce"] = []
    cases.append(("empty_cell", d, r"reduce cell: the cell is empty"))

    d = _valid_dict()
    d["normal"][0].append(["sep_conv_3x3", 0])
    cases.append(("duplicate_pair", d,
                  r"node 2, pair 3: duplicate pair \['sep_conv_3x3', 0\]"))

    d = _valid_dict()
    _set_pair(d, "normal", 0, 0, ["sep_conv_3x3", "0"])
    cases.append(("str_index", d, r"input index must be an integer, got '0' \(str\)"))

    d = _valid_dict()
    _set_pair(d, "normal", 0, 0, ["sep_conv_3x3", 1.0])
    cases.append(("float_index", d, r"input index must be an integer, got 1\.0 \(float\)"))

    d = _valid_dict()
    _set_pair(d, "normal", 0, 0, ["sep_conv_3x3", True])
    cases.append(("bool_index", d, r"input index must be an integer, got True \(bool\)"))

    d = _valid_dict()
    _set_pair(d, "normal", 0, 0, [3, 0])
    cases.append(("non_str_op", d, r"op must be a string, got 3 \(int\)"))

    d = _valid_dict()
    _set_pair(d, "normal", 0, 0, ["sep_conv_3x3", 0, 1])
    cases.append(("three_element_pair", d, r"2-element list.*\['sep_conv_3x3', 0, 1\]"))

    d = _valid_dict()
    d["normal_concat"] = [2, 3, 6]
    cases.append(("concat_out_of_range", d,
                  r"'normal_concat'.*node index 6 is out of range.*2\.\.5"))

    d = _valid_dict()
    d["reduce_concat"] = [1, 2]
    cases.append(("concat_input_node", d, r"'reduce_concat'.*node index 1 is out of range"))

    d = _valid_dict()
    d["reduce_concat"] = [2, 2, 3]
    cases.append(("concat_duplicate", d, r"node index 2 is listed more than once"))

    d = _valid_dict()
    d["normal_concat"] = []
    cases.append(("concat_empty", d, r"'normal_concat'.*empty"))

    d = _valid_dict()
    d["normal_concat"] = [2, "3"]
    cases.append(("concat_non_int", d, r"node index must be an integer, got '3'"))

    d = _valid_dict()
    del d["reduce_concat"]
    cases.append(("missing_key", d, r"missing key\(s\) 'reduce_concat'"))

    d = _valid_dict()
    d["epoch"] = 50
    cases.append(("extra_key", d, r"unknown key\(s\) 'epoch'"))

    return cases


_CASES = _bad_cases()


@pytest.mark.parametrize("name,data,pattern", _CASES, ids=[c[0] for c in _CASES])
def test_malformed_from_dict(name, data, pattern):
    with pytest.raises(GenotypeError, match=pattern):
        Genotype.from_dict(data)


@pytest.mark.parametrize("name,data,pattern", _CASES, ids=[c[0] for c in _CASES])
def test_malformed_file_names_path(tmp_path, name, data, pattern):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(GenotypeError, match=pattern) as info:
        load_genotype(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "name,data,pattern",
    [c for c in _CASES if c[0] not in ("missing_key", "extra_key")],
    ids=[c[0] for c in _CASES if c[0] not in ("missing_key", "extra_key")],
)
def test_constructor_validates(name, data, pattern):
    with pytest.raises(GenotypeError, match=pattern):
        Genotype(**data)


def test_top_level_not_object():
    with pytest.raises(GenotypeError, match="top level must be a JSON object"):
        Genotype.from_json("[1, 2]")


def test_bad_json_names_path_line_and_column(tmp_path):
    text = DARTS_V2.to_json()
    # Drop the comma after the first concat list -> syntax error on a later line.
    broken = text.replace('"normal_concat": [2, 3, 4, 5],', '"normal_concat": [2, 3, 4, 5]')
    assert broken != text
    path = tmp_path / "broken.json"
    path.write_text(broken, encoding="utf-8")
    err = json.JSONDecodeError
    try:
        json.loads(broken)
    except err as exc:
        line, col = exc.lineno, exc.colno
    with pytest.raises(GenotypeError,
                       match=rf"invalid JSON at line {line}, column {col}") as info:
        load_genotype(path)
    assert str(path) in str(info.value)
    assert line > 1


def test_from_json_source_in_message():
    with pytest.raises(GenotypeError, match=r"genotype file 'mine\.json'.*line 1, column"):
        Genotype.from_json("{not json", source="mine.json")


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "genotype.json"
    with pytest.raises(GenotypeError, match="does not exist") as info:
        load_genotype(path)
    assert str(path) in str(info.value)


def test_every_space_reads_genotype_files_the_same_way(tmp_path):
    from datanas.spaces.darts_rnn.genotype import load_recurrent_genotype
    from datanas.spaces.genotype_files import load_any_genotype
    for load in (load_genotype, load_recurrent_genotype, load_any_genotype):
        with pytest.raises(GenotypeError, match="holds no genotype.json"):
            load(tmp_path)          # a directory, but not a finished search run
        with pytest.raises(GenotypeError, match="does not exist"):
            load(tmp_path / "missing.json")
        (tmp_path / "latin1.json").write_bytes(b"\xff\xfe{")
        with pytest.raises(GenotypeError, match="not valid UTF-8"):
            load(tmp_path / "latin1.json")


def test_bad_kind():
    with pytest.raises(GenotypeError, match=r"unknown cell kind 'reduction'"):
        DARTS_V2.cell("reduction")
    with pytest.raises(ValueError, match="normal, reduce"):
        DARTS_V2.concat("x")
    with pytest.raises(GenotypeError):
        DARTS_V2.op_counts("both")


def test_same_input_different_ops_allowed():
    g = Genotype(
        normal=[[["sep_conv_3x3", 0], ["sep_conv_5x5", 0], ["skip_connect", 0]]],
        normal_concat=[2],
        reduce=[[["max_pool_3x3", 1]]],
        reduce_concat=[2],
    )
    assert g.op_counts() == {"max_pool_3x3": 1, "skip_connect": 1,
                             "sep_conv_3x3": 1, "sep_conv_5x5": 1}


# ---------------------------------------------------------------- reporting


def test_op_counts_darts_v2():
    assert DARTS_V2.op_counts("normal") == {
        "skip_connect": 2, "sep_conv_3x3": 5, "dil_conv_3x3": 1}
    assert DARTS_V2.op_counts("reduce") == {"max_pool_3x3": 5, "skip_connect": 3}
    both = DARTS_V2.op_counts()
    assert both == {"max_pool_3x3": 5, "skip_connect": 5,
                    "sep_conv_3x3": 5, "dil_conv_3x3": 1}
    assert sum(both.values()) == 16


def test_num_skip_connects_darts_v2():
    assert DARTS_V2.num_skip_connects() == 2
    assert DARTS_V2.num_skip_connects("normal") == 2
    assert DARTS_V2.num_skip_connects("reduce") == 3
    assert DARTS_V2.num_skip_connects(None) == 5
    g = Genotype.from_dict(_multi_op_dict())
    assert g.num_skip_connects() == 3


def test_summary_darts_v2():
    text = DARTS_V2.summary()
    lines = text.splitlines()
    assert lines[0].startswith("normal cell")
    assert "  node 2 <- sep_conv_3x3(0) + sep_conv_3x3(1)" in lines
    assert "  node 5 <- skip_connect(0) + dil_conv_3x3(2)" in lines
    assert "  node 3 <- skip_connect(2) + max_pool_3x3(1)" in lines
    assert any(line.startswith("reduce cell") for line in lines)
    assert "sep_conv_3x3 x5" in text
    assert "max_pool_3x3 x5" in text
    assert len(lines) == 12
