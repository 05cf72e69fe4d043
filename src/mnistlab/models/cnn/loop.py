"""Train one net: the loop, written for a small CPU.

The whole training set is one float tensor, each epoch is one random
permutation cut into batches, augmentation warps a whole batch in one call
(``augment.augment_batch``), and the learning rate follows a one-cycle
schedule (linear warm-up, linear decay), so a few epochs suffice. Nothing runs
per image in Python. Every setting comes from a ``Hyper``; every random draw
(batch order, held-out split, augmentation) from one ``torch.Generator``, and
weight init and dropout from torch's global generator seeded per member, so the
same seed, device and thread count give the same weights bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mnistlab.errors import RecipeError
from mnistlab.models.cnn.augment import AUGMENTATIONS, augment_batch
from mnistlab.models.cnn.hyper import Hyper
from mnistlab.models.cnn.net import DigitNet, build_net, deskew
from mnistlab.models.cnn.usernet import UserNet, fresh_copy

__all__ = [
    "CHANNELS_LAST",
    "Member",
    "train",
    "one_cycle",
    "train_member",
    "new_net",
    "eval_batches",
    "deskew_all",
    "torch_settings",
]

# A fit of fewer optimizer steps seldom learns the digits (``CNNClassifier`` warns): cnn-fast (2 epochs of
# batches of 256) on 2,000 MNIST images took 14 steps and read 17% of the test set; on 5,000, 38 steps, 89%.
MIN_STEPS = 100

# oneDNN's NHWC convolution kernels make a CPU training step faster than NCHW
# (benchmarks/RESULTS.md), so nets and batches are kept channels-last.
CHANNELS_LAST = torch.channels_last


def train(
    net: DigitNet | UserNet,
    X: torch.Tensor,
    y: torch.Tensor,
    hyp: Hyper,
    gen: torch.Generator,
    on_epoch: Callable[[dict], None],
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    target: float | None = None,
) -> DigitNet | UserNet:
    """Train ``net`` in place on X (N, 1, H, W) float32 in [0, 1] and y (N,) int64 class indices.

    X is already deskewed for a net that deskews its input (``net.logits`` reads it).
    After each epoch ``on_epoch`` gets a row (epoch, epochs, loss, train_accuracy,
    val_accuracy, seconds); with ``val`` = (X_val, y_val) and a ``target``, training
    stops once the held-out accuracy reaches it. Returns the net in eval mode.
    """
    n_batches = max(1, len(X) // hyp.batch_size)  # the remainder is spread over the batches
    total_steps = optimizer_steps(len(X), hyp)
    opt = torch.optim.SGD(
        net.parameters(), lr=hyp.lr, momentum=hyp.momentum, nesterov=hyp.nesterov, weight_decay=hyp.weight_decay
    )
    sched = one_cycle(opt, total_steps, hyp.warmup_fraction)
    aug = AUGMENTATIONS[hyp.augment]
    for epoch in range(1, hyp.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        loss_sum = torch.zeros((), device=X.device)
        correct = torch.zeros((), device=X.device, dtype=torch.long)
        for idx in torch.tensor_split(torch.randperm(len(X), generator=gen, device=X.device), n_batches):
            xb, yb = X[idx], y[idx]  # (B, 1, H, W), (B,)
            if aug is not None:
                xb = augment_batch(xb, aug, gen)
            logits = net.logits(xb.contiguous(memory_format=CHANNELS_LAST))  # (B, n_classes)
            loss = F.cross_entropy(logits, yb, label_smoothing=hyp.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
        _check_converging(float(loss_sum) / len(X), epoch, hyp)
        val_acc = None
        if val is not None:  # logits, not forward: X_val is already deskewed for a deskewing net
            val_acc = float((eval_batches(net, net.logits, val[0]).argmax(1) == val[1]).float().mean())
        on_epoch(
            {
                "epoch": epoch,
                "epochs": hyp.epochs,
                "loss": float(loss_sum) / len(X),
                "train_accuracy": float(correct) / len(X),
                "val_accuracy": val_acc,
                "seconds": time.perf_counter() - t0,
            }
        )
        if val_acc is not None and target is not None and val_acc >= target:
            break
    return net.eval()


def optimizer_steps(n_images: int, hyp: Hyper) -> int:
    """The optimizer steps ``train`` takes on ``n_images``: a batch of about ``batch_size`` each, every epoch."""
    return max(1, n_images // hyp.batch_size) * hyp.epochs


def _check_converging(loss: float, epoch: int, hyp: Hyper) -> None:
    """Refuse to go on once the loss is NaN or infinite: the weights are then no numbers, and every later epoch
    (and the saved model) would keep them so. Such a net answered "0" for every digit, and "sure" of it."""
    if not math.isfinite(loss):
        fix = f"a lower lr (this run's was {hyp.lr:g})"
        if hyp.lr * hyp.weight_decay > 1:  # each step scales the weights by about 1 - lr * weight_decay: below 0
            fix = (
                f"a lower lr or weight_decay (this run's were {hyp.lr:g} and {hyp.weight_decay:g}: their product "
                "over 1 flips the weights' sign each step)"
            )
        raise RecipeError(
            f"Training diverged: the loss was {loss} after epoch {epoch}, so the net's weights are no numbers; "
            f"train again with {fix}."
        )


def one_cycle(
    opt: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up from 0 over the first ``warmup_fraction`` of the steps, then linear decay to 0."""
    warm = max(1, int(warmup_fraction * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total_steps - s) / (total_steps - warm + 1))
    )


