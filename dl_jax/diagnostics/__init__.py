"""Diagnostics: measurements of a network's state (e.g. gradient size per layer), pure functions."""

from dl_jax.diagnostics.gradients import first_last_ratio, kernel_norms, layer_gradient_norms

__all__ = ["first_last_ratio", "kernel_norms", "layer_gradient_norms"]
