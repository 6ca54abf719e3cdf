"""Generative adversarial networks: DCGAN modules, differentiable augmentation of the
discriminator's inputs, the two-player training step, and the classifier-feature evaluation
(class coverage and Fréchet distance) of what a generator draws."""

from dl_jax.gan.augment import augment
from dl_jax.gan.coverage import class_coverage
from dl_jax.gan.dcgan import Discriminator, Generator
from dl_jax.gan.features import classifier_outputs, make_classifier_outputs
from dl_jax.gan.frechet import frechet_distance, gaussian_stats
from dl_jax.gan.grid import save_sample_grid
from dl_jax.gan.losses import discriminator_loss, generator_loss
from dl_jax.gan.metrics import discriminator_metrics
from dl_jax.gan.state import GANState, generate, init_gan_state, latent_noise
from dl_jax.gan.step import GAN_STREAMS, gan_step_fn, make_gan_step, step_keys

__all__ = [
    "Discriminator", "GANState", "GAN_STREAMS", "Generator", "augment", "class_coverage",
    "classifier_outputs", "discriminator_loss", "discriminator_metrics", "frechet_distance",
    "gan_step_fn", "gaussian_stats", "generate", "generator_loss", "init_gan_state",
    "latent_noise", "make_classifier_outputs", "make_gan_step", "save_sample_grid", "step_keys",
]
