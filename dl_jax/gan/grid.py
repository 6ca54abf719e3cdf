"""PNG grids of generated images: one panel per seed, the same fixed latent codes at every save."""

import numpy as np

from dl_jax.plots import save_figure, subplots


def tile(images: np.ndarray, columns: int) -> np.ndarray:
  """Images [n, H, W, 1] as one [rows * H, columns * W] mosaic (missing cells left black)."""
  images = np.asarray(images)[..., 0]
  n, height, width = images.shape
  rows = -(-n // columns)
  canvas = np.zeros((rows * height, columns * width), images.dtype)
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    canvas[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
  return canvas


def save_sample_grid(panels: dict[str, np.ndarray], path: str, title: str,
                     columns: int = 8) -> str:
  """One grayscale mosaic per panel (e.g. per seed), side by side; pixels in [0, 1]."""
  fig, axes = subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
  for ax, (label, images) in zip(axes[0], panels.items()):
    ax.imshow(tile(images, columns), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(label, fontsize=9)
    ax.axis("off")
  fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)
