"""The training loop, checkpoints, resume, divergence, and evaluate, on a tiny dataset."""

import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inverse_air.checkpoint import load_checkpoint, load_model, save_checkpoint
from inverse_air.errors import UserError
from inverse_air.evaluate import evaluate
from inverse_air.train import CHECKPOINT, METRICS, Trainer, TrainingDiverged, train


def test_sleep_steps_lower_the_loss(tiny_run_config, tmp_path):
    trainer = Trainer(tiny_run_config(steps=60, sleep_fraction=1.0, lr=3e-3), tmp_path, progress=False)
    losses = [trainer.train_step(step)["loss"] for step in range(60)]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.0


def test_supervised_steps_lower_the_loss(tiny_run_config, tmp_path):
    trainer = Trainer(tiny_run_config(steps=40, supervised=True, lr=3e-3), tmp_path, progress=False)
    phases = {trainer.phase(s) for s in range(40)}
    assert phases == {"supervised"}
    losses = [trainer.train_step(step)["loss"] for step in range(40)]
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 1.0


def test_phases_and_learning_rates(tiny_run_config, tmp_path):
    trainer = Trainer(tiny_run_config(steps=10, sleep_fraction=0.6, lr=1e-3, elbo_lr=1e-4, baseline_lr=5e-2),
                      tmp_path, progress=False)
    assert [trainer.phase(s) for s in range(10)] == ["sleep"] * 6 + ["elbo"] * 4
    assert trainer.learning_rate(0) == pytest.approx(1e-3) and trainer.learning_rate(6) == pytest.approx(1e-4)
    stats = trainer.train_step(6)
    assert stats["phase"] == "elbo"
    groups = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert groups == {"inference": pytest.approx(1e-4), "baseline": pytest.approx(5e-2)}


def test_run_writes_metrics_images_checkpoint_and_tensorboard(tiny_run_config, tmp_path):
    last = train(tiny_run_config(steps=4, sleep_fraction=0.5), tmp_path, progress=False)
    assert last["step"] == 4 and 0 <= last["monitor_count_accuracy"] <= 1
    lines = [json.loads(l) for l in (tmp_path / METRICS).read_text().splitlines()]
    assert [l["step"] for l in lines] == [2, 4] and [l["phase"] for l in lines] == ["sleep", "elbo"]
    assert "elbo" in lines[1] and "baseline_loss" in lines[1]
    assert (tmp_path / "images" / "step-0000004.png").exists()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    payload = load_checkpoint(tmp_path / CHECKPOINT, expect_kind="3d")
    assert payload["step"] == 4 and payload["config"].train.steps == 4
    with pytest.raises(UserError, match="already holds a training run"):
        Trainer(tiny_run_config(steps=4), tmp_path, progress=False)


@pytest.mark.parametrize("weight_average", [0.0, 0.9])
def test_resume_continues_exactly(tiny_run_config, tmp_path, monkeypatch, weight_average):
    """A 6-step run killed after step 4 and resumed == 6 uninterrupted steps (both phases),
    the weights' average included (``weight_average``: the checkpoint's model is the average,
    and the weights as trained beside it)."""
    full, part = tmp_path / "full", tmp_path / "part"
    config = tiny_run_config(steps=6, sleep_fraction=0.5, weight_average=weight_average)
    train(config, full, progress=False)
    killed = Trainer(config, part, progress=False)
    original = killed.train_step

    def kill_at_4(step):
        if step == 4:  # after the checkpoint at step 3 and one more step that is lost
            raise SystemExit("killed")
        return original(step)

    monkeypatch.setattr(killed, "train_step", kill_at_4)
    with pytest.raises(SystemExit):
        killed.run()
    assert load_checkpoint(part / CHECKPOINT)["step"] == 3
    train(config, part, resume=True, progress=False)
    a = load_checkpoint(full / CHECKPOINT)
    b = load_checkpoint(part / CHECKPOINT)
    assert a["step"] == b["step"] == 6
    for name, value in a["weights"].items():
        assert torch.allclose(value, b["weights"][name], atol=1e-6), name
    if weight_average:
        assert a["extra"]["average_updates"] == 6
        for name, value in a["trained_weights"].items():
            assert torch.allclose(value, b["trained_weights"][name], atol=1e-6), name
        moved = [k for k in a["weights"] if not torch.allclose(a["weights"][k], a["trained_weights"][k])]
        assert "core.weight_ih" in moved
    else:
        assert a["trained_weights"] is None
    # Exact, losses included: both runs are on this machine, in this process, with the same
    # threads and kernels, and training on one machine is bit-reproducible (docs/reproducibility.md).
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "time_s"} for l in p.read_text().splitlines()]
    assert strip(full / METRICS) == strip(part / METRICS)


