"""inverse-air: inverse graphics with Attend, Infer, Repeat.

The Python API (imported when first used, so ``import inverse_air`` stays cheap)::

    from inverse_air import Decomposer

    decomposer = Decomposer("3d")                    # the shipped 3D model; "2d": multi-MNIST
    result = decomposer("scenes/two_objects.png")    # a path, a PIL image or an (H, W, C) array
    print(result["count"], result["objects"])
"""

__version__ = "0.1.0"

__all__ = ["Decomposer", "__version__"]


def __getattr__(name: str):
    if name == "Decomposer":
        from .decompose import Decomposer

        return Decomposer
    raise AttributeError(f"module 'inverse_air' has no attribute {name!r}")
