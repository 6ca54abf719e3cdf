"""dl_jax: why deep learning works, as reproducible, measured JAX/Flax experiments."""

__version__ = "0.1.0"
