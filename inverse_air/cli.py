"""The ``inverse-air`` command line: parse, build a config, call one library function, print.

Exit status: 0 on success, 1 on a user error (one line on stderr naming the bad input),
2 on a usage error (typer's own: an unknown option, a value not among an option's choices),
130 on Ctrl-C and 143 on SIGTERM (work finished so far is kept).

Option defaults that come from a kind's presets are shown as the presets' values; every
other default is typer's, shown by ``--help``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .config import FLAG_NAMES, SPLITS, ConfigError
from .errors import Terminated, UserError, printable
from .kinds import KINDS

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Inverse graphics with Attend, Infer, Repeat (AIR).")


def _version(value: bool) -> None:
    if value:
        say(f"inverse-air {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
):
    """Inverse graphics with Attend, Infer, Repeat (AIR)."""


# ---------------------------------------------------------------------------- choices
def choices(name: str, values) -> type[Enum]:
    """An enum of ``values`` (strings), so that typer checks an option's value and ``--help``
    lists them."""
    return Enum(name, {value: value for value in values}, type=str)


# The library's own tuples, written here too because those modules import torch (the CLI's help
# must stay quick); tests/test_cli.py checks that they agree.
Model = choices("Model", KINDS)
Device = choices("Device", ("auto", "cpu", "cuda"))  # distributed.resolve_device
Precision = choices("Precision", ("fp32", "bf16"))  # air.PRECISIONS
DecomposePrecision = choices("DecomposePrecision", ("auto", "fp32", "bf16"))  # decompose.PRECISIONS
Split = choices("Split", SPLITS)
CountPrior = choices("CountPrior", ("dataset", "uniform", "geometric"))  # plan.COUNT_PRIORS


def presets(value) -> str:
    """``[default: ...]`` text of a setting the kind's presets give, e.g. "the 3d preset's
    5000, the 2d preset's 25000"."""
    values = {name: value(KINDS[name]) for name in KINDS}
    if len(set(map(str, values.values()))) == 1:
        return f"{next(iter(values.values()))}, every kind's preset"
    return ", ".join(f"the {name} preset's {v}" for name, v in values.items())


def path_param(name: str) -> dict:
    """Settings of a path argument or option (``name``, as the messages call it): the text as
    given becomes a ``Path``, whatever the file is: what is wrong with it (missing, unreadable)
    is the command's one `error:` line with exit status 1, not a usage error of click's; an
    empty text is refused in one line (``Path("")`` would silently be the current directory)."""

    def parse(text: str) -> Path:
        if text == "":
            say(f"error: {name}: an empty path; give a file or directory", err=True)
            raise typer.Exit(1)
        return Path(text)

    return dict(parser=parse)


DeviceOption = Annotated[Device, typer.Option(help="auto (CUDA if available), cpu or cuda.")]
PrecisionOption = Annotated[Precision, typer.Option(
    help="fp32, or bf16 (about 1.6x faster on CPUs with AVX-512 BF16 or AMX; slightly less precise poses).")]
DecomposePrecisionOption = Annotated[DecomposePrecision, typer.Option(
    help="auto (bf16 for batches of 16 or more on CPUs with native bf16, fp32 otherwise), fp32 or bf16.")]


# ---------------------------------------------------------------------------- output
def say(text: str, err: bool = False) -> None:
    """One line for people, on stdout (or stderr): file names in it are :func:`printable`, so
    that a name with a newline or a terminal escape can neither break the line nor forge
    another. (JSON output is escaped by ``json.dumps``.)"""
    typer.echo(printable(text), err=err)


