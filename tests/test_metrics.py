import numpy as np
import pytest

from inverse_air.metrics import confusion_matrix, match_by_position
from inverse_air.objects3d.metrics import scene_metrics_3d, yaw_error_deg


def test_confusion_matrix_rows_true_columns_inferred():
    m = confusion_matrix(np.array([0, 1, 1, 2, 2]), np.array([0, 1, 2, 2, 5]), max_count=3)
    assert m.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]]


def test_matching_finds_the_cheapest_assignment():
    true = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pred = np.array([[0.1, 1.0], [0.0, 0.1], [0.9, 0.0]])
    assert match_by_position(true, pred).tolist() == [1, 2, 0]
    # greedy nearest-first would pair true 0 with pred 0 here; the optimum crosses
    true = np.array([[0.0, 0.0], [2.0, 0.0]])
    pred = np.array([[1.1, 0.0], [-1.0, 0.0]])
    assert match_by_position(true, pred).tolist() == [1, 0]
    with pytest.raises(ValueError):
        match_by_position(true, pred[:1])


def test_matching_equals_every_permutation_and_scales_to_many_objects():
    import itertools
    import time

    rng = np.random.default_rng(0)
    for n in range(1, 7):
        true, pred = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, (n, 2))
        cost = np.linalg.norm(true[:, None] - pred[None], axis=-1)
        best = min(cost[np.arange(n), list(p)].sum() for p in itertools.permutations(range(n)))
        assert cost[np.arange(n), match_by_position(true, pred)].sum() == pytest.approx(best)
    start = time.perf_counter()
    order = match_by_position(rng.uniform(size=(200, 2)), rng.uniform(size=(200, 2)))  # 200! permutations
    assert sorted(order.tolist()) == list(range(200)) and time.perf_counter() - start < 1.0


def test_yaw_error_respects_symmetry():
    assert yaw_error_deg(np.array([0.0, 10.0, 80.0]), np.array([90.0, 355.0, 5.0]), 90.0).tolist() == \
        pytest.approx([0.0, 15.0, 15.0])
    assert np.isnan(yaw_error_deg(np.array([0.0]), np.array([40.0]), None)).all()


def test_scene_metrics_3d_on_a_hand_made_case():
    true = {"count": np.array([2, 1, 0, 1]),
            "shape": np.array([[1, 0], [2, -1], [-1, -1], [0, -1]]),
            "position": np.array([[[0.0, 0.0], [0.5, 0.5]], [[0.2, 0.2], [0, 0]],
                                  [[0, 0], [0, 0]], [[0, 0], [0, 0]]]),
            "yaw": np.array([[10.0, 0.0], [0.0, 0.0], [0, 0], [0, 0]])}
    # scene 0: right count, objects in the other order, the cube 0.1 off and turned 95 degrees
    # scene 1: right count, wrong identity; scene 2: right (empty); scene 3: wrong count
    pred = {"count": np.array([2, 1, 0, 2]),
            "shape": np.array([[0, 1, -1], [1, -1, -1], [-1, -1, -1], [0, 0, -1]]),
            "position": np.array([[[0.5, 0.5], [0.1, 0.0], [0, 0]], [[0.2, 0.5], [0, 0], [0, 0]],
                                  [[0, 0], [0, 0], [0, 0]], [[0, 0], [1, 1], [0, 0]]]),
            "yaw": np.array([[0.0, 105.0, 0.0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])}
    m = scene_metrics_3d(true, pred)
    assert m["count_accuracy"] == 0.75
    assert m["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert m["matched_objects"] == 3
    assert m["identity_accuracy"] == pytest.approx(2 / 3)
    assert m["position_error"]["median"] == pytest.approx(0.1)
    assert m["position_error"]["mean"] == pytest.approx((0.1 + 0.0 + 0.3) / 3)
    assert m["cube_yaw_error_deg"] == {"median": pytest.approx(5.0), "mean": pytest.approx(5.0)}


def test_2d_metrics_on_a_hand_made_case():
    from inverse_air.kinds import KINDS
    from inverse_air.objects2d.metrics import scene_metrics_2d

    true = {"count": np.array([0, 1, 2, 2, 1]),
            "box": np.array([[[0, 0, 0], [0, 0, 0]],
                             [[0.4, 0.1, 0.2], [0, 0, 0]],
                             [[0.4, -0.5, 0.0], [0.5, 0.5, 0.0]],
                             [[0.4, -0.5, 0.0], [0.5, 0.5, 0.0]],
                             [[0.4, 0.0, 0.0], [0, 0, 0]]], np.float32)}
    pred = {"count": np.array([0, 1, 2, 1, 2]),
            "box": np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                             [[0.43, 0.1, 0.5], [0, 0, 0], [0, 0, 0]],
                             [[0.45, 0.5, 0.1], [0.4, -0.5, 0.0], [0, 0, 0]],  # found right to left
                             [[0.4, -0.5, 0.0], [0, 0, 0], [0, 0, 0]],
                             [[0.4, 0.0, 0.0], [0.4, 0.5, 0.5], [0, 0, 0]]], np.float32)}
    m = scene_metrics_2d(true, pred)
    assert m["num_scenes"] == 5 and m["count_accuracy"] == pytest.approx(3 / 5)
    assert m["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    # Matched on scenes 1 and 2: centre errors 0.3, 0.1 (after matching across the order), 0.
    assert m["matched_objects"] == 3
    assert m["position_error"]["median"] == pytest.approx(0.1) and m["position_error"]["mean"] == pytest.approx(0.4 / 3)
    assert m["scale_error"]["mean"] == pytest.approx((0.03 + 0.05 + 0.0) / 3, abs=1e-6)
    assert KINDS["2d"].metrics(true, pred) == m  # exact: the same function on the same arrays
