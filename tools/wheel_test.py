"""Test the wheel as a user gets it (``make wheel-test``; CI runs it after the test suite).

    python tools/wheel_test.py --python .venv/bin/python --work /tmp/wheel-test

1. builds the wheel of this checkout (``pip wheel --no-deps``);
2. makes a fresh virtual environment in ``WORK/venv``, outside the checkout, that reuses the
   test environment's packages (torch and PyTorch3D are 4.8 GB: a ``.pth`` file puts the test
   venv's ``site-packages`` on its path, after its own) and installs the wheel there without
   dependencies; ``pip check`` then checks that every dependency the wheel declares is met;
3. from ``WORK/run`` (not the checkout), runs ``inverse-air --version``, ``render-scene``,
   ``decompose`` with both shipped models, a tiny 3D and 2D ``render-dataset``, and the Python
   API, and checks that ``inverse_air`` was imported from the wheel, not from the checkout,
   and that the renderer reads the meshes the wheel ships (``assets/meshes`` of the checkout,
   as ``inverse_air/assets/meshes``);
4. prints the wheel's size, the installed package's size and the installed size of the
   package with all its dependencies.

Exit status 0 when everything worked (``WORK`` is then removed); the first failure is printed
with its output (and ``WORK`` kept to look at).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    print("+", " ".join(map(str, cmd)), flush=True)
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        sys.exit(f"wheel-test: failed (exit {done.returncode}): {' '.join(map(str, cmd))}")
    return done.stdout


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def installed_size(name: str) -> tuple[int, list[str]]:
    """Bytes installed by distribution ``name`` and every distribution it requires (this
    interpreter's environment), and their names."""
    seen, todo, total = set(), [name], 0
    while todo:
        dist_name = todo.pop()
        key = dist_name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            if path.is_file():
                total += path.stat().st_size
        for req in dist.requires or []:
            try:
                from packaging.requirements import Requirement

                parsed = Requirement(req)
                if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                    todo.append(parsed.name)
            except ImportError:  # no packaging: take the name, skip anything conditional
                if ";" not in req:
                    todo.append(re.match(r"[A-Za-z0-9._-]+", req).group(0))
    return total, sorted(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="the test venv's python (has the dependencies)")
    parser.add_argument("--work", required=True, help="an empty or missing directory outside the checkout")
    args = parser.parse_args()
    args.python = str(Path(args.python).absolute())
    work = Path(args.work).absolute()
    if ROOT in work.parents or work == ROOT:
        sys.exit("wheel-test: --work must be outside the checkout")
    shutil.rmtree(work, ignore_errors=True)
    dist, venv, cwd = work / "dist", work / "venv", work / "run"
    cwd.mkdir(parents=True)

    run([args.python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, ROOT], cwd=work)
    wheel = next(dist.glob("inverse_air-*.whl"))
    test_site = run([args.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work).strip()
    base = run([args.python, "-c", "import sys; print(getattr(sys, '_base_executable', sys.executable))"], cwd=work).strip()
    run([base, "-m", "venv", venv], cwd=work)
    py = venv / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work).strip())
    (site / "zz_test_venv.pth").write_text(test_site + "\n")  # after the venv's own packages
    run([py, "-m", "pip", "install", "--quiet", "--no-deps", wheel], cwd=work)
    run([py, "-m", "pip", "check"], cwd=work)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cli = venv / "bin" / "inverse-air"
    for name in ("two_objects.json", "two_objects.png"):
        shutil.copy(ROOT / "scenes" / name, cwd / name)
    shutil.copy(ROOT / "scenes" / "mnist" / "digits-2.png", cwd / "digits.png")
    where = run([py, "-c", "import inverse_air, inverse_air.objects3d.render3d as r; "
                           "print(inverse_air.__file__); print(r.MESH_DIR)"], cwd=cwd, env=env)
    if str(ROOT) in where or str(site) not in where:
        sys.exit(f"wheel-test: inverse_air was not imported from the wheel:\n{where}")
    meshes = Path(where.split()[-1])  # assets/meshes of the checkout, shipped as inverse_air.assets
    if meshes != site / "inverse_air" / "assets" / "meshes" or \
            sorted(p.name for p in meshes.glob("*.obj")) != ["cube.obj", "cylinder.obj", "sphere.obj"]:
        sys.exit(f"wheel-test: the meshes are not the wheel's inverse_air/assets/meshes: {meshes}")
    run([cli, "--version"], cwd=cwd, env=env)
    run([cli, "render-scene", "two_objects.json", "-o", "back.png"], cwd=cwd, env=env)
    out = run([cli, "decompose", "two_objects.png", "back.png", "--json"], cwd=cwd, env=env)
    if out.count('"count": 2') != 2:
        sys.exit(f"wheel-test: decompose did not find the two objects:\n{out}")
    out = run([cli, "decompose", "two_objects.png", "--model", "air3d-looks", "--json"], cwd=cwd, env=env)
    if '"camera"' not in out or '"count"' not in out:
        sys.exit(f"wheel-test: decompose --model air3d-looks gave no scene look:\n{out}")
    out = run([cli, "decompose", "digits.png", "--model", "2d", "--json"], cwd=cwd, env=env)
    if '"count"' not in out:
        sys.exit(f"wheel-test: decompose --model 2d gave no result:\n{out}")
    run([cli, "render-dataset", "data3d", "--num", 6, "--image-size", 24, "--shard-size", 3, "--quiet"], cwd=cwd, env=env)
    run([cli, "render-dataset", "data2d", "--model", "2d", "--num", 6, "--quiet"], cwd=cwd, env=env)
    api = run([py, "-c", "from inverse_air import Decomposer; from PIL import Image; "
                         "d = Decomposer('3d'); print(d('two_objects.png')['count'], "
                         "d(Image.open('two_objects.png'))['count'])"], cwd=cwd, env=env)
    if api.split() != ["2", "2"]:
        sys.exit(f"wheel-test: the Python API gave {api!r}")

    package = site / "inverse_air"
    closure = run([py, "-c", "import sys; sys.path.insert(0, %r); from wheel_test import installed_size; "
                             "t, n = installed_size('inverse-air'); print(t); print(' '.join(n))"
                   % str(Path(__file__).parent)], cwd=cwd, env=env).split("\n")
    print(f"wheel-test: passed\n"
          f"  wheel {wheel.name}: {wheel.stat().st_size / 1e6:.2f} MB\n"
          f"  installed package (site-packages/inverse_air): {tree_size(package) / 1e6:.2f} MB\n"
          f"  installed with its dependencies: {int(closure[0]) / 1e9:.2f} GB ({closure[1]})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