# ---------------------------------------------------------------------------- errors
def user_errors(fn):
    """Turn :class:`UserError` into one line on stderr and exit status 1 (a config value out of
    range is named by the command's flag that set it); Ctrl-C: 130, SIGTERM: 143."""
    flags = set(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            name = FLAG_NAMES.get(e.field, e.field)
            where = f"--{name.replace('_', '-')}" if name in flags else e.path
            say(f"error: {where} {e.problem}", err=True)
            raise typer.Exit(1) from None
        except UserError as e:
            say(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            what = "terminated" if isinstance(e, Terminated) else "interrupted"
            say(f"{what}: finished files are kept; run the same command again to resume", err=True)
            raise typer.Exit(143 if isinstance(e, Terminated) else 130) from None

    return wrapper


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--counts: expected comma-separated integers like 0,1,2, got {text!r}") from None
    if not counts:
        raise UserError(f"--counts: expected comma-separated integers like 0,1,2, got {text!r}")
    return tuple(counts)


def parse_range(text: str) -> tuple[int, int]:
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"--shard-range: expected START:STOP like 0:10, got {text!r}") from None
    return start, stop


# ---------------------------------------------------------------------------- commands
@app.command("render-scene")
@user_errors
def render_scene(
    scene: Annotated[Path, typer.Argument(help="Scene file (JSON), e.g. scenes/two_objects.json.",
                                          **path_param("SCENE"))],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file to write: PNG, JPEG or BMP, as its suffix says.",
                                       **path_param("-o"))],
    image_size: Annotated[Optional[int], typer.Option(
        help="Image size in pixels, 8 to 1024.", show_default="the render config's 64")] = None,
    model: Annotated[Model, typer.Option(help="The kind whose scene file SCENE is (" + ", ".join(
        k for k in KINDS if KINDS[k].render_scene) + ").")] = "3d",
):
    """Render one scene file to an image (PNG, JPEG or BMP)."""
    from .files import check_image_output, write_image
    from .kinds import get_kind

    kind = get_kind(model.value)
    if kind.render_scene is None:
        raise UserError(f"--model {kind.name}: this kind has no scene files (render-scene draws those of "
                        f"{', '.join(k for k in KINDS if KINDS[k].render_scene)})")
    check_image_output(out, "-o", inputs=[scene])
    image, count = kind.render_scene(scene, image_size)
    write_image(out, image)
    say(f"wrote {out} ({count} objects, {image.shape[1]}x{image.shape[0]})", err=True)


