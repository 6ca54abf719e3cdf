"""Flax modules. Each is a pure function of (variables, inputs, train, rngs)."""

from dl_jax.models.cnn import CNN, flax_mnist_cnn, mnist1d_bn_cnn, mnist1d_cnn
from dl_jax.models.dropconnect import DropConnectDense
from dl_jax.models.dropout import GaussianDropout
from dl_jax.models.mlp import MLP
from dl_jax.models.registry import MODELS, make_model
from dl_jax.models.rnn import RNNClassifier, TorchGRUCell, mnist1d_gru
from dl_jax.models.siamese import PairEncoder, SharedTrunk

__all__ = ["CNN", "DropConnectDense", "GaussianDropout", "MLP", "MODELS", "PairEncoder",
           "RNNClassifier", "SharedTrunk", "TorchGRUCell", "flax_mnist_cnn", "make_model",
           "mnist1d_bn_cnn", "mnist1d_cnn", "mnist1d_gru"]
