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


DeviceOption = Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda.")]
PrecisionOption = Annotated[str, typer.Option(
    help="fp32, or bf16 (about 1.6x faster on CPUs with AVX-512 BF16 or AMX; slightly less precise poses).")]
DecomposePrecisionOption = Annotated[str, typer.Option(
    help="auto (bf16 for batches of 16 or more on CPUs with native bf16, fp32 otherwise), fp32 or bf16.")]


def check_precision(precision: str) -> None:
    if precision not in ("fp32", "bf16"):
        raise UserError(f"--precision must be fp32 or bf16, got {precision!r}")


def parse_range(text: str) -> tuple[int, int]:
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"--shard-range: expected START:STOP like 0:10, got {text!r}") from None
    return start, stop


@app.command("render-scene")
@user_errors
def render_scene(
    scene: Annotated[Path, typer.Argument(help="Scene file (JSON), e.g. scenes/two_objects.json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    image_size: Annotated[Optional[int], typer.Option(help="Image size in pixels [default: the render config's].")] = None,
):
    """Render one scene file to a PNG."""
    from .data import check_image_size
    from .files import write_png
    from .objects3d.config import RenderConfig
    from .objects3d.scene import load_scene

    config = RenderConfig()
    if image_size is not None:
        check_image_size(image_size)
        config = dataclasses.replace(config, image_size=image_size)
    parsed = load_scene(scene, config.object_scale)
    from .objects3d.render3d import SceneRenderer

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
    shard_range: Annotated[Optional[str], typer.Option(help="Only shards START:STOP (half-open), one part of a dataset split over machines.")] = None,
    fix: Annotated[Optional[str], typer.Option(help="3D: keep these at the render config's value instead of varying them per scene, e.g. camera,light (of camera, light, ground, color, size).")] = None,
    fixed_appearance: Annotated[bool, typer.Option("--fixed-appearance", help="3D: vary nothing of the look (today's fixed camera, light, ground, colour and size).")] = False,
):
    """Render (3D) or compose (2D) a dataset with full ground truth."""
    from .data import ShardDataset, render_dataset as run
    from .kinds import get_kind

    config = dataclasses.replace(get_kind(model).dataset, num=num, seed=seed, split=split)
    if counts is not None:
        config = dataclasses.replace(config, counts=parse_counts(counts))
    if shard_size is not None:
        config = dataclasses.replace(config, shard_size=shard_size)
    if image_size is not None:
        config = dataclasses.replace(config, scenes=config.scenes.with_image_size(image_size))
    if mnist is not None:
        if not hasattr(config.scenes, "mnist"):
            raise UserError(f"--mnist: a {model} dataset draws no digits")
        config = dataclasses.replace(config, scenes=dataclasses.replace(config.scenes, mnist=str(mnist)))
    if fix is not None or fixed_appearance:
        if not hasattr(config.scenes, "variation"):
            raise UserError(f"--fix / --fixed-appearance: nothing of a {model} scene's look varies")
        variation = config.scenes.variation
        try:
            variation = variation.fixing(variation.varied if fixed_appearance else
                                         [f.strip() for f in (fix or "").split(",") if f.strip()])
        except ValueError as e:
            raise UserError(f"--fix: {e}") from None
        config = dataclasses.replace(config, scenes=dataclasses.replace(config.scenes, variation=variation))
    out = run(out_dir, config, workers=workers, shard_range=parse_range(shard_range) if shard_range else None)
    if ShardDataset.is_complete(out):
        typer.echo(f"dataset ready: {out} ({config.num} scenes)", err=True)
    else:
        typer.echo(f"shards {shard_range} ready in {out}; the dataset is complete once every part's "
                   f"shard files are in one directory (see README, 'Scaling up')", err=True)


@app.command("train")
@user_errors
def train(
    data: Annotated[Path, typer.Option(help="Training dataset directory (from render-dataset).")],
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint.pt, metrics.jsonl, tb/, images/.")],
    model: Annotated[str, typer.Option(help="'3d' (PyTorch3D renderer) or '2d' (multi-MNIST, learned decoder); picks the presets.")] = "3d",
    steps: Annotated[Optional[int], typer.Option(help="Total optimizer steps [default: the model's preset].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per sleep/supervised step.")] = None,
    elbo_batch_size: Annotated[Optional[int], typer.Option(help="Images per ELBO step.")] = None,
    sleep_fraction: Annotated[Optional[float], typer.Option(help="Fraction of steps in the sleep phase (3D only).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of initialization, batches and samples.")] = None,
    dair: Annotated[Optional[bool], typer.Option("--dair/--no-dair", help="DAIR: steps also see the image minus the reconstruction so far [default: the model's preset].")] = None,
    count_prior: Annotated[str, typer.Option(help="Prior over object counts: 'dataset' (uniform over the counts the training set holds) or 'uniform' (over every count the model can infer, 0-3).")] = "dataset",
    supervised: Annotated[bool, typer.Option("--supervised", help="Train on the dataset's labels (supervised comparison).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    device: DeviceOption = "auto",
):
    """Train AIR on a dataset (unsupervised by default)."""
    from .train import run_config_for, train as run

    overrides = {k: v for k, v in dict(steps=steps, batch_size=batch_size, elbo_batch_size=elbo_batch_size,
                                       sleep_fraction=sleep_fraction, seed=seed).items() if v is not None}
    if supervised:
        overrides["supervised"] = True
    config = run_config_for(data, model, overrides, {} if dair is None else {"dair": dair}, count_prior)
    last = run(config, out, resume=resume, progress=not quiet, device=device)
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float))
    typer.echo(f"trained to step {last.get('step')}: {summary}; checkpoint {out / 'checkpoint.pt'}", err=True)


@app.command("evaluate")
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pt from a training run.")],
    data: Annotated[Path, typer.Option(help="Labelled dataset directory (e.g. a held-out test set).")],
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 256,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    precision: PrecisionOption = "fp32",
    device: DeviceOption = "auto",
):
    """Count accuracy (with confusion matrix), object and pose/window errors of a checkpoint on a
    dataset, and inference speed."""
    import json

    from .evaluate import evaluate as run

    check_precision(precision)
    metrics = run(checkpoint, data, batch_size=batch_size, device=device, precision=precision)
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
        return
    for line in format_metrics(metrics):
        typer.echo(line)


@app.command("decompose")
@user_errors
def decompose(
    images: Annotated[list[Path], typer.Argument(help="Image files or directories of images (PNG, JPEG, BMP).")],
    model: Annotated[Optional[str], typer.Option(help="A checkpoint, or '3d' / '2d' for the shipped models [default: 3d].")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout (JSON Lines).")] = False,
    overlay: Annotated[Optional[Path], typer.Option(help="PNG: input, reconstruction and outlined objects per image.")] = None,
    refine: Annotated[int, typer.Option(help="Gradient steps on the pose through the soft renderer after inference.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 256,
    precision: DecomposePrecisionOption = "auto",
    device: DeviceOption = "auto",
):
    """Count, identify and locate the objects in images with a trained AIR model."""
    import json

    from .decompose import Decomposer, expand_inputs, resolve_model
    from .distributed import resolve_device

    if refine < 0 or batch_size < 1:
        raise UserError("--refine must be >= 0 and --batch-size >= 1")
    if overlay is not None and not overlay.resolve().parent.is_dir():
        raise UserError(f"--overlay {overlay}: directory {overlay.parent} does not exist")
    decomposer = Decomposer(resolve_model(model), device=resolve_device(device), precision=precision)
    paths = expand_inputs(images)
    if not paths:
        raise UserError("no image files in the given directories")
    keep = OVERLAY_MAX_IMAGES if overlay else 0
    results, pictures = decomposer.run(paths, batch_size=batch_size, refine=refine, keep=keep)
    for r in results:
        for notice in r.notices:
            typer.echo(f"notice: {r.path}: {notice}", err=True)
        if r.error is not None:
            typer.echo(f"error: {r.error}", err=True)
        if json_out:
            typer.echo(json.dumps(r.to_json()))
        elif r.result is not None:
            for line in format_decomposition(r.path, r.result):
                typer.echo(line)
    if overlay and pictures:
        from .files import write_png
        from .viz import overlay_figure

        write_png(overlay, overlay_figure(**pictures))
        shown = len(pictures["inputs"])
        more = f" (the first {shown} of {sum(r.error is None for r in results)})" if shown == OVERLAY_MAX_IMAGES else ""
        typer.echo(f"wrote {overlay}{more}", err=True)
    if any(r.error is not None for r in results):
        raise typer.Exit(1)


OVERLAY_MAX_IMAGES = 32
"""Rows of a ``decompose --overlay`` figure (the first images of a larger batch)."""


def format_decomposition(path: str, result: dict) -> list[str]:
    """One image's decomposition for people (each present step as its kind writes it)."""
    from .kinds import KINDS

    kind = KINDS[result["model"]]
    step_text = kind.step_text
    n = result["count"]
    lines = [f"{path}: {n} object{'' if n == 1 else 's'}", *kind.look_text(result)]
    for step in result["steps"]:
        head = f"  step {step['step']}  p(present) {step['presence_prob']:.2f}"
        lines.append(f"{head}  {step_text(step) if step['present'] else '(stop)'}")
    if "reconstruction_error" in result:
        e = result["reconstruction_error"]
        fell = 100.0 * (1 - e["after"] / e["before"]) if e["before"] > 0 else 0.0
        lines.append(f"  refine: reconstruction error {e['before']:.5f} -> {e['after']:.5f} ({fell:.1f}% lower)")
    return lines


def format_metrics(m: dict) -> list[str]:
    """Evaluate's metrics for people (the kind's own lines from ``Kind.metric_lines``)."""
    from .kinds import KINDS

    def num(value, fmt):
        return "n/a" if value is None else format(value, fmt)

    lines = [f"scenes             {m['num_scenes']}",
             f"count accuracy     {num(m['count_accuracy'], '.2%')}",
             "count confusion    (rows: true count, columns: inferred)"]
    lines += ["  " + " ".join(f"{v:6d}" for v in row) for row in m["confusion"]]
    lines.append(f"matched objects    {m['matched_objects']} (on correctly counted scenes)")
    lines += KINDS[m["model"]].metric_lines(m)
    lines.append(f"inference          {num(m['images_per_s'], ',.0f')} images/s (batch {m['batch_size']}, {m['threads']} threads)")
    return lines


def main() -> None:
    app()
