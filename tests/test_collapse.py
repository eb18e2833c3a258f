"""The collapse warning: after many log intervals with (almost) every monitoring image at
count 0 or at the maximum, one line; never for a model that finds objects."""

import pytest

from inverse_air.collapse import CollapseWatch

EMPTY, FULL, MIXED = [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.01, 0.99], [0.25, 0.25, 0.25, 0.25]


def feed(watch, hists, every=100):
    return [watch.update(h, every * (i + 1)) for i, h in enumerate(hists)]


@pytest.mark.parametrize("hist, what", [(EMPTY, "no objects"), (FULL, "the most objects the model allows (3)")])
def test_a_collapse_for_many_intervals_warns_once_in_one_line(hist, what):
    out = feed(CollapseWatch(3, intervals=4), [MIXED] + [hist] * 8)
    warnings = [w for w in out if w]
    assert len(warnings) == 1 and out[4] is not None and out[3] is None  # the 4th collapsed interval in a row
    assert warnings[0].startswith("warning: ") and "\n" not in warnings[0]
    assert what in warnings[0] and "steps 200-500" in warnings[0]


def test_no_warning_for_a_model_that_finds_objects_or_recovers_in_time():
    assert not any(feed(CollapseWatch(3, intervals=4), [MIXED] * 20))
    # Three collapsed intervals, a recovery, three more: never four in a row.
    assert not any(feed(CollapseWatch(3, intervals=4), ([EMPTY] * 3 + [MIXED]) * 5))
    # Alternating ends are not one collapse.
    assert not any(feed(CollapseWatch(3, intervals=4), [EMPTY, EMPTY, FULL, FULL, EMPTY, EMPTY]))
    # 97% empty is below the share that counts.
    assert not any(feed(CollapseWatch(3, intervals=4), [[0.97, 0.03, 0.0, 0.0]] * 10))


def test_a_second_collapse_after_a_recovery_warns_again():
    out = feed(CollapseWatch(3, intervals=2), [EMPTY] * 3 + [MIXED] + [FULL] * 2)
    assert [bool(w) for w in out] == [False, True, False, False, False, True]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        CollapseWatch(0)
    with pytest.raises(ValueError):
        CollapseWatch(3).update([1.0, 0.0], 100)
