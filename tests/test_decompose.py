"""decompose: the shipped model on the example scenes, JSON round trip, bad input, refine."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from inverse_air.checkpoint import save_checkpoint
from inverse_air.cli import app
from inverse_air.decompose import SMALL_BATCH, Decomposer, shipped_model
from inverse_air.errors import UserError
from inverse_air.images import read_image
from inverse_air.objects3d.scene import SHAPES, load_scene, scenes_to_arrays
from inverse_air.viz import outline

from conftest import assert_results_agree

SCENES = Path(__file__).resolve().parent.parent / "scenes"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def shipped():
    return Decomposer(shipped_model("3d"))


def test_shipped_model_recovers_the_example_scenes(shipped):
    paths = sorted(SCENES.glob("*.png"))
    results = shipped(paths)
    for path, r in zip(paths, results):
        truth = json.loads(path.with_suffix(".json").read_text())["objects"]
        assert r["count"] == len(truth), (path.name, r)
        assert sorted(o["shape"] for o in r["objects"]) == sorted(o["shape"] for o in truth), path.name


def test_json_round_trips_through_render_scene(tmp_path):
    result = invoke("decompose", SCENES / "two_objects.png", "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["count"] == 2 and [s["step"] for s in record["steps"]] == [1, 2, 3]
    assert abs(sum(record["steps"][0]["shape_probs"].values()) - 1) < 1e-3
    scene_file = tmp_path / "inferred.json"
    scene_file.write_text(lines[0])
    out = tmp_path / "back.png"
    result = invoke("render-scene", scene_file, "-o", out)
    assert result.exit_code == 0, result.output
    back = np.asarray(Image.open(out), dtype=np.float32)
    original = np.asarray(Image.open(SCENES / "two_objects.png"), dtype=np.float32)
    assert np.abs(back - original).mean() < 6.0  # the same objects, near the same places


def test_table_and_overlay(tmp_path):
    overlay = tmp_path / "overlay.png"
    result = invoke("decompose", SCENES, "--overlay", overlay)
    assert result.exit_code == 0, result.output
    assert "scenes/three_objects.png: 3 objects" in result.stdout.replace("\\", "/")
    assert "step 1" in result.stdout and "position" in result.stdout
    figure = np.asarray(Image.open(overlay))
    n = len(list(SCENES.glob("*.png")))
    assert figure.shape[2] == 3 and figure.shape[0] > n * 64 * 4  # one row per image, upscaled
    red = (figure[..., 0] > 200) & (figure[..., 1] < 80) & (figure[..., 2] < 80)
    assert red.sum() > 100  # step-1 outlines are drawn


def test_bad_inputs_each_one_line_others_still_processed(tmp_path):
    rgb = np.asarray(Image.open(SCENES / "sphere.png"))
    good = tmp_path / "a_good.png"
    Image.fromarray(rgb).save(good)
    Image.fromarray(rgb).convert("L").save(tmp_path / "b_grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "c_rgba.png")
    Image.fromarray(rgb).resize((100, 100)).save(tmp_path / "d_big.png")
    (tmp_path / "e_text.png").write_text("not an image")
    data = good.read_bytes()
    (tmp_path / "f_truncated.png").write_bytes(data[: len(data) // 2])
    missing = tmp_path / "g_missing.png"
    result = invoke("decompose", tmp_path, missing, "--json")
    assert result.exit_code == 1
    records = {Path(json.loads(line)["image"]).name: json.loads(line) for line in result.stdout.splitlines()}
    assert sorted(records) == ["a_good.png", "b_grey.png", "c_rgba.png", "d_big.png", "e_text.png",
                               "f_truncated.png", "g_missing.png"]
    for name in ("a_good.png", "c_rgba.png", "d_big.png"):
        assert records[name]["count"] == 1 and records[name]["objects"][0]["shape"] == "sphere", name
    assert "count" in records["b_grey.png"]  # processed (a grey scene is off the model's data)
    assert "converted to RGB" in records["b_grey.png"]["notices"][0]
    assert "composited" in records["c_rgba.png"]["notices"][0]
    assert "100x100 image resized to the model's 64x64" in records["d_big.png"]["notices"][0]
    assert "not an image" in records["e_text.png"]["error"]
    assert "truncated" in records["f_truncated.png"]["error"]
    assert "no such file" in records["g_missing.png"]["error"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3


@pytest.mark.parametrize("content, expected", [
    (b"\x00" * 100, "not a readable checkpoint"),
    (None, "no such checkpoint file"),
])
def test_bad_checkpoint_one_line(tmp_path, content, expected):
    model = tmp_path / "model.pt"
    if content is not None:
        model.write_bytes(content)
    result = invoke("decompose", SCENES / "sphere.png", "--model", model)
    assert result.exit_code == 1
    assert expected in result.output and len(result.output.strip().splitlines()) == 1


def test_file_names_with_control_characters_cannot_break_or_forge_lines(tmp_path):
    import os

    forged = "a\nb.png: 3 objects\n  step 1  p(present) 1.00  cube"
    for name in (forged + ".png", "\x1b[2Jclear.png", os.fsdecode(b"\xff.png")):
        (tmp_path / name).write_bytes((SCENES / "cube.png").read_bytes())
    missing = tmp_path / "gone\nerror: forged.png"
    result = invoke("decompose", tmp_path, missing)
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert [line for line in out if not line.startswith("  ")] == [
        f"{tmp_path}/\\x1b[2Jclear.png: 1 object",
        f"{tmp_path}/a\\nb.png: 3 objects\\n  step 1  p(present) 1.00  cube.png: 1 object",
        f"{tmp_path}/\\udcff.png: 1 object"]
    assert result.stderr.splitlines() == [f"error: {tmp_path}/gone\\nerror: forged.png: no such file"]
    assert "\x1b" not in result.output
    result = invoke("decompose", tmp_path, missing, "--json")  # JSON escapes them itself; the names come back
    assert [json.loads(line)["image"] for line in result.stdout.splitlines()] == [
        str(tmp_path / "\x1b[2Jclear.png"), str(tmp_path / (forged + ".png")), str(tmp_path / os.fsdecode(b"\xff.png")),
        str(missing)]
    result = invoke("render-scene", tmp_path / "no\nwrote x.png", "-o", tmp_path / "x.png")  # a command's error line
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1 and "no\\nwrote x.png" in result.output
    Image.new("L", (64, 64)).save(tmp_path / "grey\nnotice: forged.png")  # a notice names it: converted to RGB
    result = invoke("train", "--model", "2d", "--data", tmp_path, "--out", tmp_path / "run", "--object-size", 1000)
    lines = result.output.splitlines()
    assert result.exit_code == 1 and lines[-1].startswith("error: --object-size") and len(lines) == 4, result.output
    assert "grey\\nnotice: forged.png: L image converted to RGB" in lines[1]


def test_a_checkpoint_that_needs_pickle_is_refused_in_one_whole_line(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # a whole module: pickle only
    (tmp_path / "truncated.pt").write_bytes(shipped_model("2d").read_bytes()[:3000])
    for name, expected in (("pickled.pt", "refused: it holds Python objects (torch.nn.modules.linear.Linear) that "
                                          "only pickle loads, which can run code from the file; inverse-air loads "
                                          "checkpoints of tensors and plain values only"),
                           ("truncated.pt", "not a readable checkpoint (corrupted, truncated or not a checkpoint?): "
                                            "PytorchStreamReader failed reading zip archive: failed finding central "
                                            "directory. This is an internal miniz error.")):
        for args in (["decompose", SCENES / "sphere.png", "--model", tmp_path / name],
                     ["evaluate", tmp_path / name, "--data", tmp_path]):
            result = invoke(*args)
            assert result.exit_code == 1 and result.output.splitlines() == [f"error: {tmp_path / name}: {expected}"], \
                result.output


def test_checkpoint_of_an_unknown_kind(tmp_path):
    payload = torch.load(shipped_model("3d"), weights_only=True)
    config = json.loads(payload["config"])
    config["air"]["objects"] = {"kind": "4d"}
    payload["model_kind"] = "4d"
    payload["format_version"] = 2
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "4d.pt")
    result = invoke("decompose", SCENES / "sphere.png", "--model", tmp_path / "4d.pt")
    assert result.exit_code == 1 and "does not know" in result.output


def test_read_image_converts_and_reports(tmp_path):
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(tmp_path / "grey.png")
    array, notices = read_image(tmp_path / "grey.png", 64, 3)
    assert array.shape == (64, 64, 3) and (array == 200).all() and len(notices) == 1
    with pytest.raises(UserError, match="no such file"):
        read_image(tmp_path / "none.png", 64, 3)


def test_refine_lowers_the_error_of_a_perturbed_pose(shipped):
    scene = load_scene(SCENES / "two_objects.json", shipped.config.air.objects.render.object_scale)
    x = torch.from_numpy(np.asarray(Image.open(SCENES / "two_objects.png"), np.float32) / 255).permute(2, 0, 1)[None]
    _, latents = shipped._infer(np.array(Image.open(SCENES / "two_objects.png"))[None])
    truth = scenes_to_arrays([scene], 3)
    order = [0, 1]
    objects = dict(latents.objects)
    objects["identity"] = torch.tensor([[SHAPES.index(o.shape) for o in scene.objects] + [0]])
    objects["position"] = torch.tensor(truth["position"][:, order + [0]], dtype=torch.float32)
    objects["position"][0, :2] += torch.tensor([[0.12, -0.1], [-0.1, 0.12]])  # move both objects
    objects["yaw"] = torch.deg2rad(torch.tensor(truth["yaw"][:, order + [0]], dtype=torch.float32))
    perturbed = latents._replace(z_pres=torch.tensor([[1.0, 1.0, 0.0]]), objects=objects)
    refined, before, after = shipped._refine(x, perturbed, steps=30)
    assert after[0] < 0.5 * before[0], (before, after)
    moved = (refined.objects["position"][0, :2] - torch.from_numpy(truth["position"][0, :2])).norm(dim=1)
    assert (moved < 0.08).all(), moved  # back near the true positions


def test_outline_is_the_mask_boundary():
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    edge = outline(mask)
    assert edge.sum() == 12 and not edge[2:4, 2:4].any() and not edge[0].any()


def test_bf16_precision_agrees_and_bad_precision_is_refused():
    fp32 = invoke("decompose", SCENES / "three_objects.png", "--json", "--precision", "fp32")
    bf16 = invoke("decompose", SCENES / "three_objects.png", "--json", "--precision", "bf16")
    assert fp32.exit_code == 0 and bf16.exit_code == 0, bf16.output
    a, b = json.loads(fp32.stdout), json.loads(bf16.stdout)
    assert a["count"] == b["count"] and [o["shape"] for o in a["objects"]] == [o["shape"] for o in b["objects"]]
    for oa, ob in zip(a["objects"], b["objects"]):
        assert np.abs(np.subtract(oa["position"], ob["position"])).max() < 0.05
    result = invoke("decompose", SCENES / "sphere.png", "--precision", "fp8")
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_batches_side_by_side_give_the_same_results_in_order(shipped, tmp_path):
    """Small batches make several pieces of work, which run on worker threads; results,
    errors and overlay pictures must come back in input order, as from one batch."""
    (tmp_path / "broken.png").write_bytes(b"not a png")
    paths = sorted(SCENES.glob("*.png"))
    paths.insert(3, tmp_path / "broken.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        on_main = shipped._map_batches(lambda _: threading.current_thread() is threading.main_thread(), [0, 1])
        one, pictures_one = shipped._run(paths, batch_size=256, keep=5)
        several, pictures_several = shipped._run(paths, batch_size=2, keep=5)
        images = np.stack([read_image(p, 64, 3)[0] for p in paths if p.name != "broken.png"])
        direct = shipped(images, batch_size=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert on_main == [False, False]
    assert [r.path for r in several] == [str(p) for p in paths]
    assert [r.error is None for r in several] == [p.name != "broken.png" for p in paths]
    good = [r.result for r in one if r.error is None]
    for results in ([r.result for r in several if r.error is None], direct):
        assert_results_agree(results, good)  # floats differ in the last bits with the batch size
    assert len(pictures_several["inputs"]) == 5
    assert np.array_equal(pictures_one["inputs"], pictures_several["inputs"])  # the uint8 inputs, read back


def test_auto_precision_is_bf16_only_for_large_batches_where_it_is_native(shipped, monkeypatch):
    assert shipped.precision == "auto"
    for native in (False, True):
        monkeypatch.setattr(shipped, "_bf16_pays", native)
        assert shipped._precision_for(1) == "fp32"
        assert shipped._precision_for(SMALL_BATCH) == ("bf16" if native else "fp32")
    monkeypatch.setattr(shipped, "precision", "fp32")
    assert shipped._precision_for(256) == "fp32"
    with pytest.raises(UserError, match="--precision must be one of auto, fp32, bf16"):
        Decomposer(shipped_model("3d"), precision="fp16")


def test_shipped_2d_model_counts_the_example_digits_and_finds_their_windows():
    truth = json.loads((SCENES / "mnist" / "truth.json").read_text())["images"]
    decomposer = Decomposer(shipped_model("2d"))
    paths = [SCENES / "mnist" / name for name in sorted(truth)]
    results, pictures = decomposer._run(paths, keep=len(paths))
    for path, r in zip(paths, results):
        expected = truth[path.name]
        assert r.result["count"] == expected["count"], (path.name, r.result)
        found = np.array([o["box"] for o in r.result["objects"]]).reshape(-1, 3)
        for box in expected["box"]:  # every true window has an inferred one nearby
            assert np.abs(found[:, 1:] - np.array(box[1:])).max(axis=1).min() < 0.15, (path.name, found, box)
    assert pictures["masks"].shape[2:] == (50, 50)


def test_a_3d_scene_given_to_the_2d_model_is_converted_with_notices():
    result = invoke("decompose", SCENES / "sphere.png", "--model", "2d", "--json")
    assert result.exit_code == 0, result.output
    notices = json.loads(result.stdout)["notices"]
    assert any("converted to L" in n for n in notices) and any("resized to the model's 50x50" in n for n in notices)


# ---------------------------------------------------------------- format 1
V1 = Path(__file__).resolve().parent / "data" / "v1"


@pytest.mark.parametrize("kind", ["3d", "2d"])
def test_format_1_checkpoints_decompose_and_evaluate_as_before(kind):
    """Checkpoints written before kinds had packages (format 1) load, convert, and give what
    the format-1 code gave on the same images (``tests/data/v1/expected.json``)."""
    from inverse_air.data import ShardDataset
    from inverse_air.evaluate import evaluate

    expected = json.loads((V1 / "expected.json").read_text())
    decomposer = Decomposer(V1 / f"model{kind}.pt", precision="fp32")
    assert decomposer.kind == kind and torch.load(V1 / f"model{kind}.pt", weights_only=True)["format_version"] == 1
    images = ShardDataset(V1 / f"data{kind}").arrays()["images"]
    # expected.json was made on another machine: the same counts, shapes and confusion matrix,
    # the floats within what differs between machines (a converted checkpoint gone wrong
    # would be far outside)
    assert_results_agree(decomposer(images), expected[f"decompose{kind}"])
    metrics = evaluate(V1 / f"model{kind}.pt", V1 / f"data{kind}")
    assert_results_agree({k: metrics[k] for k in expected[f"evaluate{kind}"]}, expected[f"evaluate{kind}"])


def test_export_writes_todays_format_from_a_format_1_file(tmp_path):
    from inverse_air.checkpoint import FORMAT_VERSION, export_model, load_checkpoint

    export_model(V1 / "model3d.pt", tmp_path / "m.pt")
    new, old = load_checkpoint(tmp_path / "m.pt"), load_checkpoint(V1 / "model3d.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["format_version"] == FORMAT_VERSION == 2
    assert new["config"] == old["config"]
    assert json.loads(torch.load(tmp_path / "m.pt", weights_only=True)["config"])["air"]["objects"]["kind"] == "3d"



# ---------------------------------------------------------------- the Python API
def test_the_python_api_takes_names_paths_arrays_pil_images_and_batches(tmp_path):
    import inverse_air

    decomposer = inverse_air.Decomposer("3d")
    assert decomposer.checkpoint == shipped_model("3d")
    assert Decomposer(str(shipped_model("3d"))).kind == "3d"
    path = SCENES / "two_objects.png"
    cli = json.loads(invoke("decompose", path, "--json").stdout)
    cli.pop("image")
    rgb = np.asarray(Image.open(path))
    # One image in every form: the same uint8 pixels through the same computation (a batch of
    # one, one thread) in this process as the CLI's, so exactly the CLI's result.
    assert decomposer(str(path)) == cli and decomposer(path) == cli
    assert decomposer(Image.open(path)) == cli and decomposer(rgb) == cli
    assert decomposer(rgb / 255.0)["count"] == cli["count"]
    # A batch of two: floats differ from the single image's in the last bits with the batch size.
    assert_results_agree(decomposer(np.stack([rgb, rgb])), [cli, cli])
    assert_results_agree(decomposer([path, Image.open(path)]), [cli, cli])
    grey = decomposer(Image.open(path).convert("L").resize((32, 32)))
    assert "converted to RGB" in grey["notices"][0] and any("resized" in n for n in grey["notices"])
    refined = decomposer(path, refine=2)
    assert "reconstruction_error" in refined
    with pytest.raises(UserError, match="no such file"):
        decomposer(tmp_path / "missing.png")
    assert inverse_air.Decomposer("2d")(SCENES / "mnist" / "digits-1.png")["model"] == "2d"


def test_importing_the_package_stays_cheap():
    import subprocess
    import sys

    code = "import sys, inverse_air; print('torch' in sys.modules, inverse_air.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"


def test_a_varied_model_writes_its_look_and_render_scene_draws_it_back(tiny_run_config, tmp_path):
    """A model whose look varies prints and writes the inferred camera, light, ground and each
    object's colour and size, in scene-file fields that render-scene reads."""
    from inverse_air.checkpoint import build_model

    config = tiny_run_config()
    assert config.air.objects.variation.varied == ("camera", "light", "ground", "color", "size")
    checkpoint = tmp_path / "varied.pt"
    model = build_model(config.air)
    with torch.no_grad():  # untrained, but every step present: each writes its colour and size
        model.pres_head.bias.fill_(20.0)
    save_checkpoint(checkpoint, model, config, step=0)
    text = invoke("decompose", SCENES / "two_objects.png", "--model", checkpoint)
    assert text.exit_code == 0, text.output
    assert "camera  elevation" in text.stdout and "light   direction" in text.stdout and "ground  colour" in text.stdout
    result = invoke("decompose", SCENES / "two_objects.png", "--model", checkpoint, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[0])
    assert set(record["camera"]) == {"elevation_deg", "azimuth_deg", "distance"}
    assert 40 <= record["camera"]["elevation_deg"] <= 70 and len(record["ground_color"]) == 3
    assert len(record["light"]["direction"]) == 3 and record["light"]["direction"][1] > 0
    assert record["count"] == 3
    for step in record["steps"]:
        assert len(step["color"]) == 3 and 0.4 <= step["size"] <= 0.8
    record["objects"] = [{**o} for o in record["objects"][:1]]  # one object: cannot interpenetrate
    assert all({"color", "size"} <= set(o) for o in record["objects"])
    scene_file = tmp_path / "inferred.json"
    scene_file.write_text(json.dumps(record))
    scene = load_scene(scene_file, 0.6)
    assert scene.camera is not None and scene.light is not None and scene.ground_color is not None
    out = tmp_path / "back.png"
    drawn = invoke("render-scene", scene_file, "-o", out, "--image-size", 32)
    assert drawn.exit_code == 0, drawn.output
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)