def test_resume_needs_a_run(tiny_run_config, tmp_path):
    with pytest.raises(UserError, match="nothing to resume"):
        Trainer(tiny_run_config(steps=2), tmp_path, resume=True, progress=False)


def test_divergence_stops_with_a_clear_message_and_keeps_the_checkpoint(tiny_run_config, tmp_path):
    trainer = Trainer(tiny_run_config(steps=6, sleep_fraction=1.0), tmp_path, progress=False)
    trainer.step = 3
    trainer.save()
    with torch.no_grad():
        trainer.model.core.weight_ih.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"diverged at step 4 .*checkpoint.*step 3"):
        trainer.run()
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 3


# ---------------------------------------------------------------- checkpoints
@pytest.fixture
def checkpoint(tiny_run_config, tmp_path):
    from inverse_air.checkpoint import build_model

    config = tiny_run_config()
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model(config.air), config, step=7)
    return path


def test_checkpoint_round_trip(checkpoint):
    model, payload = load_model(checkpoint, expect_kind="3d")
    assert payload["step"] == 7 and not model.training
    assert model.config == payload["config"].air


def test_a_checkpoint_saved_before_the_score_signal_setting_keeps_nvils_scaling(tiny_run_config, tmp_path):
    """Runs saved without ``score_signal`` were trained with the score term divided by the
    signals' spread: resumed, they go on so; a run saved now keeps what it was given."""
    from inverse_air.checkpoint import build_model

    config = tiny_run_config()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, score_signal="nats"))
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, build_model(config.air), config, step=7)
    assert load_checkpoint(checkpoint)["config"].train.score_signal == "nats"
    payload = torch.load(checkpoint, weights_only=True)
    config = json.loads(payload["config"])
    del config["train"]["score_signal"]
    payload["config"] = json.dumps(config)
    torch.save(payload, checkpoint)
    assert load_checkpoint(checkpoint)["config"].train.score_signal == "normalized"


def test_checkpoint_of_another_kind_is_refused(checkpoint):
    with pytest.raises(UserError, match="is a 3d model checkpoint, expected a 2d model"):
        load_checkpoint(checkpoint, expect_kind="2d")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_checkpoint_is_refused(checkpoint, damage):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10,
                            "empty": b""}[damage])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(checkpoint)


