"""The sprite-set generators of benchmarks/spritesets.py: integer images whose labels (in the
folder format ``evaluate`` reads) say exactly where every shape is."""

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import spritesets  # noqa: E402

from inverse_air.folders import ImageFolder  # noqa: E402


@pytest.mark.parametrize("name", sorted(spritesets.GENERATORS))
def test_labels_read_by_the_folder_format_box_every_shape_and_nothing_else(name, tmp_path):
    """Every pixel off the background lies in a labelled box, every box holds some, boxes keep a
    pixel apart, sides lie in the generator's range; ImageFolder reads the counts and boxes
    (boxes to 1e-4: the labels are rounded to 5 decimals)."""
    generator = spritesets.GENERATORS[name]
    folder = spritesets.make_folder(generator, tmp_path / name, tmp_path / name / "labels.jsonl", 40, seed=3)
    read = ImageFolder(folder, "2d", notice=lambda text: None)
    assert read.images.shape == (40, 64, 64, 3)
    counts, boxes = read.labels["count"], read.labels["box"]
    assert set(counts.tolist()) <= set(range(5)) and len(set(counts.tolist())) >= 4
    lo, hi = generator.sides
    for image, count, box in zip(read.images, counts, boxes):
        off = (image.astype(int) != generator.background).any(-1)
        inside = np.zeros_like(off)
        rects = []
        for scale, x, y in box[:count]:
            side = scale * 64
            left, top = (x + 1) * 32 - side / 2, (y + 1) * 32 - side / 2
            assert abs(side - round(side)) < 1e-3 and lo <= round(side) <= hi
            l, t, s = round(left), round(top), round(side)
            assert abs(left - l) < 1e-3 and abs(top - t) < 1e-3
            assert off[t:t + s, l:l + s].sum() >= s  # the shape is there
            inside[t:t + s, l:l + s] = True
            rects.append((l, t, s))
        assert not (off & ~inside).any()  # nothing outside the boxes
        for i, (l, t, s) in enumerate(rects):
            for l2, t2, s2 in rects[i + 1:]:
                assert l + s + 1 <= l2 or l2 + s2 + 1 <= l or t + s + 1 <= t2 or t2 + s2 + 1 <= t


def test_the_two_generators_differ_in_shapes_sizes_and_colours():
    filled, outlined = spritesets.GENERATORS["filled"], spritesets.GENERATORS["outlined"]
    assert not set(filled.shapes) & set(outlined.shapes)
    assert filled.sides != outlined.sides and min(filled.sides) >= 8 and max(outlined.sides) <= 18
    assert filled.background.tolist() != outlined.background.tolist()


def test_same_seed_same_bytes_and_integer_coverage():
    """Integer code: a seed gives the same bytes (here and, with no float in the pixels, on any
    machine); coverage counts whole sample points."""
    def digest(name, seed):
        rng = np.random.default_rng(seed)
        return hashlib.sha256(b"".join(spritesets.GENERATORS[name].compose(rng, c)[0].tobytes()
                                       for c in (0, 1, 2, 3, 4))).hexdigest()

    for name in spritesets.GENERATORS:
        assert digest(name, 5) == digest(name, 5) != digest(name, 6)
    cover = spritesets.coverage("circle", 10)
    assert cover.dtype == np.int64 and cover.max() == 16 and cover.min() == 0
    assert (spritesets.coverage("square", 9) == 16).all()
    ring = spritesets.coverage("ring", 18)
    assert ring[9, 9] == 0 and ring[9, 0] > 0  # a hole in the middle, the line at the edge
