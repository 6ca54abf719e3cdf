"""The benchmark's models written in PyTorch, layer for layer as dl_jax builds them.

Only `experiments.benchmark` imports this, and only when the optional `bench` extra (torch) is
installed. Inputs arrive as dl_jax lays them out (channels last); each model moves channels first.
"""

import torch
from torch import nn


class ChannelsFirst(nn.Module):
  """[B, *spatial, C] or [B, length] -> [B, C, *spatial], PyTorch's convolution layout."""

  def forward(self, x):
    if x.dim() == 2:
      return x[:, None, :]
    return x.movedim(-1, 1)


class BiGRUClassifier(nn.Module):
  """Bidirectional GRU over [B, T] signals (one feature per step), every step into a linear head."""

  def __init__(self, hidden: int, length: int, num_outputs: int):
    super().__init__()
    self.gru = nn.GRU(1, hidden, batch_first=True, bidirectional=True)
    self.head = nn.Linear(2 * hidden * length, num_outputs)

  def forward(self, x):
    out, _ = self.gru(x[..., None])
    return self.head(out.flatten(1))


def flax_mnist_cnn() -> nn.Module:
  """conv 32, avg-pool, conv 64, avg-pool, Dense 256, head: dl_jax's `flax_mnist_cnn`."""
  return nn.Sequential(
      ChannelsFirst(), nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
      nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
      nn.Linear(7 * 7 * 64, 256), nn.ReLU(), nn.Linear(256, 10))


def mlp(widths: tuple[int, ...], inputs: int) -> nn.Module:
  layers, width_in = [nn.Flatten()], inputs
  for width in widths:
    layers += [nn.Linear(width_in, width), nn.ReLU()]
    width_in = width
  return nn.Sequential(*layers, nn.Linear(width_in, 10))


def mnist1d_cnn() -> nn.Module:
  """Three stride-2 convs of 25 channels (kernels 5, 3, 3, padding 1), a linear head: 5,210."""
  return nn.Sequential(
      ChannelsFirst(), nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
      nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
      nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(125, 10))


def mnist1d_gru() -> nn.Module:
  return BiGRUClassifier(hidden=6, length=40, num_outputs=10)


def make_train_step(model: nn.Module, learning_rate: float, compiled: bool):
  """step(x, y) -> loss: one Adam step on softmax cross-entropy, eager or `torch.compile`d."""
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
  loss_fn = nn.CrossEntropyLoss()

  def step(x, y):
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss

  return torch.compile(step) if compiled else step


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())