def test_other_torch_files_are_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(UserError, match="not an inverse-air checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_evaluate_reports_every_metric(checkpoint, tiny_data):
    metrics = evaluate(checkpoint, tiny_data, batch_size=16)
    assert metrics["num_scenes"] == 64 and 0 <= metrics["count_accuracy"] <= 1
    assert np.array(metrics["confusion"]).sum() == 64
    assert metrics["images_per_s"] > 0 and metrics["step"] == 7


def test_count_prior_comes_from_the_dataset_or_is_uniform_or_geometric():
    from inverse_air.config import AIRConfig
    from inverse_air.objects2d.config import Objects2DConfig
    from inverse_air.plan import count_prior_for, with_count_prior

    assert count_prior_for((0, 1, 3), 3) == pytest.approx((1 / 3, 1 / 3, 0.0, 1 / 3))
    assert count_prior_for((0, 1, 3), 3, "uniform") == pytest.approx((0.25,) * 4)
    geometric = count_prior_for(None, 3, "geometric")  # needs no counts
    assert np.allclose(np.diff(np.log(geometric)), np.log(0.01)) and sum(geometric) == pytest.approx(1.0)
    steep = count_prior_for(None, 4, "geometric", ratio=1e-10)  # the 2D kind's: 23 nats per object
    assert np.allclose(np.diff(np.log(steep)), np.log(1e-10)) and sum(steep) == pytest.approx(1.0)
    with pytest.raises(UserError, match="--count-prior must be one of dataset, uniform, geometric"):
        count_prior_for((0, 1), 3, "poisson")
    # The floor is lowered below a geometric prior's tail (else it would flatten it), kept otherwise.
    air = AIRConfig(objects=Objects2DConfig())
    assert with_count_prior(air, geometric).count_prior_floor == pytest.approx(geometric[-1])
    assert with_count_prior(air, (1 / 3, 1 / 3, 0.0, 1 / 3)).count_prior_floor == air.count_prior_floor
    with pytest.raises(UserError, match="up to 4 objects"):
        count_prior_for((0, 4), 3)


# ---------------------------------------------------------------- interruptions and resuming
def signal_within(trainer, step: int, line: int, signums=(signal.SIGTERM,)):
    """Make ``trainer`` send itself ``signums`` (one after the other) when the ``line``-th line
    of Python (torch's own included: mid-forward, mid-backward, mid-Adam) of step ``step`` runs;
    a signal arrives in the main thread between two lines, as there. Returns the list the
    steps at which they were sent are appended to."""
    original, sent = trainer.train_step, []

    def traced(at):
        if at != step:
            return original(at)
        count = 0

        def tracer(frame, event, arg):
            nonlocal count
            if event == "line":
                count += 1
                if count == line:
                    for signum in signums:
                        sent.append(at)
                        os.kill(os.getpid(), signum)
            return tracer

        sys.settrace(tracer)
        try:
            return original(at)
        finally:
            sys.settrace(None)

    trainer.train_step = traced
    return sent


def test_a_signal_mid_step_saves_the_step_once_it_is_finished(tiny_run_config, tmp_path):
    """Ctrl-C (SIGINT) or SIGTERM in the middle of step 2 (of the first ELBO step): the step is
    finished, saved as step 3, and the interruption raised (Terminated for SIGTERM); the
    handlers are only the run's."""
    from inverse_air.errors import Terminated

    for signum, raised in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)):
        out = tmp_path / signal.Signals(signum).name
        trainer = Trainer(tiny_run_config(steps=6, sleep_fraction=0.4, checkpoint_every=100), out, progress=False)
        sent = signal_within(trainer, 2, 100, (signum,))
        with pytest.raises(raised):
            trainer.run()
        assert sent == [2] and load_checkpoint(out / CHECKPOINT)["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _interrupted_then_resumed_equals_uninterrupted(config, tmp_path, points):
    """For each (step, line): a run signalled there (``signal_within``), then resumed to the
    end, ends with the weights and optimizer state of an uninterrupted run: exactly, since both
    run on this machine with the same threads (where results are bit-reproducible)."""
    train(config, tmp_path / "full", progress=False)
    full = load_checkpoint(tmp_path / "full" / CHECKPOINT)
    for step, line in points:
        out = tmp_path / f"part-{step}-{line}"
        trainer = Trainer(config, out, progress=False)
        sent = signal_within(trainer, step, line)
        with pytest.raises(KeyboardInterrupt):
            trainer.run()
        assert sent == [step], f"step {step} ran fewer than {line} lines"
        assert load_checkpoint(out / CHECKPOINT)["step"] == step + 1
        train(config, out, resume=True, progress=False)
        part = load_checkpoint(out / CHECKPOINT)
        assert part["step"] == full["step"] == config.train.steps
        for name, value in full["weights"].items():
            assert torch.equal(value, part["weights"][name]), (step, line, name)
        states = full["optimizer"]["state"], part["optimizer"]["state"]
        assert states[0].keys() == states[1].keys()
        for index, state in states[0].items():
            for key, value in state.items():
                assert torch.equal(value, states[1][index][key]), (step, line, index, key)


def test_a_run_signalled_anywhere_in_a_3d_step_resumes_as_if_never_stopped(tiny_run_config, tmp_path):
    # step 0 (sleep, building the sleep pool): line 30,000 of about 34,000; step 3 (ELBO):
    # line 14,000 of about 15,800 (the optimizer's step)
    config = tiny_run_config(steps=5, sleep_fraction=0.6)
    _interrupted_then_resumed_equals_uninterrupted(config, tmp_path, [(0, 30000), (3, 14000)])


def test_a_run_signalled_anywhere_in_a_2d_step_resumes_as_if_never_stopped(tiny_run_config_2d, tmp_path):
    # Step 0 runs about 9,900 lines: forward (3,000), backward (6,500), Adam building its state
    # (7,600: once a checkpoint lacked exp_avg_sq from here), Adam updating (8,600); step 2 the
    # ELBO's learning-signal statistics (6,000).
    config = tiny_run_config_2d(steps=4)
    _interrupted_then_resumed_equals_uninterrupted(config, tmp_path, [(0, 3000), (0, 6500), (0, 7600), (0, 8600),
                                                                      (2, 6000)])


def test_a_second_signal_stops_at_once_and_saves_nothing_half_done(tiny_run_config_2d, tmp_path):
    """Two signals in the first step: no checkpoint (no step was finished), and the folder
    takes a new run; two in a later step: the last periodic checkpoint stays."""
    from inverse_air.errors import Terminated

    config = tiny_run_config_2d(steps=6)
    trainer = Trainer(config, tmp_path, progress=False)
    signal_within(trainer, 0, 3000, (signal.SIGTERM, signal.SIGTERM))
    with pytest.raises(Terminated):
        trainer.run()
    assert not (tmp_path / CHECKPOINT).exists()
    trainer = Trainer(config, tmp_path, progress=False)  # not stuck: a new run starts there
    signal_within(trainer, 4, 3000, (signal.SIGINT, signal.SIGTERM))
    with pytest.raises(Terminated):
        trainer.run()
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 3  # checkpoint_every 3


def test_a_damaged_optimizer_state_is_one_line_on_resume(tiny_run_config_2d, tmp_path):
    """A checkpoint whose Adam state lacks a moment (an older version saved one mid-step) is
    refused on --resume with one line saying how to start over, not a KeyError later."""
    config = tiny_run_config_2d(steps=2)
    train(config, tmp_path, progress=False)
    payload = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    del payload["optimizer"]["state"][3]["exp_avg_sq"]
    torch.save(payload, tmp_path / CHECKPOINT)
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=4))
    with pytest.raises(UserError, match=r"damaged optimizer state \(.* lacks exp_avg_sq.*to start it over, delete"):
        Trainer(longer, tmp_path, resume=True, progress=False)


