"""Print the tables of the README and docs/ (Markdown) from the benchmarks' JSON results, so
that the figures there are the measured ones.

    python benchmarks/tables.py [shipped] [render] [air3d] [air2d] [looks3d] [refine3d] [adapt3d] [folders2d] [decompose] [distributed]

Each table is pasted under its marker line, ``<!-- python benchmarks/tables.py NAME -->``,
exactly as printed (tests/test_docs.py fails when one differs): rerun this after a benchmark
and paste, rather than editing a table by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TESTED = {"test": "0-2 digits", "test3": "3 digits (extrapolation)", "test2": "2 digits (interpolation)"}
TRAINED = {"train": "0-2 digits", "train013": "0, 1, 3 digits"}


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        sys.exit(f"error: {path} does not exist; run benchmarks/{name}.py first")
    return json.loads(path.read_text())


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def _decompose_ms(name: str) -> str:
    return f"{load(name)['auto']['batch1_ms_median']:.1f} ms"


def shipped() -> str:
    """The shipped models' headline figures (held-out test sets of their benchmarks)."""
    air3d = load("air3d")["runs"]["air-seed0"]["test"]
    looks = load("looks3d")["runs"]["air-seed0"]["tests"]
    air2d = load("air2d")["scores"]["air-seed0/test"]
    span = lambda key: (f"{100 * min(t[key] for t in looks.values()):.1f}-"
                        f"{100 * max(t[key] for t in looks.values()):.1f}%")
    rows = [["`air3d.pt` (`--model 3d`, the default)", "3D, fixed look, 0-3 objects", pct(air3d["count_accuracy"]),
             f"{100 * air3d['identity_accuracy']:.1f}%", f"{air3d['position_error']['median']:.4f} world units",
             _decompose_ms("decompose")],
            ["`air3d-looks.pt` (`--model air3d-looks`)", "3D, camera, light, colours and sizes vary",
             span("count_accuracy"), span("identity_accuracy"),
             f"{min(t['position_error']['median'] for t in looks.values()):.3f}-"
             f"{max(t['position_error']['median'] for t in looks.values()):.3f} world units",
             _decompose_ms("decompose-looks")],
            ["`air2d.pt` (`--model 2d`)", "multi-MNIST, 0-2 digits", pct(air2d["count_accuracy"]), "",
             f"{air2d['position_error']['median']:.3f} canvas units", _decompose_ms("decompose-2d")]]
    return table(["model", "scenes", "count acc.", "identity acc.", "position error (median)",
                  "decompose, one image"], rows)


def render() -> str:
    d = load("render")
    rd = d["render_dataset"]
    rows = [["hard render, 32x32, 0-3 objects", f"{d['hard_images_per_s']['32x32']:,.0f} images/s"],
            ["hard render, 64x64, 0-3 objects", f"{d['hard_images_per_s']['64x64']:,.0f} images/s"],
            ["soft render forward+backward, batch of 32, 32x32", f"{d['soft_fwd_bwd_s_per_batch32']['32x32']:.2f} s"],
            ["soft render forward+backward, batch of 32, 64x64", f"{d['soft_fwd_bwd_s_per_batch32']['64x64']:.2f} s"],
            ["2D multi-MNIST composition", f"{d['compose2d_images_per_s']:,.0f} images/s"],
            [f"`render-dataset --num {rd['num']:,}` (3D, 64x64): peak RSS", f"{rd['peak_rss_mb']:,.0f} MB"],
            [f"`render-dataset --num {rd['num']:,}` (3D, 64x64): wall time, disk",
             f"{rd['seconds']:.0f} s, {rd['disk_mb']:.1f} MB"]]
    return table(["what", "measured"], rows)


def air3d() -> str:
    data = load("air3d")
    tested = {"test": "0-3 objects", "test3": "3 objects"}
    trained = {"train": "0-3 objects", "train02": "0-2 objects"}
    rows = []
    for name, run in sorted(data["runs"].items()):
        net = run.get("network")
        network = (f"{'-'.join(map(str, net['encoder_channels']))} / {'-'.join(map(str, net['glimpse_channels']))}"
                   f" / {net['lstm_size']}") if net else "not recorded"
        for test in ("test", "test3"):
            if test not in run:
                continue
            m = run[test]
            rows.append([f"`{name}`, tested on {tested[test]}", trained[run["train_data"]], network,
                         f"{run['train']['steps']:,} steps, {run['train_seconds'] / 60:.0f} min",
                         pct(m["count_accuracy"]), f"{100 * m['identity_accuracy']:.1f}%",
                         f"{m['position_error']['median']:.4f}", f"{m['cube_yaw_error_deg']['median']:.1f} deg"])
    return table(["run", "trained on", "network (encoder / glimpse / LSTM)", "training", "count acc.",
                  "identity acc.", "position error (median)", "cube yaw error (median)"], rows)


