"""The comparisons of results made on other machines (conftest): what they let through and
what they catch."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_datasets_agree, assert_results_agree

V1 = Path(__file__).resolve().parent / "data" / "v1"

RESULT = {"model": "3d", "count": 1, "objects": [{"shape": "cube", "position": [0.1234, -0.5], "yaw_deg": 44.99}],
          "steps": [{"step": 1, "present": True, "presence_prob": 0.9871, "shape_probs": {"cube": 0.9, "sphere": 0.1}},
                    {"step": 2, "present": False, "presence_prob": 0.0012}]}


def changed(path, value, result=RESULT):
    """A deep copy of ``result`` with the value at ``path`` replaced."""
    import copy

    result = copy.deepcopy(result)
    target = result
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return result


def test_results_agree_within_the_last_printed_digits():
    for path, value in [(("objects", 0, "position", 0), 0.1235), (("objects", 0, "yaw_deg"), 44.98),
                        (("objects", 0, "yaw_deg"), -44.99),  # a cube turned by 90 degrees looks the same
                        (("steps", 0, "presence_prob"), 0.9872), (("steps", 0, "shape_probs", "cube"), 0.9001)]:
        assert_results_agree(changed(path, value), RESULT)


@pytest.mark.parametrize("path, value", [
    (("count",), 2), (("objects", 0, "shape"), "sphere"), (("steps", 1, "present"), True),
    (("objects", 0, "position", 0), 0.1334), (("objects", 0, "yaw_deg"), 40.0),
    (("steps", 0, "presence_prob"), 0.98), (("steps", 0, "shape_probs", "cube"), 0.91),
    (("steps",), RESULT["steps"][:1]), (("model",), "2d"),
])
def test_results_disagree_beyond_them(path, value):
    with pytest.raises(AssertionError):
        assert_results_agree(changed(path, value), RESULT)


def test_datasets_agree_within_one_grey_level_on_few_pixels(tmp_path):
    from inverse_air.files import write_npz

    def edited(name, edit, source=V1 / "data3d"):
        copy = tmp_path / name
        shutil.copytree(source, copy)
        shard = copy / "shard-00000.npz"
        with np.load(shard) as data:
            arrays = {k: data[k].copy() for k in data.files}
        edit(arrays)
        write_npz(shard, arrays)
        return copy

    one_level = edited("one", lambda a: a["images"].__setitem__((0, 5, 5, 0), a["images"][0, 5, 5, 0] ^ 1))
    assert_datasets_agree(one_level, V1 / "data3d")
    for name, edit in [("two", lambda a: a["images"].__setitem__((0, 5, 5, 0), a["images"][0, 5, 5, 0] ^ 2)),
                       ("many", lambda a: a["images"].__setitem__(np.s_[:4], a["images"][:4] ^ 1)),
                       ("moved", lambda a: a["position"].__setitem__((0, 0, 0), a["position"][0, 0, 0] + 1e-6))]:
        with pytest.raises(AssertionError):
            assert_datasets_agree(edited(name, edit), V1 / "data3d")
    flipped = edited("2d", lambda a: a["images"].__setitem__((0, 5, 5, 0), a["images"][0, 5, 5, 0] ^ 1), V1 / "data2d")
    with pytest.raises(AssertionError, match="other bytes"):  # integer code: no pixel may differ
        assert_datasets_agree(flipped, V1 / "data2d")