def test_sigterm_to_train_exits_143_with_a_checkpoint(tiny_data, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "inverse_air", "train", "--data", str(tiny_data), "--out", str(run), "--steps", "100000",
           "--batch-size", "4", "--supervised", "--quiet"]  # supervised: no sleep pool to render first
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (run / METRICS).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143 and stderr.strip().startswith("terminated:"), stderr
    assert load_checkpoint(run / CHECKPOINT)["step"] >= 50  # at least the logged steps


def test_resume_refuses_every_flag_it_would_ignore(tiny_run_config, tiny_data_2d, tmp_path, monkeypatch):
    from inverse_air.plan import resume_config

    config = tiny_run_config(steps=2)
    assert Path(config.data).is_absolute()
    train(config, tmp_path / "run", progress=False)
    for overrides, air, data, prior, flag in [
        ({"batch_size": 7}, {}, None, None, "--batch-size 7: the run in"),
        ({"seed": 3}, {}, None, None, "--seed 3:"),
        ({"elbo_batch_size": 3}, {}, None, None, "--elbo-batch-size 3:"),
        ({"supervised": True}, {}, None, None, "--supervised: the run"),
        ({}, {"dair": True}, None, None, "--dair: the run in .* was trained with --no-dair"),
        ({}, {}, tiny_data_2d, None, "--data"),
    ]:
        with pytest.raises(UserError, match=flag):
            resume_config(tmp_path / "run", data, None, {"steps": 4, **overrides}, air, prior)
    same = {"batch_size": config.train.batch_size, "seed": 0, "steps": 4}
    resumed = resume_config(tmp_path / "run", config.data, "3d", same, {"dair": False}, "dataset")
    assert resumed.train.steps == 4 and resumed.data == config.data
    monkeypatch.chdir(tmp_path)  # the stored path is absolute: resuming works from anywhere
    train(resume_config("run", train_overrides={"steps": 3}), "run", resume=True, progress=False)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 3
    with pytest.raises(UserError, match="--steps 2: the run in .* is at step 3 already"):
        train(resume_config("run", train_overrides={"steps": 2}), "run", resume=True, progress=False)


def test_resume_after_a_kill_mid_metrics_line(tiny_run_config, tmp_path):
    config = tiny_run_config(steps=4)
    train(config, tmp_path, progress=False)
    with open(tmp_path / METRICS, "a") as f:
        f.write('{"step": 6, "lo')  # cut short by a kill
    resumed = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=6))
    train(resumed, tmp_path, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / METRICS).read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_an_exported_model_cannot_be_resumed(tiny_run_config, tmp_path):
    from inverse_air.checkpoint import export_model

    train(tiny_run_config(steps=2), tmp_path / "run", progress=False)
    export_model(tmp_path / "run" / CHECKPOINT, tmp_path / "run" / CHECKPOINT)
    with pytest.raises(UserError, match="holds no optimizer state"):
        Trainer(tiny_run_config(steps=4), tmp_path / "run", resume=True, progress=False)


