"""Choices shared by light modules (configs, presets) and the JAX modules that act on them."""

from typing import Literal


NormalizerKind = Literal["zscore", "bounded", "none"]
"""How observations are normalised: z-score (the paper), into [-1, 1] by the data's bounds, or not."""
