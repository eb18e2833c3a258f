"""Build an AIR model of a given kind from its configuration."""

from __future__ import annotations

from .air import AIR
from .config import AIRConfig

MODEL_KINDS = ("3d", "2d")
"""Model kinds ``build_model`` knows (``AIRConfig.model``)."""


def build_model(config: AIRConfig) -> AIR:
    """A freshly initialized :class:`AIR` with the object model ``config.model`` names."""
    if config.model == "3d":
        from .model3d import Objects3D

        return AIR(config, Objects3D(config), channels=config.channels)
    if config.model == "2d":
        from .model2d import Objects2D

        return AIR(config, Objects2D(config), channels=config.channels)
    raise ValueError(f"unknown model kind {config.model!r} (known: {', '.join(MODEL_KINDS)})")
