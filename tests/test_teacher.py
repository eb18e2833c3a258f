"""The count search as a teacher in training (``TrainConfig.teacher_images``)."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inverse_air.decompose import Decomposer
from inverse_air.images import images_to_tensor
from inverse_air.teacher import Lesson, search_answer
from inverse_air.train import Trainer, elbo_loss

SCENES = Path(__file__).resolve().parent.parent / "scenes"


def test_the_search_teaches_from_teacher_from_on(tiny_run_config_2d, tmp_path):
    trainer = Trainer(tiny_run_config_2d(steps=4, teacher_images=3, teacher_from=2), tmp_path, progress=False)
    before, after = trainer.train_step(1), trainer.train_step(2)
    assert "search_changed" not in before and "teacher_nll" not in before
    assert 0.0 <= after["search_changed"] <= 1.0 and np.isfinite(after["teacher_nll"])


def test_a_new_3d_model_is_taught_the_objects_its_one_pass_misses(tiny_run_config, tmp_path):
    """By the ELBO alone from scratch: the search's answers differ from the untrained one pass on
    most images, and teaching them is a finite loss."""
    trainer = Trainer(tiny_run_config(steps=2, sleep_fraction=0.0, teacher_images=4), tmp_path, progress=False)
    stats = trainer.train_step(0)
    assert stats["search_changed"] > 0.0 and np.isfinite(stats["teacher_nll"]) and stats["teacher_nll"] > 0


def test_the_teachers_answers_are_refined_through_the_renderer_before_they_are_taught(monkeypatch):
    """``teacher_steps``: the search's answer descends on the poses, from the count search's
    answer (3D, one cube left out by the pass: put back, then placed by the pixels)."""
    model = Decomposer("3d").model
    x = images_to_tensor(np.array(Image.open(SCENES / "cube.png").convert("RGB"))[None])
    latents = model.predict(x)
    missed = latents._replace(z_pres=torch.zeros_like(latents.z_pres))
    monkeypatch.setattr(model, "predict", lambda images: missed)
    searched, refined = search_answer(model, x), search_answer(model, x, steps=5)
    assert searched.answer["z_pres"][0].sum() == refined.answer["z_pres"][0].sum() == 1
    truth = latents.objects["position"][0, 0]
    moved = refined.answer["position"][0, 0] - searched.answer["position"][0, 0]
    assert moved.abs().max() > 1e-4
    assert (refined.answer["position"][0, 0] - truth).norm() <= (searched.answer["position"][0, 0] - truth).norm() + 0.01


def test_only_what_the_search_changed_is_taught():
    """Two digits, the one pass right: the search changes nothing, so nothing is taught."""
    model = Decomposer("2d").model
    x = images_to_tensor(np.array(Image.open(SCENES / "mnist/digits-2.png"))[None, ..., None])
    lesson = search_answer(model, x)
    assert lesson.share == 0.0 and len(lesson.images) == 0 and lesson.answer["z_pres"].shape[0] == 0
    loss, stats = elbo_loss(model, x, lesson=lesson)
    assert stats["teacher_nll"] == 0.0 and torch.isfinite(loss)


def test_the_teacher_term_pulls_the_one_pass_toward_the_search_answer():
    """The same ELBO steps (same seed) with and without an answer that says "one digit" on an
    image of two: taught, the network's presence of the second falls; untaught it stays.
    The sign, and the path of the teacher's gradient to the presence head."""
    shipped = Decomposer("2d").model
    x = images_to_tensor(np.array(Image.open(SCENES / "mnist/digits-2.png"))[None, ..., None]).repeat(4, 1, 1, 1)
    latents = shipped.predict(x)
    z_pres = latents.z_pres.clone()
    z_pres[:, 1:] = 0
    lesson = Lesson(x, {"z_pres": z_pres, **latents.objects}, 1.0)
    second = {}
    for weight in (0.0, 1.0):
        model = copy.deepcopy(shipped).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(0)
        for _ in range(10):
            loss, _ = elbo_loss(model, x, lesson=lesson, teacher_weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        second[weight] = float(torch.logit(model.eval().predict(x[:1]).pres_prob[0, 1].double()))
    assert second[0.0] > 5 and second[1.0] < second[0.0] - 2, second  # log-odds



def test_the_search_answer_is_taught_in_the_canonical_order_of_teacher_forcing(monkeypatch):
    """Two digits, the one pass (right to left) made to miss the left one: the search adds it
    in the free step after the right one, and the lesson teaches them left to right, as the
    datasets' targets are (a step is always taught the same object of a scene)."""
    model = Decomposer("2d").model
    x = images_to_tensor(np.array(Image.open(SCENES / "mnist/digits-2.png"))[None, ..., None])
    latents = model.predict(x)
    assert latents.z_pres.tolist() == [[1.0, 1.0, 0.0]]
    assert latents.objects["where"][0, 0, 1] > latents.objects["where"][0, 1, 1], "the pass reads right to left"
    missed = latents._replace(z_pres=latents.z_pres * torch.tensor([1.0, 0.0, 0.0]))
    monkeypatch.setattr(model, "predict", lambda images: missed)
    lesson = search_answer(model, x)
    assert lesson.share == 1.0 and lesson.answer["z_pres"].tolist() == [[1.0, 1.0, 0.0]]
    left, right = lesson.answer["where"][0, :2, 1].tolist()
    assert left < 0.4 < right and abs(right - float(latents.objects["where"][0, 0, 1])) < 1e-6


def test_the_pool_teaches_the_last_lessons_and_a_resumed_run_goes_on_with_it(tiny_run_config_2d, tmp_path, monkeypatch):
    """``teacher_pool``: each step teaches the last lessons (up to the pool's size), and a run
    killed after a checkpoint and resumed ends as the uninterrupted one (the pool is saved)."""
    from inverse_air.checkpoint import load_checkpoint
    from inverse_air.train import CHECKPOINT, TEACHER_POOL, train

    config = tiny_run_config_2d(steps=6, teacher_images=3, teacher_pool=5)
    trainer = Trainer(config, tmp_path / "steps", progress=False)
    sizes = []
    for step in range(3):
        trainer.train_step(step)
        sizes.append(len(trainer.pool.images))
        assert trainer.pool.answer["z_pres"].shape[0] == sizes[-1]
    assert sizes[-1] <= 5 and sizes == sorted(sizes) and sizes[-1] > 0
    trainer.release()

    full, part = tmp_path / "full", tmp_path / "part"
    train(config, full, progress=False)
    killed = Trainer(config, part, progress=False)
    original = killed.train_step

    def kill_at_4(step):
        if step == 4:
            raise SystemExit("killed")
        return original(step)

    monkeypatch.setattr(killed, "train_step", kill_at_4)
    with pytest.raises(SystemExit):
        killed.run()
    assert (part / TEACHER_POOL).exists()
    train(config, part, resume=True, progress=False)
    a, b = load_checkpoint(full / CHECKPOINT), load_checkpoint(part / CHECKPOINT)
    for name, value in a["weights"].items():
        assert torch.allclose(value, b["weights"][name], atol=1e-6), name


def test_a_search_worker_answers_with_the_weights_it_was_given(tiny_run_config, tmp_path):
    """``teacher_workers``: the process's lessons are the search's answers (with the published
    weights) on training images of its own, and it is gone when the workers are closed."""
    import time

    from inverse_air.search_worker import SearchWorkers

    trainer = Trainer(tiny_run_config(steps=2, sleep_fraction=0.0, teacher_images=2), tmp_path, progress=False)
    model, images = trainer.model, trainer.arrays["images"]
    with SearchWorkers(model, images, batch=2, steps=0, seed=5) as workers:
        got, deadline = [], time.monotonic() + 120
        while not got and time.monotonic() < deadline:
            time.sleep(0.2)
            got = workers.lessons()
        assert got, "no lesson from the search worker in 2 minutes"
        taught, answer, share = got[0]
        x = images_to_tensor(images[np.sort(np.random.default_rng([5, 0]).integers(0, len(images), size=2))])
        expected = search_answer(model, x)
        assert share == expected.share and torch.allclose(taught, expected.images)
        for key, value in expected.answer.items():
            assert torch.allclose(answer[key].float(), value.float(), atol=1e-4), key
        with torch.no_grad():
            model.objects.where.bias.add_(1.0)
        workers.publish(model)
        assert torch.equal(workers.weights["objects.where.bias"], model.objects.where.bias)
        processes = workers.processes
    assert not any(p.is_alive() for p in processes)


def test_a_run_with_a_search_worker_teaches_what_it_sends_and_stops_it(tiny_run_config, tmp_path):
    import time

    trainer = Trainer(tiny_run_config(steps=2, sleep_fraction=0.0, teacher_images=2, teacher_workers=1,
                                      teacher_pool=8), tmp_path, progress=False)
    stats, deadline = trainer.train_step(0), time.monotonic() + 120
    while "teacher_nll" not in stats and time.monotonic() < deadline:  # the worker's first lesson
        time.sleep(0.2)
        stats = trainer.train_step(0)
    processes = trainer.workers.processes
    trainer.run()  # its 2 steps, then the workers are closed
    assert np.isfinite(stats["teacher_nll"]) and trainer.pool is not None and len(trainer.pool.images) > 0
    assert trainer.workers is None and not any(p.is_alive() for p in processes)


def test_with_a_weight_average_the_search_starts_from_the_average(tiny_run_config, tmp_path, monkeypatch):
    """``weight_average``: the search reads the images with the averaged weights (the mean
    teacher), and the trained model goes on training."""
    import inverse_air.train as train_module

    searched_with, search = [], train_module.search_answer
    monkeypatch.setattr(train_module, "search_answer",
                        lambda model, x, steps=0: searched_with.append(model) or search(model, x, steps))
    trainer = Trainer(tiny_run_config(steps=2, sleep_fraction=0.0, teacher_images=2, weight_average=0.9), tmp_path,
                      progress=False)
    stats = trainer.train_step(0)
    assert searched_with == [trainer.average.model] and np.isfinite(stats["teacher_nll"])
    assert trainer.model.training and not trainer.average.model.training
