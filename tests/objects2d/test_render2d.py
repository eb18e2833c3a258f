"""The 2D spatial transformer and decoder: fast crop/paste against slow reference loops that
follow the documented convention, round trips, gradients, and the decoder's output."""

import math

import numpy as np
import pytest
import torch

from inverse_air.objects2d.config import Compose2DConfig
from inverse_air.objects2d.multimnist import Composer, load_digits
from inverse_air.objects2d.render2d import Decoder, crop, paste


# ---------------------------------------------------------------- slow references
def bilinear(image, px, py):
    """Bilinear read of ``image (H, W)`` at pixel coordinates (pixel centres at integers),
    zeros outside."""
    H, W = image.shape
    x0, y0 = math.floor(px), math.floor(py)
    total = 0.0
    for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
        for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
            if 0 <= xi < W and 0 <= yi < H:
                total += wx * wy * float(image[yi, xi])
    return total


def to_pixel(coord, size):
    """Normalized coordinate (-1 and +1 at the outer pixel edges) -> pixel coordinate."""
    return ((coord + 1) * size - 1) / 2


def centre(index, size):
    """Normalized coordinate of pixel ``index``'s centre."""
    return (2 * index + 1) / size - 1


def reference_crop(image, z_where, G):
    B, C, S, _ = image.shape
    out = torch.zeros(B, C, G, G, dtype=image.dtype)
    for b in range(B):
        scale, x, y = (float(v) for v in z_where[b])
        for i in range(G):
            for j in range(G):
                X, Y = x + scale * centre(j, G), y + scale * centre(i, G)
                for c in range(C):
                    out[b, c, i, j] = bilinear(image[b, c], to_pixel(X, S), to_pixel(Y, S))
    return out


def reference_paste(window, z_where, S):
    B, C, G, _ = window.shape
    out = torch.zeros(B, C, S, S, dtype=window.dtype)
    for b in range(B):
        scale, x, y = (float(v) for v in z_where[b])
        for i in range(S):
            for j in range(S):
                u, v = (centre(j, S) - x) / scale, (centre(i, S) - y) / scale
                for c in range(C):
                    out[b, c, i, j] = bilinear(window[b, c], to_pixel(u, G), to_pixel(v, G))
    return out


# A window inside the canvas, one over its right edge, a small one near the top-left corner,
# and one larger than the canvas.
Z_WHERE = torch.tensor([[0.43, 0.1, -0.2], [0.3, 0.9, 0.35], [0.17, -0.8, -0.85], [1.3, 0.05, 0.0]],
                       dtype=torch.float64)


def test_crop_matches_the_reference_loop():
    torch.manual_seed(0)
    image = torch.rand(4, 2, 16, 16, dtype=torch.float64)
    fast = crop(image, Z_WHERE, 7)
    assert fast.shape == (4, 2, 7, 7) and fast.dtype == torch.float64
    assert torch.allclose(fast, reference_crop(image, Z_WHERE, 7), atol=1e-10)


def test_paste_matches_the_reference_loop():
    torch.manual_seed(1)
    window = torch.rand(4, 2, 7, 7, dtype=torch.float64)
    fast = paste(window, Z_WHERE, 16)
    assert fast.shape == (4, 2, 16, 16)
    assert torch.allclose(fast, reference_paste(window, Z_WHERE, 16), atol=1e-10)


def aligned_z_where(left, top, w, S):
    """The box of a ``w``-pixel window at integer ``(left, top)``: its pixels are canvas pixels."""
    return torch.tensor([[w / S, 2 * (left + w / 2) / S - 1, 2 * (top + w / 2) / S - 1]], dtype=torch.float64)


def test_crop_after_paste_returns_the_window():
    torch.manual_seed(2)
    window = torch.rand(1, 1, 10, 10, dtype=torch.float64)
    z_where = aligned_z_where(left=13, top=4, w=10, S=30)
    canvas = paste(window, z_where, 30)
    assert torch.allclose(crop(canvas, z_where, 10), window, atol=1e-12)
    # The canvas holds the window's pixels at (left, top) and nothing else.
    expected = torch.zeros(1, 1, 30, 30, dtype=torch.float64)
    expected[..., 4:14, 13:23] = window
    assert torch.allclose(canvas, expected, atol=1e-12)


def test_paste_after_crop_returns_the_window_of_the_image():
    torch.manual_seed(3)
    image = torch.rand(1, 1, 30, 30, dtype=torch.float64)
    z_where = aligned_z_where(left=2, top=17, w=12, S=30)
    back = paste(crop(image, z_where, 12), z_where, 30)
    inside = torch.zeros_like(image, dtype=torch.bool)
    inside[..., 17:29, 2:14] = True
    assert torch.allclose(back[inside], image[inside], atol=1e-12)
    assert float(back[~inside].abs().max()) < 1e-12


def test_the_convention_is_the_datasets():
    """Cropping a composed canvas at a digit's box, at the box's pixel size, gives back the
    resized digit the composer pasted (multimnist's box convention is the transformer's)."""
    composer = Composer(load_digits("test"), Compose2DConfig())
    rng = np.random.default_rng(4)
    for _ in range(5):
        canvas, boxes, _ = composer.compose(rng, 1)
        scale, x, y = boxes[0]
        w = int(round(scale * 50))
        left = int(round((x + 1) * 50 / 2 - w / 2))
        top = int(round((y + 1) * 50 / 2 - w / 2))
        image = torch.from_numpy(canvas.astype(np.float64))[None, None]
        window = crop(image, torch.tensor(boxes[:1], dtype=torch.float64), w)
        assert torch.allclose(window[0, 0], image[0, 0, top:top + w, left:left + w], atol=1e-3)


@pytest.mark.parametrize("fn, size", [(crop, 5), (paste, 9)])
def test_gradients_match_finite_differences(fn, size):
    torch.manual_seed(5)
    source = torch.rand(2, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    # Off the pixel grid: bilinear sampling has kinks where a sample crosses a pixel centre.
    z_where = torch.tensor([[0.61, 0.13, -0.07], [0.47, -0.21, 0.18]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, z: fn(s, z, size), (source, z_where), eps=1e-6, atol=1e-5)


def test_tiny_or_negative_scales_do_not_blow_up():
    window = torch.ones(2, 1, 4, 4)
    z_where = torch.tensor([[0.0, 0.0, 0.0], [-0.3, 0.0, 0.0]])
    canvas = paste(window, z_where, 20)
    assert bool(torch.isfinite(canvas).all()) and float(canvas.max()) <= 1.0


def test_decoder_output_is_a_window_in_0_1_that_starts_faint():
    torch.manual_seed(6)
    decoder = Decoder(z_what_size=50, hidden=200, window_size=28)
    z_what = torch.randn(64, 50)
    window = decoder(z_what).detach()
    assert window.shape == (64, 1, 28, 28)
    assert float(window.min()) >= 0.0 and float(window.max()) <= 1.0
    # Output bias -2: sigmoid(-2) = 0.12 per pixel before training.
    assert abs(float(window.mean()) - 1 / (1 + math.exp(2))) < 0.05
    # Even extreme codes stay in range.
    extreme = decoder(1e3 * torch.randn(8, 50))
    assert float(extreme.min()) >= 0.0 and float(extreme.max()) <= 1.0
    decoder(z_what).sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in decoder.parameters())