def air2d() -> str:
    data = load("air2d")
    runs, scores = data.get("runs", {}), data.get("scores", {})
    rows = []
    for name, run in sorted(runs.items()):
        curve = run["curve"]
        if not curve:
            continue
        last = curve[-1]
        first = next((p for p in curve if p["count_accuracy"] >= 0.985), None)
        within = [p for p in curve if p["train_s"] <= 1200]
        for key, score in sorted(scores.items()):
            if key.split("/")[0] != name:
                continue
            test = key.split("/")[1]
            same = test == run["curve_data"] == "test"  # the time columns: held-out 0-2 digits
            prior = "; count prior uniform over 0-3" if "-uniform" in name else ""
            rows.append([f"`{name}`", TRAINED[run["train_data"]] + prior, TESTED[test],
                         f"{last['step']:,} steps, {last['train_s'] / 60:.1f} min",
                         pct(score["count_accuracy"]),
                         (f"{first['train_s'] / 60:.1f} min" if first else "not reached") if same else "",
                         pct(max(p["count_accuracy"] for p in within)) if same and within else ""])
    out = [table(["run", "trained on", "tested on", "training", "count acc. (end)",
                  "first >= 98.5%", "best within 20 min"], rows)]
    if "step_time" in data:
        out.append("")
        out.append(table(["step at batch 64", "median", "p90"],
                         [[k, f"{v['median_s'] * 1000:.1f} ms", f"{v['p90_s'] * 1000:.1f} ms"]
                          for k, v in data["step_time"].items()]))
    if "downstream" in data:
        d = data["downstream"]["air-seed0"]
        out.append("")
        out.append(table(["labelled examples", "MLP on inferred latents", "MLP on pixels"],
                         [[f"{r['labels']:,}", pct(r["latents"]), pct(r["pixels"])] for r in d["results"]]))
    return "\n".join(out)


def decompose() -> str:
    rows = []
    for path in sorted(RESULTS.glob("decompose*.json")):
        d = json.loads(path.read_text())
        model = Path(d["model"]).name
        measured = [p for p in ("auto", "fp32", "bf16") if p in d]
        for precision in measured:
            p = d[precision]
            rows.append([f"`{model}`", precision, f"{p['batch1_ms_median']:.1f} ms",
                         f"{p['batched_images_per_s']:,}", f"{p['directory_images_per_s']:,}",
                         f"{d['process_start_to_result_s']:.2f} s" if precision == measured[0] else ""])  # default's row
    return table(["model", "precision", "batch 1", "batched (images/s)", "directory with PNG reading (images/s)",
                  "process start to result"], rows)


def distributed() -> str:
    d = load("distributed")
    rows = [[r["device"], r["processes"], r["global_batch"], f"{r['steps_per_s']:.2f}", f"{r['images_per_s']:,.0f}"]
            for r in d["runs"].values()]
    return table(["device", "processes", "global batch", "steps/s", "images/s"], rows)


LOOKS = (("count", "count_accuracy", "{:.1%}"), ("identity", "identity_accuracy", "{:.1%}"),
         ("position", "position_error", "{:.3f}"), ("cube yaw", "cube_yaw_error_deg", "{:.1f}"),
         ("size", "size_error", "{:.3f}"), ("colour", "color_error", "{:.3f}"),
         ("cam. elev.", "camera_elevation_error_deg", "{:.1f}"), ("cam. azim.", "camera_azimuth_error_deg", "{:.1f}"),
         ("light dir.", "light_direction_error_deg", "{:.0f}"), ("ground", "ground_color_error", "{:.3f}"))
"""looks3d's columns: header, metric, format (median errors; angles in degrees)."""


def looks3d() -> str:
    data = load("looks3d")
    out = []
    for section in ("scored", "runs"):
        for name, result in data.get(section, {}).items():
            extra = f", trained {result['train_seconds'] / 60:.0f} min" if "train_seconds" in result else ""
            rows = []
            for test, metrics in result["tests"].items():
                values = [metrics.get(key) for _, key, _ in LOOKS]
                rows.append([test] + ["" if v is None else fmt.format(v["median"] if isinstance(v, dict) else v)
                                      for v, (_, _, fmt) in zip(values, LOOKS)])
            out += [f"**{name}**{extra}", "", table(["test set"] + [c for c, _, _ in LOOKS], rows), ""]
    return "\n".join(out).rstrip()


