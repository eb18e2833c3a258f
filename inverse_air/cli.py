"""The ``inverse-air`` command line: parse, build a config, call one library function, print.

Exit status: 0 on success, 1 on a user error (one line on stderr naming the bad input),
2 on a usage error (typer's own).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Inverse graphics with Attend, Infer, Repeat (AIR).")


def user_errors(fn):
    """Turn :class:`UserError` into one line on stderr and exit status 1 (Ctrl-C: 130)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished files are kept; run the same command again to resume",
                       err=True)
            raise typer.Exit(130) from None

    return wrapper


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--counts: expected comma-separated integers like 0,1,2, got {text!r}") from None
    if not counts:
        raise UserError(f"--counts: expected comma-separated integers like 0,1,2, got {text!r}")
    return tuple(counts)


@app.command("render-scene")
@user_errors
def render_scene(
    scene: Annotated[Path, typer.Argument(help="Scene file (JSON), e.g. scenes/two_objects.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    image_size: Annotated[Optional[int], typer.Option(help="Image size in pixels [default: the render config's].")] = None,
):
    """Render one scene file to a PNG."""
    from .config import RenderConfig
    from .data import check_image_size
    from .imageio_utils import write_png
    from .scene import load_scene

    config = RenderConfig()
    if image_size is not None:
        check_image_size(image_size)
        config = dataclasses.replace(config, image_size=image_size)
    parsed = load_scene(scene, config.object_scale)
    from .render3d import SceneRenderer

    image = SceneRenderer(config).render_scenes([parsed])[0]
    write_png(out, image)
    typer.echo(f"wrote {out} ({len(parsed.objects)} objects, {config.image_size}x{config.image_size})", err=True)


@app.command("render-dataset")
@user_errors
def render_dataset(
    out_dir: Annotated[Path, typer.Argument(help="Dataset directory (created; re-run to resume).")],
    model: Annotated[str, typer.Option(help="'3d' (rendered scenes) or '2d' (multi-MNIST).")] = "3d",
    num: Annotated[int, typer.Option(help="Number of scenes.")] = 1000,
    counts: Annotated[Optional[str], typer.Option(help="Object counts, e.g. 0,1,2,3 [default: 3d 0-3, 2d 0-2].")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Image side in pixels [default: 3d 64, 2d 50].")] = None,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same bytes.")] = 0,
    split: Annotated[str, typer.Option(help="'train' or 'test' (2D: disjoint digit pools).")] = "train",
    mnist: Annotated[Optional[Path], typer.Option(help="Directory of MNIST IDX files (2D) [default: embedded digits].")] = None,
    shard_size: Annotated[Optional[int], typer.Option(help="Scenes per shard file [default: 1000].")] = None,
    workers: Annotated[int, typer.Option(help="Processes rendering shards in parallel.")] = 1,
):
    """Render (3D) or compose (2D) a dataset with full ground truth."""
    from .config import DATASET_PRESETS
    from .data import render_dataset as run

    if model not in DATASET_PRESETS:
        raise UserError(f"--model must be one of {', '.join(DATASET_PRESETS)}, got {model!r}")
    config = dataclasses.replace(DATASET_PRESETS[model], num=num, seed=seed, split=split,
                                 mnist=str(mnist) if mnist else None)
    if counts is not None:
        config = dataclasses.replace(config, counts=parse_counts(counts))
    if shard_size is not None:
        config = dataclasses.replace(config, shard_size=shard_size)
    if image_size is not None:
        if model == "3d":
            config = dataclasses.replace(config, render=dataclasses.replace(config.render, image_size=image_size))
        else:
            config = dataclasses.replace(config, compose=dataclasses.replace(config.compose, canvas_size=image_size))
    out = run(out_dir, config, workers=workers)
    typer.echo(f"dataset ready: {out} ({config.num} scenes)", err=True)


def main() -> None:
    app()
