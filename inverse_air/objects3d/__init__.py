"""The 3D kind: spheres, cubes and cylinders on a ground plane, drawn by a fixed PyTorch3D
renderer; each object has a categorical identity and a pose.

- :mod:`.look`: the look's table of factors (camera, light, ground, colour, size; no torch);
- :mod:`.config`: ``RenderConfig``, ``Objects3DConfig``, ``Scenes3DConfig``;
- :mod:`.scene`: scene files (objects, JSON I/O, validation; no torch);
- :mod:`.prior`: the scene prior, its sampler and densities;
- :mod:`.render3d`: the renderer (the only module that imports PyTorch3D);
- :mod:`.model3d`: the object model for the AIR core;
- :mod:`.scene_posterior`: the posterior over an image's look; :mod:`.posterior`: what it and
  the object model's posterior share;
- :mod:`.codec`: ground truth <-> latents, latents -> a scene file's terms;
- :mod:`.metrics`: identity, position, yaw and look metrics;
- :mod:`.kind`: all of it as one :class:`inverse_air.kinds.Kind`, :data:`KIND`.
"""

from .kind import KIND

__all__ = ["KIND"]
