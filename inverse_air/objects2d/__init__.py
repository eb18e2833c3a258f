"""The 2D kind (multi-MNIST, the paper's first experiment): digits drawn by a learned VAE
decoder into windows that a spatial transformer places on the canvas.

- :mod:`.config`: ``Compose2DConfig``, ``Objects2DConfig``;
- :mod:`.multimnist`: digit sources and the composition of canvases (no torch);
- :mod:`.render2d`: the spatial transformer (the box convention) and the decoder;
- :mod:`.model2d`: the object model for the AIR core;
- :mod:`.metrics`: window position and scale metrics;
- :mod:`.kind`: all of it as one :class:`inverse_air.kinds.Kind`, :data:`KIND`.
"""

from .kind import KIND

__all__ = ["KIND"]
