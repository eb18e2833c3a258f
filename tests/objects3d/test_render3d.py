import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from inverse_air.objects3d.config import RenderConfig
from inverse_air.images import to_uint8
from inverse_air.objects3d.render3d import SceneRenderer, scenes_to_tensors
from inverse_air.objects3d.scene import ObjectSpec, Scene, load_scene

SCENES = Path(__file__).resolve().parents[2] / "scenes"
SCENE_FILES = sorted(SCENES.glob("*.json"))


def test_example_scenes_exist():
    names = {p.stem for p in SCENE_FILES}
    assert {"empty", "sphere", "cube", "cylinder", "two_objects", "three_objects",
            "occlusion", "edge"} <= names


@pytest.mark.parametrize("path", SCENE_FILES, ids=lambda p: p.stem)
def test_golden_images(path, renderer, request):
    scene = load_scene(path, renderer.config.object_scale)
    actual = renderer.render_scenes([scene])[0]
    golden_path = path.with_suffix(".png")
    if request.config.getoption("--update-golden"):
        iio.imwrite(golden_path, actual)
    actual_dir = request.config.getoption("--golden-actual")
    if actual_dir:
        Path(actual_dir).mkdir(parents=True, exist_ok=True)
        iio.imwrite(Path(actual_dir) / golden_path.name, actual)
    golden = iio.imread(golden_path)
    assert golden.shape == actual.shape
    diff = np.abs(golden.astype(np.int32) - actual.astype(np.int32))
    # tolerance: a few edge pixels may flip between platforms, nothing more
    assert diff.mean() < 1.0, f"mean abs diff {diff.mean():.2f} (run with --golden-actual DIR to see)"
    assert (diff.max(axis=-1) > 8).mean() < 0.01


def test_empty_scene_is_the_background(renderer):
    shape = torch.full((2, 3), -1)
    images = renderer(shape, torch.zeros(2, 3, 2), torch.zeros(2, 3))
    assert images.shape == (2, 3, 64, 64)
    # exact: an empty scene's image is the background itself, nothing computed
    assert torch.equal(images[0], renderer.background)
    assert torch.equal(images[1], renderer.background)
    # the background shows ground (the lighter valid region included) and no object colour
    assert images.std() > 0


def test_batch_equals_one_by_one(renderer):
    rng = np.random.default_rng(3)
    from inverse_air.objects3d.prior import sample_scene
    scenes = [sample_scene(rng, c, renderer.config.object_scale) for c in [0, 3, 1, 2, 0, 3]]
    batch = renderer(*scenes_to_tensors(scenes, 3))
    for b, scene in enumerate(scenes):
        single = renderer(*scenes_to_tensors([scene], 3))
        torch.testing.assert_close(batch[b:b + 1], single)  # float32 rounding: the batch changes the last bits
        # padding with more empty slots changes nothing
        wide = renderer(*scenes_to_tensors([scene], 5))
        torch.testing.assert_close(wide, single)


def test_objects_rest_on_the_ground_and_move_with_position(renderer):
    def mask(x, z):
        img = renderer(*scenes_to_tensors([Scene((ObjectSpec("cube", (x, z)),))]))[0]
        return (img - renderer.background).abs().sum(0) > 1e-6

    centre = mask(0.0, 0.0).nonzero().float().mean(0)
    right = mask(0.5, 0.0).nonzero().float().mean(0)
    front = mask(0.0, 0.5).nonzero().float().mean(0)
    # +x is to the right in the image (columns grow); +z is towards the camera (rows grow)
    assert right[1] > centre[1] + 3 and abs(right[0] - centre[0]) < 2
    assert front[0] > centre[0] + 3