@dataclass(frozen=True)
class Member:
    """One net of an ensemble to train: everything a worker process needs besides the data."""

    index: int  # position in the ensemble, reported in every epoch row
    seed: int  # seeds weight init, dropout and the member's generator
    deskew_input: bool  # the net deskews its input (X is given to it already deskewed)
    hyp: Hyper
    n_classes: int
    image_shape: tuple[int, int]
    target: float | None  # stop at this held-out accuracy (None: all epochs on all data)
    validation_fraction: float  # share of X held out to check ``target`` on
    start: float  # time.perf_counter() when the fit began: rows report seconds elapsed since
    module: Any = None  # a user's torch.nn.Module to train instead of hyp.arch (usernet)


def train_member(
    member: Member, X_all: torch.Tensor, y_all: torch.Tensor, on_row: Callable[[dict], None]
) -> DigitNet | UserNet:
    """Seed, hold out, build and train one member on X_all (N, 1, H, W), y_all (N,); returns its net.

    ``on_row`` gets each epoch row with the member's index and the seconds since ``member.start``.
    """
    device = X_all.device
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(member.seed)  # weight init and dropout
        gen = torch.Generator(device=device).manual_seed(member.seed)  # order, split, augmentation
        X, y, val = X_all, y_all, None
        if member.target is not None:  # hold out a random validation part to check the target on
            order = torch.randperm(len(X_all), generator=gen, device=device)
            n_val = max(1, round(member.validation_fraction * len(X_all)))
            val = X_all[order[:n_val]], y_all[order[:n_val]]
            X, y = X_all[order[n_val:]], y_all[order[n_val:]]
        net = new_net(member.hyp, member.n_classes, member.image_shape, member.deskew_input, device, member.module)

        def on_epoch(row: dict) -> None:
            on_row({"member": member.index, **row, "elapsed": time.perf_counter() - member.start})

        return train(net, X, y, member.hyp, gen, on_epoch, val=val, target=member.target)


def new_net(hyp: Hyper, n_classes: int, image_shape, deskew_input: bool, device="cpu", module=None):
    """An untrained net of ``hyp.arch`` (or a re-initialised copy of ``module``), channels-last on ``device``."""
    if module is not None:
        net: DigitNet | UserNet = UserNet(fresh_copy(module), deskew_input)
    else:
        net = build_net(hyp.arch, n_classes, tuple(image_shape), dropout=hyp.dropout, deskew_input=deskew_input)
    return net.to(device, memory_format=CHANNELS_LAST)  # type: ignore[call-overload]  # torch stubs omit memory_format


@torch.inference_mode()
def eval_batches(module: torch.nn.Module, forward, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """``forward`` (``module`` or one of its methods) over images (N, 1, H, W), in eval mode and batches."""
    was_training = module.training
    module.eval()
    out = [forward(chunk.contiguous(memory_format=CHANNELS_LAST)) for chunk in images.split(batch)]
    module.train(was_training)
    return torch.cat(out)


@torch.no_grad()  # not inference_mode: training indexes into the result
def deskew_all(images: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """``net.deskew`` over (N, 1, H, W) in chunks (its sampling grid is 2 floats per pixel)."""
    return torch.cat([deskew(chunk) for chunk in images.split(batch)])


@contextlib.contextmanager
def torch_settings(n_threads: int, *, deterministic: bool = False):
    """Run with ``n_threads`` torch threads (and deterministic cuDNN convolutions); restore both after."""
    threads, cudnn_deterministic = torch.get_num_threads(), torch.backends.cudnn.deterministic
    torch.set_num_threads(n_threads)
    if deterministic:  # CUDA: reproducible convolutions (CPU ones already are)
        torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic = cudnn_deterministic
