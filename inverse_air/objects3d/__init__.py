"""The 3D kind: spheres, cubes and cylinders on a ground plane, drawn by a fixed PyTorch3D
renderer; each object has a categorical identity and a pose.

- :mod:`.config`: ``RenderConfig``, ``Objects3DConfig``, ``Scenes3DConfig``;
- :mod:`.scene`: scene files (objects, JSON I/O, validation; no torch);
- :mod:`.prior`: the scene prior, its sampler and densities;
- :mod:`.render3d`: the renderer (the only module that imports PyTorch3D);
- :mod:`.model3d`: the object model for the AIR core;
- :mod:`.metrics`: identity, position and yaw metrics;
- :mod:`.kind`: all of it as one :class:`inverse_air.kinds.Kind`, :data:`KIND`.
"""

from .kind import KIND

__all__ = ["KIND"]