def test_nan_in_the_elbo_phase_is_a_divergence_not_a_traceback(tiny_run_config, tmp_path):
    trainer = Trainer(tiny_run_config(steps=6, sleep_fraction=0.0), tmp_path, progress=False)
    trainer.save()
    with torch.no_grad():
        trainer.model.pres_head.bias.fill_(float("nan"))  # presence probabilities become NaN
    with pytest.raises(TrainingDiverged, match=r"diverged at step 1 \(elbo phase\): non-finite values"):
        trainer.run()
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 0


def test_training_without_tensorboard_says_so_once(tiny_run_config, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    last = train(tiny_run_config(steps=4), tmp_path, progress=False)
    assert last["step"] == 4 and not (tmp_path / "tb").exists()
    assert capsys.readouterr().err.count("TensorBoard logs are off") == 1


def test_resume_refuses_another_count_prior(tiny_run_config_2d, tmp_path):
    from inverse_air.plan import resume_config

    train(tiny_run_config_2d(steps=1), tmp_path, progress=False)  # counts 0-2: the dataset's prior
    with pytest.raises(UserError, match="--count-prior uniform: the run"):
        resume_config(tmp_path, count_prior="uniform")
    assert resume_config(tmp_path, count_prior="dataset", model="2d").air.kind == "2d"


def test_evaluate_reads_shard_by_shard_in_the_batches_of_the_whole_dataset():
    """Batches span shards as if the dataset were one array, so results do not depend on the
    shard size (float results differ in the last bits with the batch's composition)."""
    from inverse_air.evaluate import batches

    class Shards:
        def __init__(self, sizes):
            self.sizes = sizes

        def shards(self):
            at = 0
            for n in self.sizes:
                yield {"images": np.arange(at, at + n), "count": np.zeros(n)}
                at += n

    for sizes in ([6, 6], [5, 1, 1, 7], [10], [1000, 24]):
        for size in (1, 3, 4, 7, 12, 256):
            truths = []
            got = list(batches(Shards(sizes), size, truths))
            assert np.array_equal(np.concatenate(got), np.arange(sum(sizes)))
            assert all(len(b) == size for b in got[:-1]) and 0 < len(got[-1]) <= size
            assert [len(t["count"]) for t in truths] == sizes


def test_the_sleep_pool_rebuilt_at_any_step_is_the_pool_that_got_there(tiny_run_config, tmp_path):
    """A resumed run rebuilds the pool of prior scenes from the seed: the same scenes an
    uninterrupted run holds at that step, so it trains on the same batches."""
    from inverse_air.train import SleepPool

    trainer = Trainer(tiny_run_config(steps=40, sleep_fraction=1.0), tmp_path, progress=False)
    pool = SleepPool(trainer.model, seed=3, size=24, refresh=8)  # 3 blocks
    walked = [pool.batch(step, 10) for step in range(5)]
    for step in (0, 2, 4):
        fresh = SleepPool(trainer.model, seed=3, size=24, refresh=8)
        rebuilt = fresh.batch(step, 10)
        for key in rebuilt:  # exact: the same draws and renders, in one process
            np.testing.assert_array_equal(rebuilt[key], walked[step][key], err_msg=f"{key} at step {step}")
    assert not np.array_equal(walked[0]["images"], walked[4]["images"])
    # every block changes once per len(blocks) steps; images are the renders of their scenes
    assert pool.arrays["images"].dtype == np.uint8 and pool.arrays["shape"].shape == (24, 3)
    assert ((pool.arrays["shape"] >= 0).sum(1) == pool.arrays["count"]).all()


def test_a_short_run_keeps_no_more_scenes_than_it_draws(tiny_run_config, tmp_path):
    trainer = Trainer(tiny_run_config(steps=5, sleep_fraction=1.0, sleep_refresh=4), tmp_path, progress=False)
    assert trainer.batches.pool.blocks * trainer.batches.pool.refresh == 20
    trainer = Trainer(tiny_run_config(steps=5, sleep_fraction=1.0, sleep_pool=0), tmp_path / "b", progress=False)
    assert trainer.batches.pool is None
    x, target = trainer.batches.sleep(0, 8)
    assert x.shape == (8, 3, 32, 32)
