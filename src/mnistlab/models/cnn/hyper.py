"""The hyperparameters of one CNN, in one table.

``Hyper`` is everything a training run of one net depends on (airbench's
``hyp``): the CNN recipes are named instances of it, ``CNNClassifier`` takes
its fields as parameters with these defaults, and ``loop.train`` reads no other
setting. No torch here, so listing recipes stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Hyper", "HYPER_FIELDS"]


@dataclass(frozen=True)
class Hyper:
    arch: str = "standard"  # stage widths (net.ARCHITECTURES): the knob that trades CPU time for accuracy
    epochs: int = 4  # passes over the data; the one-cycle schedule makes a few enough
    batch_size: int = 128  # many steps per epoch, yet enough work per step to keep a CPU core busy
    lr: float = 0.1  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4  # L2 on all weights, against overfitting 60,000 digits
    label_smoothing: float = 0.1  # soft targets keep a net from growing over-confident on easy digits
    dropout: float = 0.0  # before the linear head; augmentation regularises enough for MNIST
    augment: str = "none"  # "light" (shift/rotate/scale) or "full" (plus elastic): augment.AUGMENTATIONS
    momentum: float = 0.9  # SGD momentum, the usual value: averages out the noise of small batches
    nesterov: bool = True  # Nesterov momentum: corrects with a look-ahead gradient, steadier at a high lr
    warmup_fraction: float = 0.2  # share of the steps the lr climbs from 0 to lr (then it falls linearly to 0)


HYPER_FIELDS = tuple(f.name for f in fields(Hyper))
