"""Regenerate the unit-size, low-poly primitive meshes in this folder.

    python assets/meshes/make_meshes.py

Each mesh is centred at the origin with +Y up (PyTorch3D's world frame): sphere of radius 0.5,
cube of side 1, cylinder of radius 0.5 and height 1 with its axis along Y. They are low-poly on
purpose: CPU rasterization cost grows with faces x pixels. The renderer lifts each object by
half its height so that it rests on the ground plane y = 0.
"""

from pathlib import Path

import numpy as np
import trimesh

HERE = Path(__file__).resolve().parent


def make() -> dict[str, trimesh.Trimesh]:
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=0.5)  # 80 faces
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))  # 12 faces
    cylinder = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=12)  # axis along Z
    z_to_y = trimesh.transformations.rotation_matrix(-np.pi / 2, [1.0, 0.0, 0.0])
    cylinder.apply_transform(z_to_y)
    return {"sphere": sphere, "cube": cube, "cylinder": cylinder}


if __name__ == "__main__":
    for name, mesh in make().items():
        assert mesh.is_watertight and mesh.is_winding_consistent, name
        mesh.export(HERE / f"{name}.obj", include_normals=False, include_texture=False)
        print(f"{name}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, extents {mesh.extents}")
