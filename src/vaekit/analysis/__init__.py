"""Analysis of trained models: image grids of samples and reconstructions."""

from .images import as_images, image_grid, save_image_grid

__all__ = ["as_images", "image_grid", "save_image_grid"]
