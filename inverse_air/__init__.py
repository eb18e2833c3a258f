"""inverse-air: inverse graphics with Attend, Infer, Repeat."""

__version__ = "0.1.0"
