"""Flax modules. Each is a pure function of (variables, inputs, train, rngs)."""

from dl_jax.models.mlp import MLP
from dl_jax.models.registry import MODELS, make_model

__all__ = ["MLP", "MODELS", "make_model"]
