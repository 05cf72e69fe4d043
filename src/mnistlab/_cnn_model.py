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
them itself so that exported (ONNX) models take the same input as
``CNNClassifier.predict_proba``. Any H x W works (28 x 28 for MNIST): pools
use ``ceil_mode`` so even a 1 x 1 image survives three halvings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "DigitNet", "Averaged", "build_net"]

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
    ):
        super().__init__()
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

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).softmax(dim=1) for m in self.members]).mean(dim=0)


def build_net(arch: str, n_classes: int, image_shape: tuple[int, int], *, dropout: float = 0.0) -> DigitNet:
    return DigitNet(ARCHITECTURES[arch], n_classes, image_shape, dropout=dropout)