@app.command("render-dataset")
@user_errors
def render_dataset(
    out_dir: Annotated[Path, typer.Argument(help="Dataset directory (created; re-run to resume).",
                                            **path_param("OUT_DIR"))],
    model: Annotated[Model, typer.Option(help="The kind of scenes: " + "; ".join(
        f"{k}: {KINDS[k].summary}" for k in KINDS) + ".")] = "3d",
    num: Annotated[Optional[int], typer.Option(
        help="Number of scenes.", show_default=presets(lambda k: k.dataset.num))] = None,
    counts: Annotated[Optional[str], typer.Option(
        help="Object counts, e.g. 0,1,2,3.", show_default=presets(lambda k: ",".join(map(str, k.dataset.counts))))] = None,
    image_size: Annotated[Optional[int], typer.Option(
        help="Image side in pixels.", show_default=presets(lambda k: k.dataset.scenes.image_size))] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed (0 to 2^63-1); the same seed gives the same bytes.", show_default=presets(lambda k: k.dataset.seed))] = None,
    split: Annotated[Optional[Split], typer.Option(
        help="2D: disjoint digit pools; 3D: recorded only.", show_default=presets(lambda k: k.dataset.split))] = None,
    mnist: Annotated[Optional[Path], typer.Option(
        help="Directory of MNIST IDX files (2D).", show_default="the 5,000 embedded digits",
        **path_param("--mnist"))] = None,
    shard_size: Annotated[Optional[int], typer.Option(
        help="Scenes per shard file.", show_default=presets(lambda k: k.dataset.shard_size))] = None,
    workers: Annotated[int, typer.Option(help="Processes rendering shards in parallel (at most the CPU cores).")] = 1,
    shard_range: Annotated[Optional[str], typer.Option(
        help="Only shards START:STOP (half-open), one part of a dataset split over machines.",
        show_default="every shard")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar and no 'dataset ready' line.")] = False,
    fix: Annotated[Optional[str], typer.Option(
        help="3D: keep these at the render config's value instead of varying them per scene, e.g. camera,light "
             "(of camera, light, ground, color, size).", show_default="none: the preset's look varies")] = None,
    fixed_appearance: Annotated[bool, typer.Option(
        "--fixed-appearance", help="3D: vary nothing of the look (today's fixed camera, light, ground, colour and size).")] = False,
):
    """Render (3D) or compose (2D) a dataset with full ground truth."""
    from .data import ShardDataset, render_dataset as run

    preset = KINDS[Model(model).value].dataset
    scenes = preset.scenes if image_size is None else preset.scenes.with_image_size(image_size)
    if mnist is not None:
        if not hasattr(scenes, "mnist"):
            raise UserError(f"--mnist: a {Model(model).value} dataset draws no digits")
        scenes = dataclasses.replace(scenes, mnist=str(mnist))
    if fix is not None or fixed_appearance:
        if not hasattr(scenes, "variation"):
            raise UserError(f"--fix / --fixed-appearance: nothing of a {Model(model).value} scene's look varies")
        variation = scenes.variation
        try:
            variation = variation.fixing(variation.varied if fixed_appearance else
                                         [f.strip() for f in (fix or "").split(",") if f.strip()])
        except ValueError as e:
            raise UserError(f"--fix: {e}") from None
        scenes = dataclasses.replace(scenes, variation=variation)
    given = dict(num=num, seed=seed, split=None if split is None else Split(split).value, shard_size=shard_size,
                 counts=None if counts is None else parse_counts(counts))
    config = dataclasses.replace(preset, scenes=scenes, **{k: v for k, v in given.items() if v is not None})
    out = run(out_dir, config, workers=workers, progress=not quiet,
              shard_range=parse_range(shard_range) if shard_range else None)
    if quiet:
        return
    if ShardDataset.is_complete(out):
        say(f"dataset ready: {out} ({config.num} scenes)", err=True)
    else:
        say(f"shards {shard_range} ready in {out}; the dataset is complete once every part's "
            f"shard files are in one directory (see docs/scaling.md)", err=True)


@app.command("train")
@user_errors
def train(
    out: Annotated[Path, typer.Option(
        help="Run directory (a new or empty folder, or a run's): checkpoint.pt, best.pt (a folder of images: the "
             "model of the best held-out ELBO), metrics.jsonl, tb/, images/.",
        **path_param("--out"))],
    data: Annotated[Optional[Path], typer.Option(
        help="A dataset directory (from render-dataset) or a folder of images (PNG, JPEG, BMP; any size, grey or "
             "RGB; an optional labels.jsonl only reports count accuracy); required for a new run.",
        show_default="with --resume, the run's", **path_param("--data"))] = None,
    model: Annotated[Optional[Model], typer.Option(
        help="The kind of model; picks the presets.", show_default="3d; with --init or --resume, the checkpoint's")] = None,
    init: Annotated[Optional[Path], typer.Option(
        help="Start from this checkpoint's model (e.g. a shipped one) and train it on --data from step 0 with a new "
             "optimizer, ELBO only unless --sleep-fraction says otherwise.", show_default="a new model",
        **path_param("--init"))] = None,
    max_objects: Annotated[Optional[int], typer.Option(
        help="The most objects the model finds in one image, 1 to 8.", show_default=presets(lambda k: k.air.max_steps))] = None,
    image_size: Annotated[Optional[int], typer.Option(
        help="A folder's images are brought to this side in pixels (non-square ones padded to a square first).",
        show_default="the median of the images' longer sides, within 16-128")] = None,
    object_size: Annotated[Optional[float], typer.Option(
        help="2D: the prior mean of an object's window side, in pixels.", show_default="a quarter of the image side")] = None,
    window_size: Annotated[Optional[int], typer.Option(
        help="2D: the side in pixels of the window the decoder draws (the glimpse reads the object size).",
        show_default="1.5 times the object size, within 12-32")] = None,
    steps: Annotated[Optional[int], typer.Option(
        help="Total optimizer steps (all phases).", show_default=presets(lambda k: k.train.steps))] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Images per sleep/supervised step.", show_default=presets(lambda k: k.train.batch_size))] = None,
    elbo_batch_size: Annotated[Optional[int], typer.Option(
        help="Images per ELBO step.", show_default=presets(lambda k: k.train.elbo_batch_size))] = None,
    sleep_fraction: Annotated[Optional[float], typer.Option(
        help="Fraction of steps in the sleep phase (3D only), 0 to 1.",
        show_default=presets(lambda k: k.train.sleep_fraction))] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of initialization, batches and samples.", show_default=presets(lambda k: k.train.seed))] = None,
    dair: Annotated[Optional[bool], typer.Option(
        "--dair/--no-dair", help="DAIR: steps also see the image minus the reconstruction so far.",
        show_default=presets(lambda k: "--dair" if k.air.dair else "--no-dair"))] = None,
    count_prior: Annotated[Optional[CountPrior], typer.Option(
        help="Prior over object counts: 'dataset' (uniform over the counts the training set holds, or a folder's "
             "labels), 'uniform' (over every count the model can infer, 0 to --max-objects) or 'geometric' "
             "(each object costs the same: P(n) proportional to r^n; r = 0.01 for 3d, 1e-10 for 2d).",
        show_default="dataset; for a folder of images, 2d geometric, 3d uniform; with --init, the checkpoint's")] = None,
    supervised: Annotated[bool, typer.Option("--supervised", help="Train on the dataset's labels (supervised comparison).")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out where it stopped (every setting but --steps is the run's).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    device: DeviceOption = "auto",
):
    """Train AIR on a dataset or a folder of images (unsupervised by default)."""
    import os

    from .plan import prepare_run, resume_config
    from .train import train as run

    overrides = {k: v for k, v in dict(steps=steps, batch_size=batch_size, elbo_batch_size=elbo_batch_size,
                                       sleep_fraction=sleep_fraction, seed=seed).items() if v is not None}
    if supervised:
        overrides["supervised"] = True
    air = {k: v for k, v in dict(dair=dair, max_steps=max_objects).items() if v is not None}
    sizes = dict(image_size=image_size, object_size=object_size, window_size=window_size)
    prior = None if count_prior is None else CountPrior(count_prior).value
    kind = None if model is None else Model(model).value
    dataset = None
    if resume:
        config = resume_config(out, data, kind, overrides, air, prior, init, **sizes)
    else:
        if data is None:
            raise UserError("--data is required for a new run (with --resume, the run's dataset is used)")
        config, dataset = prepare_run(data, kind, overrides, air, prior, init=init, progress=not quiet, **sizes)
    last = run(config, out, resume=resume, progress=not quiet, device=Device(device).value, dataset=dataset)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float))
    say(f"trained to step {last['step']}{': ' + summary if summary else ''}; "
               f"checkpoint {out / 'checkpoint.pt'}", err=True)


@app.command("evaluate")
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pt from a training run.",
                                               **path_param("CHECKPOINT"))],
    data: Annotated[Path, typer.Option(
        help="A labelled dataset directory (e.g. a held-out test set), or a folder of images: scored on the images "
             "its labels.jsonl names; without one, the inferred counts and the ELBO.", **path_param("--data"))],
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 256,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    precision: PrecisionOption = "fp32",
    device: DeviceOption = "auto",
    refine: Annotated[int, typer.Option(
        help="Score the answers of decompose --refine with this many gradient steps (0: the amortized pass "
             "alone); the speed then includes the refinement.")] = 0,
):
    """Count accuracy (with confusion matrix), object and pose/window errors of a checkpoint on a
    dataset, and inference speed."""
    import json

    from .evaluate import evaluate as run

    metrics = run(checkpoint, data, batch_size=batch_size, device=Device(device).value,
                  precision=Precision(precision).value, refine=refine)
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
        return
    for line in format_metrics(metrics):
        say(line)


