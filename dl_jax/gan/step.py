"""One jitted GAN step that updates both players: the discriminator, then the generator.

Step s draws keys from fold_in(root, s): stream 'gen' for the latent codes, 'dropout' for the
discriminator's dropout and 'augment' for the random transforms of its inputs (dl_jax.gan.augment;
each stream gives one key for the discriminator's update, a different one for the generator's). The
generator runs forward once: its samples train the discriminator (as constants), and the
generator's gradient is pulled back through the same forward pass (`jax.vjp`) from the *updated*
discriminator, as in alternating GAN training. Last, the generator's weight average moves
towards its new variables (dl_jax.gan.ema).
"""

import jax
import jax.numpy as jnp
import optax

from dl_jax.gan.ema import ema_decay_at, ema_update
from dl_jax.gan.losses import discriminator_loss, generator_loss
from dl_jax.gan.state import GANState, generator_variables, latent_noise
from dl_jax.train.rng import step_rngs

GAN_STREAMS = ("gen", "dropout", "augment")


def step_keys(root: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
  """The keys of step `step`: latent codes ('gen'), and the discriminator's dropout and input
  augmentation in its own update and in the generator's (two halves of the 'dropout' and of the
  'augment' stream): never shared, never reused."""
  rngs = step_rngs(root, step, GAN_STREAMS)
  d_dropout, g_dropout = jax.random.split(rngs["dropout"])
  d_augment, g_augment = jax.random.split(rngs["augment"])
  return {"gen": rngs["gen"], "d_dropout": d_dropout, "g_dropout": g_dropout,
          "d_augment": d_augment, "g_augment": g_augment}


def no_augmentation(key: jax.Array, images: jax.Array) -> jax.Array:
  """The default `augment`: the discriminator sees the images as they are."""
  del key
  return images


def gan_step_fn(generator, discriminator, latent_dim: int, ema_decay: float = 0.999,
                augment=no_augmentation, r1_weight: float = 0.0, r1_every: int = 1):
  """The un-jitted `gan_step(state, batch) -> (new_state, metrics)`, to jit or vmap over seeds.

  `batch['x']` holds real images [batch, H, W, C]; labels are ignored. `ema_decay` is the
  generator weight average's decay (0: the average is the last weights). `augment(key, images)`
  transforms every image the discriminator sees, real and generated, in both updates (e.g.
  dl_jax.gan.augment.augment with its policy bound; by default none). `r1_weight` > 0 adds
  r1_weight / 2 * E|grad_x D(x)|^2 on real images to the discriminator's loss (Mescheder et al.
  2018): it flattens the discriminator around the data. With `r1_every` k > 1 the penalty is
  "lazy" (Karras et al. 2020, sec. 3.1): computed on every k-th step only, weighted k times, for
  about 1/k of its cost. Metrics: both losses, the mean D(x) and D(G(z)), and each player's
  gradient and parameter norms.
  """
  if r1_weight < 0 or r1_every < 1:
    raise ValueError(f"the R1 penalty needs r1_weight >= 0 and r1_every >= 1; got r1_weight "
                     f"{r1_weight}, r1_every {r1_every}")

  def gan_step(state: GANState, batch: dict) -> tuple[GANState, dict]:
    real = batch["x"]
    keys = step_keys(state.key, state.step)
    z = latent_noise(keys["gen"], real.shape[0], latent_dim)
    g_state, d_state = state.generator, state.discriminator

    def generate(g_params):
      variables = {"params": g_params, **g_state.model_state}
      return generator.apply(variables, z, train=True, mutable=list(g_state.model_state))

    fake, pull_back, g_model_state = jax.vjp(generate, g_state.params, has_aux=True)

    def discriminate(d_params, images, dropout_key, augment_key):
      return discriminator.apply({"params": d_params}, augment(augment_key, images), train=True,
                                 rngs={"dropout": dropout_key})

    def d_loss_fn(d_params):
      logits = discriminate(d_params, jnp.concatenate([real, fake]), keys["d_dropout"],
                            keys["d_augment"])
      real_logits, fake_logits = jnp.split(logits, 2)
      loss = jnp.mean(discriminator_loss(real_logits, fake_logits))
      if r1_weight:
        penalty = lambda: r1_weight * r1_every / 2 * r1_penalty(
            lambda x: discriminate(d_params, x, keys["d_dropout"], keys["d_augment"]), real)
        loss += (penalty() if r1_every == 1 else
                 jax.lax.cond(state.step % r1_every == 0, penalty, lambda: jnp.zeros(())))
      return loss, (real_logits, fake_logits)

    (d_loss, (real_logits, fake_logits)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(d_state.params)
    d_state = d_state.apply_gradients(grads=d_grads)

    def g_loss_fn(images):
      return jnp.mean(generator_loss(discriminate(d_state.params, images, keys["g_dropout"],
                                                  keys["g_augment"])))

    g_loss, image_grads = jax.value_and_grad(g_loss_fn)(fake)
    (g_grads,) = pull_back(image_grads)
    g_state = g_state.apply_gradients(grads=g_grads, model_state=g_model_state)
    metrics = {"d_loss": d_loss, "g_loss": g_loss,
               "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
               "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
               "d_grad_norm": optax.tree.norm(d_grads), "g_grad_norm": optax.tree.norm(g_grads),
               "d_param_norm": optax.tree.norm(d_state.params),
               "g_param_norm": optax.tree.norm(g_state.params)}
    ema = ema_update(state.generator_ema, generator_variables(g_state),
                     ema_decay_at(state.step, ema_decay))
    new_state = state.replace(step=state.step + 1, generator=g_state, discriminator=d_state,
                              generator_ema=ema)
    return new_state, metrics

  return gan_step


def r1_penalty(logits_fn, real: jax.Array) -> jax.Array:
  """Mean over real images of |d logit / d image|^2; every logit depends on its own image only,
  so one gradient of their sum gives all of them."""
  grads = jax.grad(lambda x: jnp.sum(logits_fn(x)))(real)
  return jnp.mean(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1))


def make_gan_step(generator, discriminator, latent_dim: int, ema_decay: float = 0.999,
                  augment=no_augmentation, r1_weight: float = 0.0, r1_every: int = 1,
                  vmap_seeds: bool = False):
  """`gan_step_fn` jitted with the state donated; `vmap_seeds` steps states stacked over seeds
  (batches stacked [seeds, batch, ...])."""
  step = gan_step_fn(generator, discriminator, latent_dim, ema_decay, augment, r1_weight,
                     r1_every)
  return jax.jit(jax.vmap(step) if vmap_seeds else step, donate_argnums=0)
