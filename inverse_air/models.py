"""Build an AIR model of a given kind from its configuration."""

from __future__ import annotations

from .air import AIR
from .config import AIRConfig


def build_model(config: AIRConfig) -> AIR:
    """A freshly initialized :class:`AIR` with the object model of ``config.objects``'s kind."""
    from .kinds import KINDS

    return AIR(config, KINDS[config.kind].build_objects(config))