def test_hard_and_soft_agree_away_from_edges(renderer):
    scene = load_scene(SCENES / "three_objects.json", renderer.config.object_scale)
    args = scenes_to_tensors([scene])
    hard = renderer(*args)[0]
    soft = renderer(*args, soft=True)[0]
    # pixels whose 5x5 neighbourhood is uniform in the hard render are far from every edge
    padded = torch.nn.functional.pad(hard[None], (2, 2, 2, 2), mode="replicate")
    patches = padded.unfold(2, 5, 1).unfold(3, 5, 1)  # (1, 3, H, W, 5, 5)
    interior = (patches.amax((-1, -2)) - patches.amin((-1, -2))).amax(1)[0] < 1e-6
    assert interior.float().mean() > 0.5
    assert (hard - soft).abs().amax(0)[interior].max() < 0.02
    # near edges the soft render blends, so it differs somewhere
    assert (hard - soft).abs().max() > 0.1


@pytest.mark.parametrize("shape", ["cube", "cylinder", "sphere"])
def test_soft_gradients_match_finite_differences(small_renderer, shape):
    torch.manual_seed(0)
    scene = Scene((ObjectSpec(shape, (0.15, 0.25), 30.0), ObjectSpec("cube", (-0.5, -0.4), 10.0)))
    s, position, yaw = scenes_to_tensors([scene])
    # a reconstruction loss against the scene with the first object moved and turned a little
    with torch.no_grad():
        target = small_renderer(s, position + torch.tensor([0.08, -0.06]) * (torch.arange(2) == 0)[:, None],
                                yaw + 0.2 * (torch.arange(2) == 0), soft=True)

    def loss(p, y):
        return (small_renderer(s, p, y, soft=True) - target).square().sum()

    p = position.clone().requires_grad_(True)
    y = yaw.clone().requires_grad_(True)
    loss(p, y).backward()
    h = 2e-3
    checks = []
    for name, index, param in [("x", (0, 0, 0), position), ("z", (0, 0, 1), position),
                               ("yaw", (0, 0), yaw)]:
        if name == "yaw" and shape != "cube":
            continue  # spheres and cylinders barely change with yaw: nothing to compare
        plus, minus = param.clone(), param.clone()
        plus[index] += h
        minus[index] -= h
        with torch.no_grad():
            if name == "yaw":
                fd = (loss(position, plus) - loss(position, minus)) / (2 * h)
                analytic = y.grad[index]
            else:
                fd = (loss(plus, yaw) - loss(minus, yaw)) / (2 * h)
                analytic = p.grad[index]
        checks.append((name, fd.item(), analytic.item()))
    for name, fd, analytic in checks:
        assert abs(analytic) > 0.1, f"{name}: gradient vanished ({analytic})"
        assert abs(fd - analytic) <= 0.1 * abs(analytic), f"{name}: fd {fd} vs autograd {analytic}"


LOOK_STEPS = {"color": (0, 0, 1), "size": (0, 0), "light_direction": (0, 0), "ambient": (0,), "diffuse": (0,),
              "ground_color": (0, 2), "camera_elevation": (0, 0), "camera_azimuth": (0, 1), "camera_distance": (0, 2)}


@pytest.mark.parametrize("name", list(LOOK_STEPS))
def test_soft_gradients_of_the_look_match_finite_differences(small_renderer, name):
    """The ELBO trains colour, size, light, ground and camera through the soft renderer: its
    gradient with respect to each (one coordinate each) matches central finite differences."""
    scene = Scene((ObjectSpec("cube", (0.15, 0.25), 30.0), ObjectSpec("sphere", (-0.5, -0.4))))
    s, position, yaw = scenes_to_tensors([scene])
    look = {"color": torch.tensor([[[0.8, 0.4, 0.3], [0.3, 0.6, 0.9]]]), "size": torch.tensor([[0.55, 0.7]]),
            "light_direction": torch.tensor([[0.3, 0.8, 0.52]]), "ambient": torch.tensor([0.3]),
            "diffuse": torch.tensor([0.7]), "ground_color": torch.tensor([[0.3, 0.35, 0.2]]),
            "camera": torch.tensor([[52.0, 12.0, 6.1]])}
    key = name.split("_")[0] if name.startswith("camera") else name
    index = LOOK_STEPS[name]
    h = {"camera_elevation": 0.3, "camera_azimuth": 0.3, "camera_distance": 0.03}.get(name, 0.01)
    with torch.no_grad():
        moved = {**look, key: look[key].clone()}
        moved[key][index] += 20 * h  # the target: the same scene with this look a little different
        target = small_renderer(s, position, yaw, soft=True, **moved)

    def loss(value):
        return (small_renderer(s, position, yaw, soft=True, **{**look, key: value}) - target).square().sum()

    param = look[key].clone().requires_grad_(True)
    loss(param).backward()
    plus, minus = look[key].clone(), look[key].clone()
    plus[index] += h
    minus[index] -= h
    with torch.no_grad():
        fd = ((loss(plus) - loss(minus)) / (2 * h)).item()
    analytic = param.grad[index].item()
    assert abs(analytic) > 1e-2, f"{name}: gradient vanished ({analytic})"
    assert abs(fd - analytic) <= 0.1 * abs(analytic), f"{name}: fd {fd} vs autograd {analytic}"


