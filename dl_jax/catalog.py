"""The names a command line chooses from, kept apart from the code they name.

A flag lists its choices in --help; reading them from here lets --help answer without importing
JAX, Flax or optax (seconds of a run's start). Each registry is keyed by these names, and a test
holds the two to the same set.
"""

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "sigmoid", "tanh",
               "identity")
MODELS = ("linear", "mlp", "cnn", "cnn_mnist1d", "cnn_mnist1d_bn", "cnn_flax_mnist", "rnn",
          "gru_mnist1d")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
