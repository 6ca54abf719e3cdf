"""Training core: state, jitted steps, evaluation, the fit loop and checkpoints."""

from dl_jax.train.checkpoint import Checkpointer
from dl_jax.train.classification import classification_loss, classification_metrics
from dl_jax.train.evaluate import evaluate, make_eval_step
from dl_jax.train.fit import FitConfig, NonFiniteError, fit, params_fingerprint
from dl_jax.train.rng import step_rngs, stream_key
from dl_jax.train.state import TrainState, count_params, create_train_state
from dl_jax.train.step import make_train_step

__all__ = [
    "Checkpointer", "FitConfig", "NonFiniteError", "TrainState", "classification_loss",
    "classification_metrics", "count_params", "create_train_state", "evaluate", "fit",
    "make_eval_step", "make_train_step", "params_fingerprint", "step_rngs", "stream_key",
]