def test_a_scene_files_look_is_rendered(renderer, tmp_path):
    """Scene files may give the camera, light, ground colour and objects' colours and sizes;
    what they leave out is the render config's."""
    import json

    plain = {"objects": [{"shape": "cube", "position": [0.2, 0.1]}]}
    looks = {"camera": {"elevation_deg": 45.0, "azimuth_deg": 20.0, "distance": 6.5},
             "light": {"direction": [1.0, 1.0, 0.0], "ambient": 0.25, "diffuse": 0.8},
             "ground_color": [0.5, 0.2, 0.1]}
    base = renderer.render_scenes([load_scene_text(tmp_path, plain)])[0]
    for key, value in looks.items():
        image = renderer.render_scenes([load_scene_text(tmp_path, {**plain, key: value})])[0]
        assert np.abs(image.astype(int) - base).max() > 20, key
    red = {"objects": [{"shape": "cube", "position": [0.2, 0.1], "color": [1.0, 0.0, 0.0], "size": 0.8}]}
    image = renderer.render_scenes([load_scene_text(tmp_path, red)])[0]
    cube = np.abs(image.astype(int) - renderer.render_scenes([load_scene_text(tmp_path, {"objects": []})])[0]).sum(-1) > 0
    assert cube.sum() > (np.abs(base.astype(int) - renderer.render_scenes([load_scene_text(tmp_path, {"objects": []})])[0]).sum(-1) > 0).sum()
    assert image[cube][:, 1].max() == 0 and image[cube][:, 0].max() > 100  # red albedo: no green
    # defaults given explicitly render the same bytes as leaving them out
    explicit = {"camera": {"elevation_deg": 60.0, "azimuth_deg": 0.0, "distance": 5.8},
                "light": {"direction": [-0.4, 1.0, 0.6], "ambient": 0.35, "diffuse": 0.65},
                "ground_color": [0.2, 0.25, 0.35],
                "objects": [{"shape": "cube", "position": [0.2, 0.1], "color": [0.95, 0.75, 0.3], "size": 0.6}]}
    same = renderer.render_scenes([load_scene_text(tmp_path, explicit)])[0]
    assert np.abs(same.astype(int) - base).max() <= 1


def load_scene_text(tmp_path, data):
    import json

    path = tmp_path / "scene.json"
    path.write_text(json.dumps(data))
    return load_scene(path, 0.6)


def test_soft_render_gives_gradients_to_every_object(small_renderer):
    scene = load_scene(SCENES / "three_objects.json", 0.6)
    s, position, yaw = scenes_to_tensors([scene, Scene()], 3)
    position.requires_grad_(True)
    yaw.requires_grad_(True)
    small_renderer(s, position, yaw, soft=True).square().sum().backward()
    assert (position.grad[0].abs().sum(-1) > 0).all()
    assert yaw.grad[0, 1].abs() > 0  # the cube
    assert position.grad[1].abs().sum() == 0  # the empty scene's slots


def test_shape_mismatch_is_reported(renderer):
    with pytest.raises(ValueError, match="expected position"):
        renderer(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, 2), torch.zeros(2, 3))