def refine3d() -> str:
    """decompose --refine against the fast path (steps 0), per model and test set."""
    rows = []
    for name, r in load("refine3d")["refine3d"].items():
        model, test, steps = name.rsplit(".", 2)
        values = [r.get(key) for _, key, _ in LOOKS]
        cost = (f"{r['reconstruction_error_before']:.5f} -> {r['reconstruction_error_after']:.5f} "
                f"(lower on {100 * r['lower_fraction']:.0f}%), {r['refine_seconds_per_image']:.2f} s"
                if "lower_fraction" in r else "")
        rows.append([f"`{model}`", test, steps.removeprefix("steps")]
                    + ["" if v is None else fmt.format(v) for v, (_, _, fmt) in zip(values, LOOKS)] + [cost])
    return table(["model", "test set", "refine"] + [c for c, _, _ in LOOKS]
                 + ["reconstruction error, cost per image"], rows)


def adapt3d() -> str:
    """Training by the ELBO alone (adapting a model, or from scratch): before and after."""
    def scores(point: dict | None) -> str:
        if not point:
            return "(new model)"
        if point.get("identity_accuracy") is None:  # no scene counted right has an object
            return f"{pct(point['count_accuracy'])} / - / - / -"
        return (f"{pct(point['count_accuracy'])} / {100 * point['identity_accuracy']:.1f}% / "
                f"{point['position_error']:.3f} / {point['cube_yaw_error_deg']:.1f} deg")

    rows = []
    for name, r in sorted(load("adapt3d")["adapt3d"].items()):
        t, after = r["train"], r.get("after")
        training = (f"{after['step']:,} steps, {after['train_s'] / 60:.1f} min at {r['threads']} thread(s); "
                    f"lr {t['elbo_lr']:g}" if after else "")
        rows.append([f"`{name}`", f"{r['train_images']:,}", training, scores(r["before"]), scores(after)])
    return table(["run (model.look.seed.score signal.settings)", "unlabelled images", "ELBO-only training",
                  "before: count / identity / position / cube yaw", "after"], rows)


def folders2d() -> str:
    """The 2D folder presets as they are now (runs named ``seedN``) on our sprite generators:
    the last score within the time budget, amortized and refined (``common.REFINE_STEPS``, 1),
    and the checkpoint the best monitoring ELBO picks."""
    def per_count(confusion: list[list[int]]) -> str:
        return " / ".join(f"{100 * row[n] / sum(row):.0f}" for n, row in enumerate(confusion))

    sets = [("`filled`: 5 shapes, 8-16 px", "spritesets-filled"),
            ("`sprites2d`: squares, circles, triangles, 10-18 px", "sprites2d")]
    rows = []
    for label, name in sets:
        for run, r in sorted(load(name)["runs"].items()):
            if not run.startswith("seed") or "final" not in r:
                continue
            final, minutes = r["final"], r["budget_s"] / 60
            scored = [p for p in r["curve"] if p["train_s"] <= r["budget_s"] + 1e-6 and "monitor_elbo" in p]
            chosen = max(scored, key=lambda p: p["monitor_elbo"], default=None)
            pick = (f"step {chosen['step']:,}: {pct(chosen['count_accuracy'])}" if chosen else "(not recorded)")
            refined = (f"**{pct(final['count_accuracy_refined'])}** ({final['refined_ms_per_image']:.0f} ms)"
                       if "count_accuracy_refined" in final else "(not recorded)")
            point = next(p for p in r["curve"] if p["step"] == final["step"])  # the curve's: every field
            refined_per_count = per_count(point["confusion_refined"]) if "confusion_refined" in point else ""
            rows.append([label, r["seed"], f"{pct(final['count_accuracy'])} ({final['step']:,} steps)",
                         per_count(final["confusion"]), refined, refined_per_count, pick,
                         f"{minutes:g} min, {r.get('threads', 1)} thread"])
    return table(["generator", "seed", "count acc. at the budget", "per true count 0/1/2/3/4 (%)",
                  "`--refine 1` (time per image)", "refined, per true count (%)",
                  "best monitoring ELBO picks", "budget"], rows)


TABLES = {"shipped": shipped, "render": render, "air3d": air3d, "air2d": air2d, "looks3d": looks3d,
          "refine3d": refine3d, "adapt3d": adapt3d, "folders2d": folders2d, "decompose": decompose, "distributed": distributed}
"""Every table, by the name its marker line gives."""


def marker(name: str) -> str:
    """The line a table is pasted under in the README or docs/."""
    return f"<!-- python benchmarks/tables.py {name} -->"


def main() -> None:
    names = sys.argv[1:] or list(TABLES)
    for name in names:
        if name not in TABLES:
            sys.exit(f"error: no table {name!r}; choose from {', '.join(TABLES)}")
        print(marker(name))
        print(TABLES[name]())
        print()


if __name__ == "__main__":
    main()
