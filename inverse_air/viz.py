"""Pictures: grids of images for previews, training snapshots and decompose overlays (numpy only)."""

from __future__ import annotations

import numpy as np


def image_grid(images: np.ndarray, columns: int = 8, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile ``(N, H, W, C)`` uint8 images into one ``(rows*(H+pad)+pad, columns*(W+pad)+pad, C)``
    image, left to right then top to bottom, with ``pad`` pixels of ``pad_value`` between."""
    N, H, W, C = images.shape
    columns = max(1, min(columns, N))
    rows = max(1, -(-N // columns))
    grid = np.full((rows * (H + pad) + pad, columns * (W + pad) + pad, C), pad_value, dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = pad + r * (H + pad), pad + c * (W + pad)
        grid[top:top + H, left:left + W] = image
    return grid


STEP_COLORS = np.array([[230, 40, 40], [40, 200, 40], [50, 90, 255], [230, 200, 40], [200, 40, 230]],
                       dtype=np.uint8)
"""Colours of inference steps 1, 2, 3, ... in pictures (red, green, blue, as in the paper)."""


def frame(image: np.ndarray, color: np.ndarray, width: int = 1) -> np.ndarray:
    """A copy of ``(H, W, 3)`` uint8 ``image`` with a ``width``-pixel border of ``color``."""
    out = image.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def decomposition_figure(inputs: np.ndarray, recons: np.ndarray, steps: np.ndarray,
                         present: np.ndarray, scale: int = 2) -> np.ndarray:
    """One row per image: input, reconstruction, then each step's object alone, framed in its
    step colour when present (grey when absent).

    Args:
        inputs, recons: ``(B, H, W, 3)`` uint8.
        steps: ``(B, N, H, W, 3)`` uint8, each step's object rendered alone.
        present: ``(B, N)`` bool.
        scale: integer upscaling of the whole figure (small images are hard to see).
    """
    B, N = present.shape
    if inputs.shape[-1] == 1:  # grey images: show as RGB so frames can be coloured
        inputs, recons, steps = (np.repeat(a, 3, axis=-1) for a in (inputs, recons, steps))
    tiles = []
    for b in range(B):
        tiles += [inputs[b], recons[b]]
        for i in range(N):
            color = STEP_COLORS[i % len(STEP_COLORS)] if present[b, i] else np.array([128, 128, 128], np.uint8)
            tiles.append(frame(steps[b, i], color))
    grid = image_grid(np.stack(tiles), columns=N + 2)
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The boundary of a boolean ``(H, W)`` mask: its pixels within ``width`` pixels (4-neighbour
    steps) of a pixel outside it (the image border counts as outside)."""
    inside = mask.copy()
    for _ in range(width):
        padded = np.pad(inside, 1, constant_values=False)
        inside = (inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inside


def overlay_figure(inputs: np.ndarray, recons: np.ndarray, masks: np.ndarray, present: np.ndarray,
                   scale: int = 4) -> np.ndarray:
    """One row per image: the input, the reconstruction, and the input with each present
    object outlined in its step's colour (red, green, blue for steps 1-3).

    Args:
        inputs, recons: ``(B, H, W, C)`` uint8 (C = 1 or 3).
        masks: ``(B, N, H, W)`` bool, where each step's object is drawn.
        present: ``(B, N)`` bool.
        scale: integer upscaling (outlines are drawn at the upscaled size, 2 pixels wide).

    Returns:
        ``(rows, columns, 3)`` uint8.
    """
    if inputs.shape[-1] == 1:
        inputs, recons = np.repeat(inputs, 3, axis=-1), np.repeat(recons, 3, axis=-1)
    up = lambda a: a.repeat(scale, axis=-3).repeat(scale, axis=-2)
    tiles = []
    for b in range(len(inputs)):
        drawn = up(inputs[b]).copy()
        for i in np.flatnonzero(present[b]):
            edge = outline(up(masks[b, i][..., None])[..., 0], width=2)
            drawn[edge] = STEP_COLORS[i % len(STEP_COLORS)]
        tiles += [up(inputs[b]), up(recons[b]), drawn]
    return image_grid(np.stack(tiles), columns=3, pad=2 * scale)


def draw_windows(image: np.ndarray, boxes: np.ndarray, present: np.ndarray) -> np.ndarray:
    """A copy of ``(H, W, 3)`` uint8 ``image`` with the 2D windows ``boxes (N, 3)`` (scale, x, y;
    box convention in :mod:`inverse_air.objects2d.render2d`) outlined in their step's colour where
    ``present (N,)``."""
    out = image.copy()
    H, W = image.shape[:2]
    for i, ((scale, x, y), on) in enumerate(zip(boxes, present)):
        if not on:
            continue
        color = STEP_COLORS[i % len(STEP_COLORS)]
        # The window spans x - scale .. x + scale in coordinates where the canvas spans 2.
        left, right = int(round((x - scale + 1) * W / 2)), int(round((x + scale + 1) * W / 2)) - 1
        top, bottom = int(round((y - scale + 1) * H / 2)), int(round((y + scale + 1) * H / 2)) - 1
        cols = np.arange(max(left, 0), min(right, W - 1) + 1)
        rows = np.arange(max(top, 0), min(bottom, H - 1) + 1)
        for r in (top, bottom):
            if 0 <= r < H:
                out[r, cols] = color
        for c in (left, right):
            if 0 <= c < W:
                out[rows, c] = color
    return out


def windows_figure(inputs: np.ndarray, recons: np.ndarray, boxes: np.ndarray, present: np.ndarray,
                   columns: int = 8, scale: int = 3) -> np.ndarray:
    """The paper's 2D figure: for each image, the input with its inferred windows outlined in
    step colours (red, green, blue), and below it the reconstruction with the same windows.

    Args:
        inputs, recons: ``(B, H, W, C)`` uint8 (C = 1 or 3).
        boxes: ``(B, N, 3)`` inferred windows; present: ``(B, N)`` bool.
    """
    if inputs.shape[-1] == 1:
        inputs, recons = np.repeat(inputs, 3, axis=-1), np.repeat(recons, 3, axis=-1)
    big = lambda a: a.repeat(scale, axis=0).repeat(scale, axis=1)
    tiles_in = [draw_windows(big(x), b, p) for x, b, p in zip(inputs, boxes, present)]
    tiles_out = [draw_windows(big(x), b, p) for x, b, p in zip(recons, boxes, present)]
    return _paired_rows(tiles_in, tiles_out, columns)


def outlines_figure(inputs: np.ndarray, recons: np.ndarray, masks: np.ndarray, present: np.ndarray,
                    columns: int = 8, scale: int = 3) -> np.ndarray:
    """For each image, the input with each inferred object's outline in its step's colour
    (red, green, blue, ...), and below it the reconstruction with the same outlines: what
    ``train`` draws every ``image_every`` steps, for any kind.

    Args:
        inputs, recons: ``(B, H, W, C)`` uint8 (C = 1 or 3).
        masks: ``(B, N, H, W)`` bool, where each step's object is (2D: its window; 3D: its
            silhouette; :meth:`~inverse_air.object_model.ObjectModel.outline_masks`).
        present: ``(B, N)`` bool.
        columns: images per row; scale: integer upscaling (outlines 1 upscaled pixel wide).
    """
    if inputs.shape[-1] == 1:
        inputs, recons = np.repeat(inputs, 3, axis=-1), np.repeat(recons, 3, axis=-1)
    up = lambda a: a.repeat(scale, axis=-3).repeat(scale, axis=-2)

    def outlined(image: np.ndarray, b: int) -> np.ndarray:
        drawn = up(image).copy()
        for i in np.flatnonzero(present[b]):
            drawn[outline(up(masks[b, i][..., None])[..., 0], width=1)] = STEP_COLORS[i % len(STEP_COLORS)]
        return drawn

    return _paired_rows([outlined(x, b) for b, x in enumerate(inputs)],
                        [outlined(r, b) for b, r in enumerate(recons)], columns)


def _paired_rows(tiles_in: list[np.ndarray], tiles_out: list[np.ndarray], columns: int) -> np.ndarray:
    """A grid of rows of ``columns`` input tiles, each row followed by the row of their
    reconstruction tiles."""
    columns = max(1, min(columns, len(tiles_in)))
    blank = np.zeros_like(tiles_in[0])
    while len(tiles_in) % columns:  # full rows, so inputs and reconstructions stay paired
        tiles_in.append(blank)
        tiles_out.append(blank)
    tiles = []
    for start in range(0, len(tiles_in), columns):
        tiles += tiles_in[start:start + columns] + tiles_out[start:start + columns]
    return image_grid(np.stack(tiles), columns=columns)