@app.command("decompose")
@user_errors
def decompose(
    images: Annotated[list[Path], typer.Argument(help="Image files or directories of images (PNG, JPEG, BMP).",
                                                 **path_param("IMAGES"))],
    model: Annotated[Optional[str], typer.Option(
        help=f"A checkpoint, or a kind's name ({', '.join(KINDS)}) for its shipped model.", show_default="3d")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout (JSON Lines).")] = False,
    overlay: Annotated[Optional[Path], typer.Option(
        help="Image file (PNG, JPEG or BMP, as its suffix says): input, reconstruction and outlined objects per "
             "image.", show_default="none", **path_param("--overlay"))] = None,
    refine: Annotated[int, typer.Option(
        help="Analysis by synthesis after inference: unsure identities tried in turn, in 2D the count (windows "
             "not worth what they cost removed, windows added where the image is least explained), then this "
             "many gradient steps on every continuous latent through the renderer; an image's fit (pixel "
             "likelihood, count prior, in 2D each object's cost) never worsens (time printed).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 256,
    precision: DecomposePrecisionOption = "auto",
    device: DeviceOption = "auto",
):
    """Count, identify and locate the objects in images with a trained AIR model."""
    import json

    from .decompose import Decomposer, expand_inputs, resolve_model
    from .files import check_image_output

    paths = expand_inputs(images)
    if overlay is not None:
        check_image_output(overlay, "--overlay", inputs=[*paths, resolve_model(model)])
    decomposer = Decomposer(model, device=Device(device).value, precision=DecomposePrecision(precision).value)
    for line in decomposer.dataset_warnings(images):
        say(f"warning: {line}", err=True)
    if not paths:
        raise UserError("no image files in the given directories")
    keep = OVERLAY_MAX_IMAGES if overlay else 0
    results, pictures = decomposer._run(paths, batch_size=batch_size, refine=refine, keep=keep)
    for r in results:
        for notice in r.notices:
            say(f"notice: {r.path}: {notice}", err=True)
        if r.error is not None:
            say(f"error: {r.error}", err=True)
        if json_out:
            typer.echo(json.dumps(r.to_json()))
        elif r.result is not None:
            for line in format_decomposition(r.path, r.result):
                say(line)
    if refine and any(r.result is not None for r in results):
        say(refine_summary([r.result for r in results if r.result is not None]), err=True)
    if overlay and pictures:
        from .files import write_image
        from .viz import overlay_figure

        write_image(overlay, overlay_figure(**pictures))
        shown = len(pictures["inputs"])
        more = f" (the first {shown} of {sum(r.error is None for r in results)})" if shown == OVERLAY_MAX_IMAGES else ""
        say(f"wrote {overlay}{more}", err=True)
    if any(r.error is not None for r in results):
        raise typer.Exit(1)


OVERLAY_MAX_IMAGES = 32
"""Rows of a ``decompose --overlay`` figure (the first images of a larger batch)."""


def format_decomposition(path: str, result: dict) -> list[str]:
    """One image's decomposition for people (each present step as its kind writes it)."""
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


def refine_summary(results: list[dict]) -> str:
    """``decompose --refine``'s cost and effect, one line."""
    import statistics

    seconds = statistics.median(r["refine_seconds"] for r in results)
    errors = [r["reconstruction_error"] for r in results]
    lower = sum(e["after"] < e["before"] for e in errors)
    higher = sum(e["after"] > e["before"] for e in errors)
    return (f"refine: {seconds:.3f} s per image (median), reconstruction error lower on {lower} of "
            f"{len(results)} images, " + (f"higher on {higher} (an object not worth its cost removed)"
                                         if higher else "never higher"))


def format_metrics(m: dict) -> list[str]:
    """Evaluate's metrics for people (the kind's own lines from ``Kind.metric_lines``)."""

    def num(value, fmt):
        return "n/a" if value is None else format(value, fmt)

    lines = [f"scenes             {m['num_scenes']}"]
    if m.get("labelled") is False:
        lines += [f"labels             none ({m['data']} has no labels.jsonl: no accuracy to report)",
                  "inferred counts    " + "  ".join(f"{n}: {v:.1%}" for n, v in enumerate(m["count_hist"])),
                  f"ELBO               {m['elbo']:.1f} nats per image (log-likelihood {m['log_likelihood']:.1f}, "
                  f"KL {m['kl']:.1f}; one sample)"]
        return lines
    lines += [f"count accuracy     {num(m['count_accuracy'], '.2%')}",
              "count confusion    (rows: true count, columns: inferred)"]
    lines += ["  " + " ".join(f"{v:6d}" for v in row) for row in m["confusion"]]
    if "matched_objects" in m:  # labels that give the objects, not only their count
        lines.append(f"matched objects    {m['matched_objects']} (on correctly counted scenes)")
        lines += KINDS[m["model"]].metric_lines(m)
    refined = f", refined with {m['refine']} steps" if m.get("refine") else ""
    lines.append(f"inference          {num(m['images_per_s'], ',.0f')} images/s (batch {m['batch_size']}, "
                 f"{m['threads']} threads{refined})")
    return lines


def main() -> None:
    app()
