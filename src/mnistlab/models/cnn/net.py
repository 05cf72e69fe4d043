"""The CNN architectures behind the CNN recipes (plain PyTorch modules).

Every net is the same recipe at a different width: a few stages of
conv -> batch norm -> 2x2 max-pool -> ReLU, then one linear layer. On a
2-core CPU the cost of a training step is almost all convolution, so the
width of the stages is the knob that trades time for accuracy:

    arch        stage widths    conv layers   MFLOP/image (28x28, forward)
    tiny        8, 16, 32       3             ~0.9
    small       16, 32, 64      3             ~3
    standard    32, 64, 128     3             ~15
    deep        32-32, 64-64, 128   5         ~43

Inputs are float images in [0, 1] shaped (N, 1, H, W); the net normalises
them itself (and, if built with ``deskew_input``, straightens them first) so
that exported (ONNX) models take the same input as
``CNNClassifier.predict_proba``. Any H x W works (28 x 28 for MNIST): pools
use ``ceil_mode`` so even a 1 x 1 image survives three halvings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ARCHITECTURES", "Averaged", "DigitNet", "build_net", "deskew"]

# Mean and standard deviation of MNIST training pixels in [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

# name -> stages; a stage is a tuple of conv widths followed by one 2x2 max-pool.
ARCHITECTURES: dict[str, tuple[tuple[int, ...], ...]] = {
    "tiny": ((8,), (16,), (32,)),
    "small": ((16,), (32,), (64,)),
    "standard": ((32,), (64,), (128,)),
    "deep": ((32, 32), (64, 64), (128,)),
}


def deskew(x: torch.Tensor, *, exact: bool = False) -> torch.Tensor:
    """Straighten slanted digits x (N, 1, H, W): the classic moment deskew, as tensor ops.

    Same map as ``mnistlab.models.transforms.Deskew`` (numpy): each image is shifted so that
    its centre of ink sits at (H/2, W/2) and sheared by skew = cov(col, row) /
    var(row), so its main vertical axis stands upright. One ``grid_sample``
    for the batch (ONNX GridSample), bilinear, zeros outside the image.

    ``exact``: the moments in float64, as a net's ``forward`` (and so its ONNX
    graph) takes them. onnxruntime sums float32 rows in another order for a
    batch of one than for many, and the last bits of the sampling grid, then of
    the probabilities, would depend on the batch an image came in; float64 sums
    round to the same float32 grid. Training deskews its images once, in float32.
    """
    n, _, h, w = x.shape
    dtype = torch.float64 if exact else x.dtype
    rows = torch.arange(h, dtype=dtype, device=x.device)  # (H,)
    cols = torch.arange(w, dtype=dtype, device=x.device)  # (W,)
    img = x[:, 0].to(dtype)  # (N, H, W)
    row_mass, col_mass = img.sum(2), img.sum(1)  # (N, H), (N, W)
    mass = row_mass.sum(1).clamp_min(1e-6)  # (N,); a blank image stays blank
    cy = (row_mass * rows).sum(1) / mass
    cx = (col_mass * cols).sum(1) / mass
    dr = rows - cy[:, None]  # (N, H)
    var = (row_mass * dr**2).sum(1) / mass
    cov = (dr * ((img * cols).sum(2) - cx[:, None] * row_mass)).sum(1) / mass
    skew = torch.where(var > 1e-6, cov / var.clamp_min(1e-6), torch.zeros_like(var))
    # Output pixel (r, c) reads input (r + cy - H/2, c + cx - W/2 + skew * (r - H/2)).
    r, c = rows.view(1, h, 1), cols.view(1, 1, w)
    in_r = r + (cy - h / 2).view(n, 1, 1) + 0 * c  # (N, H, W)
    in_c = c + (cx - w / 2).view(n, 1, 1) + skew.view(n, 1, 1) * (r - h / 2)  # (N, H, W)
    # align_corners=True: -1 and +1 are the centres of the first and last pixel.
    grid = torch.stack([in_c * (2 / max(w - 1, 1)) - 1, in_r * (2 / max(h - 1, 1)) - 1], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _stage(c_in: int, widths: tuple[int, ...], kernel: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, c_out in enumerate(widths):
        last = i == len(widths) - 1
        # No conv bias: the batch norm right after it has its own shift.
        layers += [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)]
        if last:
            # Pool before ReLU: max and ReLU commute, and the ReLU then
            # touches 4x fewer values.
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        layers.append(nn.ReLU(inplace=True))
        c_in = c_out
    return nn.Sequential(*layers)


class DigitNet(nn.Module):
    """conv/BN/pool stages + dropout + linear head; returns logits (N, n_classes)."""

    def __init__(
        self,
        stages: tuple[tuple[int, ...], ...],
        n_classes: int = 10,
        image_shape: tuple[int, int] = (28, 28),
        *,
        first_kernel: int = 5,
        dropout: float = 0.0,
        deskew_input: bool = False,
    ):
        super().__init__()
        # A member that reads deskewed digits misses other digits than one that
        # reads them as written, which is what an ensemble needs.
        self.deskew_input = deskew_input
        blocks, c_in = [], 1
        for i, widths in enumerate(stages):
            # A 5x5 first conv sees a whole pen stroke at full resolution for
            # little cost (1 input channel); later stages use 3x3.
            blocks.append(_stage(c_in, widths, first_kernel if i == 0 else 3))
            c_in = widths[-1]
        self.features = nn.Sequential(*blocks)
        h, w = image_shape
        for _ in stages:  # (H, W) -> (ceil(H/2), ceil(W/2)) per stage: 28 -> 14 -> 7 -> 4
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in * h * w, n_classes)  # standard: 128*4*4 = 2048 -> 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(deskew(x, exact=True) if self.deskew_input else x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of images already deskewed if the net wants them so (training feeds these)."""
        x = (x - MNIST_MEAN) / MNIST_STD  # (N, 1, H, W), zero mean / unit spread on MNIST
        x = self.features(x)  # (N, C, ceil(H/8), ceil(W/8))
        x = torch.flatten(x, 1)  # (N, C*h*w)
        return self.head(self.dropout(x))  # (N, n_classes) logits


class Averaged(nn.Module):
    """Class probabilities (N, n_classes): the mean of the members' softmax.

    A single model is an ``Averaged`` of one member, so fitted estimators,
    saved files and ONNX exports have one shape. Averaging probabilities (not
    logits) keeps one over-confident member from outvoting the others.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).softmax(dim=1) for m in self.members]).mean(dim=0)


def build_net(
    arch: str, n_classes: int, image_shape: tuple[int, int], *, dropout: float = 0.0, deskew_input: bool = False
) -> DigitNet:
    return DigitNet(ARCHITECTURES[arch], n_classes, image_shape, dropout=dropout, deskew_input=deskew_input)
