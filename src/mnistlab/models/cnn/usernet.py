"""A user's own ``torch.nn.Module`` as one of mnistlab's nets.

``CNNClassifier(module=...)`` trains any module that maps images (N, 1, H, W),
float32 in [0, 1], to class logits (N, n_classes) with mnistlab's own loop.
``UserNet`` gives it the two entry points the loop and the exported model use:
``logits`` (training feeds inputs already deskewed if the net wants them so)
and ``forward`` (what predictions and the ONNX graph run).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mnistlab.errors import RecipeError
from mnistlab.models.cnn.net import deskew

__all__ = ["UserNet", "fresh_copy", "check_module"]


class UserNet(nn.Module):
    """``module`` wrapped: ``logits(x)`` is ``module(x)``; ``forward`` deskews first when asked."""

    def __init__(self, module: nn.Module, deskew_input: bool = False):
        super().__init__()
        self.module = module
        self.deskew_input = deskew_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(deskew(x, exact=True) if self.deskew_input else x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)  # (N, n_classes)


def fresh_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every layer re-initialised from torch's global generator.

    The caller seeds that generator per member, so the starting weights depend on
    the seed only, not on how (or how often) the user's code built the module.
    """
    net = copy.deepcopy(module)
    for layer in net.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return net


def check_module(module, n_classes: int, image_shape: tuple[int, int]) -> None:
    """Refuse, before training, a module that is not one or does not map (2, 1, H, W) to (2, n_classes)."""
    if not isinstance(module, nn.Module):
        raise RecipeError(
            f"module got {type(module).__name__}, expected a torch.nn.Module (or None for mnistlab's nets)."
        )
    probe = torch.zeros(2, 1, *image_shape)
    try:
        with torch.no_grad():
            out = copy.deepcopy(module).eval()(probe)
    except Exception as exc:  # any error of the user's code: say which and what it got
        raise RecipeError(
            f"module {type(module).__name__} failed on a batch of images shaped {tuple(probe.shape)} "
            f"({type(exc).__name__}: {exc}); it must take (N, 1, H, W) float images in [0, 1]."
        ) from None
    shape = tuple(getattr(out, "shape", ()))
    if shape != (2, n_classes):
        raise RecipeError(
            f"module {type(module).__name__} returned shape {shape} for 2 images, "
            f"expected (2, {n_classes}): one logit per class."
        )