def test_the_fixed_look_model_on_data_whose_look_varies_is_warned_of(tmp_path):
    from inverse_air.decompose import shipped_models

    assert invoke("render-dataset", tmp_path / "varied", "--num", 4, "--quiet").exit_code == 0  # the default look
    assert invoke("render-dataset", tmp_path / "fixed", "--num", 4, "--fixed-appearance", "--quiet").exit_code == 0
    assert invoke("render-dataset", tmp_path / "lit", "--num", 4, "--fix", "camera,ground,color,size",
                  "--quiet").exit_code == 0
    fixed_look, looks = shipped_models()["air3d"], shipped_models()["air3d-looks"]

    def warnings(*args):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]

    (line,) = warnings("evaluate", fixed_look, "--data", tmp_path / "varied", "--json")
    assert line.startswith(f"warning: {tmp_path / 'varied'}: its scenes' camera, light, ground, color, size vary, "
                           f"but the model was trained on the fixed look: expect low scores")
    assert "air3d-looks" in line and "render-dataset --fixed-appearance" in line
    (line,) = warnings("evaluate", fixed_look, "--data", tmp_path / "lit")
    assert "its scenes' light vary, but the model was trained on the fixed look" in line
    assert warnings("evaluate", fixed_look, "--data", tmp_path / "fixed") == []
    assert warnings("evaluate", looks, "--data", tmp_path / "varied") == []
    assert warnings("evaluate", looks, "--data", tmp_path / "fixed") == []
    # decompose cannot score a dataset's scenes: it says so, and warns of the look where it can tell
    dataset_line = "a dataset made by render-dataset; decompose reads its image files only (preview.png)"
    lines = warnings("decompose", tmp_path / "varied")
    assert len(lines) == 2 and dataset_line in lines[0] and "the model was trained on the fixed look" in lines[1]
    lines = warnings("decompose", tmp_path / "varied", "--model", "air3d-looks")
    assert len(lines) == 1 and dataset_line in lines[0]
    assert warnings("decompose", SCENES / "cube.png") == []


def test_shipped_models_by_name():
    """``--model`` takes a shipped model's name: the 3D model of looks that vary beside the default."""
    from inverse_air.decompose import resolve_model, shipped_models

    named = shipped_models()
    assert {"air3d", "air3d-looks", "air2d"} <= set(named)
    assert resolve_model("air3d-looks") == named["air3d-looks"] and named["air3d-looks"].with_suffix(".md").is_file()
    assert resolve_model("3d") == named["air3d"]
    with pytest.raises(UserError, match="air3d-looks"):
        resolve_model("air4d")
    result = invoke("decompose", SCENES / "two_objects.png", "--model", "air3d-looks", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[0])["count"] == 2
