"""A trained classifier's class probabilities and penultimate features, for evaluating samples.

The features are the last hidden layer of the classifier's MLP head, which `dl_jax.models.MLP`
sows into the 'intermediates' collection: no change to the model, no second forward pass.
"""

import flax.linen as nn
import jax
import numpy as np


def _sown_features(intermediates) -> jax.Array:
  """The last hidden activations the head sowed (the input of the output layer)."""
  sown = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(intermediates)
          if "activations" in jax.tree_util.keystr(path)]
  if not sown:
    raise ValueError("the classifier sowed no hidden activations: give its MLP head at least "
                     "one hidden layer (e.g. CNN(widths=(128,))) to have penultimate features")
  return sown[-1]


def make_classifier_outputs(model: nn.Module):
  """`outputs(params, model_state, x) -> (probabilities, features)`, jitted, in eval mode."""

  def outputs(params, model_state, x):
    logits, state = model.apply({"params": params, **model_state}, x, train=False,
                                mutable=["intermediates"])
    return jax.nn.softmax(logits), _sown_features(state.get("intermediates", {}))

  return jax.jit(outputs)


def classifier_outputs(outputs_fn, params, model_state, images: np.ndarray,
                       batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
  """Probabilities [n, classes] and features [n, d] of `images`, in fixed-size batches (the last
  one padded) so the function compiles once."""
  images = np.asarray(images, dtype=np.float32)
  probabilities, features = [], []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]),
                                             np.float32)]) if len(chunk) < batch_size else chunk
    p, f = jax.device_get(outputs_fn(params, model_state, padded))
    probabilities.append(p[:len(chunk)])
    features.append(f[:len(chunk)])
  return np.concatenate(probabilities), np.concatenate(features)
