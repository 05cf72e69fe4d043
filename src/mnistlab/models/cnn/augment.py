"""Batched data augmentation for digit images: one ``grid_sample`` per batch.

Every image in a batch gets its own random shift, rotation, scale and
(optionally) elastic distortion, but no Python code runs per image: the
random affine matrices are built as one (N, 2, 3) tensor, turned into a
sampling grid by ``affine_grid``, the elastic displacement is added to that
same grid, and a single ``grid_sample`` call warps the whole batch.

Elastic distortion (Simard et al., 2003) is a smooth random displacement
field. Instead of smoothing per-pixel noise with a large Gaussian, we draw
the noise on a coarse 4 x 4 grid and upsample it bicubically: the same kind
of smooth field for a fraction of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augmentation", "AUGMENTATIONS", "augment_batch"]


@dataclass(frozen=True)
class Augmentation:
    shift: float  # max shift in pixels, each axis
    rotation: float  # max rotation in degrees
    scale: float  # max relative change of size, each axis (0.1 -> 90% .. 110%)
    elastic: float  # max elastic displacement in pixels (0: none)
    shear: float = 0.0  # max slant, columns per row (hands lean left and right); 0: none
    stroke: float = 0.0  # chance that a digit's strokes are thickened, and again that they are thinned; 0: none
    coarse: float = 0.0  # chance that a digit is seen at 10-14 px and blown up again (a low-resolution scan); 0: none


AUGMENTATIONS: dict[str, Augmentation | None] = {
    "none": None,
    "light": Augmentation(shift=2.0, rotation=8.0, scale=0.08, elastic=0.0),
    "full": Augmentation(shift=2.5, rotation=12.0, scale=0.12, elastic=1.5),
    # Other hands than MNIST's ~500 writers: more slant, other pens, wobblier strokes.
    "hands": Augmentation(shift=2.0, rotation=12.0, scale=0.12, elastic=1.0, shear=0.3, stroke=0.25, coarse=0.15),
}


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, device=device) * 2 - 1) * bound


def augment_batch(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Randomly warp a batch of images x (N, C, H, W) float; returns the same shape."""
    n, _, h, w = x.shape
    dev = x.device
    # affine_grid works in normalised coordinates where the image spans [-1, 1]:
    # one pixel is 2/W wide.
    angle = _uniform((n,), math.radians(aug.rotation), generator, dev)
    sx = 1 + _uniform((n,), aug.scale, generator, dev)
    sy = 1 + _uniform((n,), aug.scale, generator, dev)
    tx = _uniform((n,), aug.shift * 2 / w, generator, dev)
    ty = _uniform((n,), aug.shift * 2 / h, generator, dev)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps output coordinates to input coordinates, (N, 2, 3).
    theta = torch.stack([torch.stack([sx * cos, -sx * sin, tx], 1), torch.stack([sy * sin, sy * cos, ty], 1)], 1)
    if aug.shear > 0:  # x_in += shear * y_out: the rows slide sideways, the digit leans
        theta = theta.clone()
        theta[:, 0, 1] += _uniform((n,), aug.shear, generator, dev) * h / w
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)  # (N, H, W, 2)
    if aug.elastic > 0:
        coarse = _uniform((n, 2, 4, 4), 1.0, generator, dev)  # (N, 2, 4, 4) in [-1, 1]
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)  # (N, 2, H, W)
        scale = torch.tensor([2 / w, 2 / h], device=dev) * aug.elastic  # pixels -> grid units
        grid = grid + field.permute(0, 2, 3, 1) * scale
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.stroke > 0:
        x = _restroke(x, aug.stroke, generator)
    return _coarsen(x, aug.coarse, generator) if aug.coarse > 0 else x


def _coarsen(x: torch.Tensor, chance: float, generator: torch.Generator) -> torch.Tensor:
    """A share ``chance`` of the images shrunk to 10-14 px, blown up again and sharpened: blobby, thick strokes."""
    n, _, h, w = x.shape
    draw = torch.rand((n, 1, 1, 1), generator=generator, device=x.device)  # (N, 1, 1, 1)
    side = int(torch.randint(10, 15, (1,), generator=generator, device=x.device))  # one size per batch
    small = F.interpolate(x, size=(side, side), mode="area")  # (N, 1, side, side)
    blown = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    blown = ((blown - 0.3) * 4.0).clamp(0, 1)  # the crisp edge of a thresholded blow-up
    return torch.where(draw < chance, blown, x)


def _restroke(x: torch.Tensor, chance: float, generator: torch.Generator) -> torch.Tensor:
    """Thicker strokes (a 3x3 max) for a share ``chance`` of the images, thinner (a blended 3x3 min) for as many."""
    draw = torch.rand((len(x), 1, 1, 1), generator=generator, device=x.device)  # (N, 1, 1, 1)
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = 0.5 * (x - F.max_pool2d(-x, 3, stride=1, padding=1))  # halfway to the eroded image: keeps hair lines
    return torch.where(draw < chance, thick, torch.where(draw < 2 * chance, thin, x))