def test_to_uint8_rounds_and_clamps():
    images = torch.tensor([[[[0.0, 1.0], [0.5, 2.0]]]])  # (1, 1, 2, 2)
    out = to_uint8(images)
    assert out.shape == (1, 2, 2, 1) and out.dtype == np.uint8
    assert out[0, :, :, 0].tolist() == [[0, 255], [128, 255]]


def test_project_lands_on_the_rendered_object(renderer):
    """The image point ``project`` gives for an object is its rendered silhouette's centre."""
    positions = torch.tensor([[[0.8, -0.6]], [[-0.7, 0.9]], [[0.0, 0.0]], [[-0.9, -0.9]]])
    shape = torch.tensor([[0], [1], [2], [1]])
    with torch.no_grad():
        images = renderer(shape, positions, torch.zeros(4, 1))
        background = renderer(torch.full((1, 1), -1), torch.zeros(1, 1, 2), torch.zeros(1, 1))
    S = renderer.config.image_size
    for i in range(4):
        ys, xs = ((images[i] - background[0]).abs().sum(0) > 0.05).nonzero(as_tuple=True)
        expected = (renderer.project(positions[i, 0]) + 1) * S / 2 - 0.5  # pixel-centre units
        assert abs(xs.float().mean() - expected[0]) < 1.0 and abs(ys.float().mean() - expected[1]) < 1.0


def test_closed_form_cameras_are_pytorch3ds(renderer):
    """Projection and pixel rays use a closed-form camera: it is PyTorch3D's look-at camera."""
    from pytorch3d.renderer import look_at_view_transform

    from inverse_air.objects3d.render3d import camera_frames

    camera = torch.tensor([[60.0, 0.0, 5.8], [42.0, -25.0, 5.0], [69.0, 28.0, 6.6]])
    R, T = look_at_view_transform(dist=camera[:, 2], elev=camera[:, 0], azim=camera[:, 1],
                                  at=renderer.target)
    R2, T2 = renderer._batch_cameras(camera)
    torch.testing.assert_close(R2, R, atol=1e-5, rtol=0)
    torch.testing.assert_close(T2, T, atol=1e-4, rtol=0)
    positions = torch.tensor([[[0.3, -0.2], [-0.8, 0.9]]]).expand(3, 2, 2)
    cameras = renderer._cameras("cpu", R, T)
    points = torch.cat([positions[..., :1], torch.full_like(positions[..., :1], 0.3), positions[..., 1:]], -1)
    expected = -cameras.transform_points(points)[..., :2]
    torch.testing.assert_close(renderer.project(positions, camera), expected, atol=1e-5, rtol=0)
    # the default camera given explicitly draws the default background
    near, direction = renderer._camera_rays(*renderer._batch_cameras(camera[:1]))
    ground, inside = renderer._ground_masks((near, direction))
    assert (ground[0] == renderer.ground_mask).float().mean() > 0.999
    assert (inside[0] == renderer.inside_mask).float().mean() > 0.995


def test_a_cube_turned_by_the_cameras_azimuth_looks_unturned(renderer):
    """The convention the 3D model's yaw relies on (the yaw the camera sees plus its azimuth):
    a cube at the origin turned by ``a`` seen from azimuth ``a`` looks as the unturned cube from
    azimuth 0 (flat light, so the light's fixed direction does not tell them apart); turned the
    other way it does not."""
    shape, position = torch.tensor([[1]]), torch.zeros(1, 1, 2)
    look = dict(ambient=torch.tensor([1.0]), diffuse=torch.tensor([0.0]))

    def centre(yaw_deg, azimuth_deg):
        image = renderer(shape, position, torch.tensor([[math.radians(yaw_deg)]]),
                         camera=torch.tensor([[60.0, azimuth_deg, 5.8]]), **look)[0]
        return image[:, 20:44, 20:44]

    unturned = centre(10.0, 0.0)
    assert (centre(30.0, 20.0) - unturned).abs().mean() < 0.003
    assert (centre(-10.0, 20.0) - unturned).abs().mean() > 0.02
