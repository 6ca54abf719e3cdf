"""How well the discriminator tells real images from generated ones, per example: evaluated on
train, validation and test images, its gap is the GAN's overfitting signal (a discriminator that
memorised the training digits calls them real far more often than held-out digits)."""

import jax

from dl_jax.gan.losses import generator_loss


def discriminator_metrics(discriminator):
  """metrics_fn(params, model_state, batch) -> per-example {'loss', 'accuracy'} on real images:
  loss -log D(x), accuracy 1 where D calls the image real (logit > 0). `params` is a GANState's
  {'generator', 'discriminator'} tree; dropout is off."""

  def metrics_fn(params, model_state, batch) -> dict[str, jax.Array]:
    del model_state  # the discriminator has no batch statistics
    logits = discriminator.apply({"params": params["discriminator"]}, batch["x"], train=False)
    return {"loss": generator_loss(logits), "accuracy": (logits > 0).astype(jax.numpy.float32)}

  return metrics_fn
