"""CNNClassifier: the CNN recipes as one scikit-learn estimator.

The estimator checks its parameters and inputs, draws one seed per ensemble
member and hands the members to ``loop.train_member``, one after the other,
side by side in worker processes, or to the runner a cluster installed
(``parallel``); what it keeps is an
``Averaged`` module of the trained nets. Saving and loading live in
``mnistlab.models.files``.

Pixels: integer inputs are on the 0-255 scale; float inputs are taken as [0, 1],
except rows whose maximum exceeds 1.5, which are read as 0-255 (a resampled
0-1 image overshoots 1 a little; ``mnistlab.data.pixels.unit_pixels``). Inputs are N x 784 vectors, N x 28 x 28
images, or N x 1 x 28 x 28; flat vectors of another length n are laid out
row-major in the smallest square image that holds them.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import replace

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mnistlab._cpus import usable_cpus
from mnistlab.data.pixels import as_images, from_torch, refuse_one_image, unit_pixels
from mnistlab.errors import InputError, RecipeError
from mnistlab.models.cnn.checks import check_classes, check_params
from mnistlab.models.cnn.config import MAX_CLASSES, MAX_LABEL_CHARS, MAX_SIDE
from mnistlab.models.cnn.hyper import HYPER_FIELDS, Hyper
from mnistlab.models.cnn.loop import (
    MIN_STEPS,
    Member,
    deskew_all,
    eval_batches,
    new_net,
    optimizer_steps,
    torch_settings,
    train_member,
)
from mnistlab.models.cnn.net import Averaged
from mnistlab.models.cnn.parallel import member_runner, train_in_processes
from mnistlab.models.cnn.usernet import check_module

__all__ = ["CNNClassifier", "build_model", "member_deskews"]

_DEFAULT = Hyper()


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """A convolutional net (or an ensemble of them) for digit images with the scikit-learn interface.

    Parameters
    ----------
    arch, epochs, batch_size, lr, weight_decay, label_smoothing, dropout, augment, momentum,
    nesterov, warmup_fraction : the hyperparameters of each net; see ``hyper.Hyper``.
    inputs : "raw", "deskewed" (each digit is straightened by its image moments before
        augmentation and inside the saved net) or "mixed" (every second member deskewed:
        the two kinds miss different digits, so their average makes fewer mistakes).
    n_members : nets trained with different seeds whose probabilities are averaged.
    n_jobs : members trained at once, each in its own process with ``n_threads`` threads
        (-1: one per CPU core; None: one). The weights are the same as with ``n_jobs=1``. Ignored on CUDA.
        Inside ``parallel.members_run_by`` (``mnistlab train --cluster``) the members of an
        ensemble go to that runner instead, whatever ``n_jobs`` says: each a task on the cluster
        (not on CUDA, nor for a user's ``module``: those members train in this process).
    target : stop a member once its accuracy on a held-out ``validation_fraction``
        of the training data reaches this value (None: run all epochs on all data).
    backend : "torch" or "onnxruntime" for predict/predict_proba. onnxruntime answers a
        single image far sooner but exports the net on first use (a few seconds).
    device : "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
    n_threads : CPU threads for torch during fit/predict (None: torch's current setting).
        Results are bit-identical for the same seed, device and thread count. The default
        is 1: on a shared small machine a second thread made training slower whenever other
        processes ran (OpenMP threads wait on each other), and one thread gives the same
        weights on machines with any core count.
    module : a ``torch.nn.Module`` of your own to train instead of ``arch`` (None: mnistlab's
        nets). It takes images (N, 1, H, W), float32 in [0, 1], and returns logits
        (N, n_classes); each member starts from a copy re-initialised from its seed and is
        trained by the same loop (batched augmentation, one-cycle schedule). Members of a
        user module train in this process: the module's code may not import elsewhere.
    random_state : int seed from 0 to 2**32 - 1, a numpy RandomState, or None (a fresh one each fit).
    verbose : print one line per epoch to stderr when > 0.
    callback : called after every epoch with a dict (member, epoch, epochs, loss,
        train_accuracy, val_accuracy, seconds, elapsed).

    Fitted attributes: ``classes_``, ``n_features_in_``, ``image_shape_``,
    ``model_`` (an ``Averaged`` module returning probabilities), ``seeds_``, ``n_threads_``,
    ``n_epochs_`` (epochs run, summed over members), ``train_seconds_``, ``history_``,
    ``device_`` (the device it trained on, as ``device_name`` says it: "cpu", "cuda:0 (GPU model)").
    """

    def __init__(
        self,
        arch=_DEFAULT.arch,
        epochs=_DEFAULT.epochs,
        batch_size=_DEFAULT.batch_size,
        lr=_DEFAULT.lr,
        weight_decay=_DEFAULT.weight_decay,
        label_smoothing=_DEFAULT.label_smoothing,
        dropout=_DEFAULT.dropout,
        augment=_DEFAULT.augment,
        *,
        momentum=_DEFAULT.momentum,
        nesterov=_DEFAULT.nesterov,
        warmup_fraction=_DEFAULT.warmup_fraction,
        inputs="raw",
        n_members=1,
        n_jobs=1,
        target=None,
        validation_fraction=0.1,
        backend="torch",
        device="auto",
        n_threads=1,
        module=None,
        random_state=0,
        verbose=0,
        callback=None,
    ):
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.dropout = dropout
        self.augment = augment
        self.momentum = momentum
        self.nesterov = nesterov
        self.warmup_fraction = warmup_fraction
        self.inputs = inputs
        self.n_members = n_members
        self.n_jobs = n_jobs
        self.target = target
        self.validation_fraction = validation_fraction
        self.backend = backend
        self.device = device
        self.n_threads = n_threads
        self.module = module
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def fit(self, X, y):
        before = _fitted_state(self)
        try:
            return self._fit(X, y)
        except BaseException:  # refused, failed or interrupted (a callback may raise to stop): no half-new fit
            _restore_fitted_state(self, before)
            raise

    def _fit(self, X, y):
        check_params(self.get_params())
        images, y = self._images(X, y, reset=True)
        check_classification_targets(y)
        if self.target is not None and not 1 <= round(self.validation_fraction * len(images)) < len(images):
            raise RecipeError(
                f"validation_fraction {self.validation_fraction} of {len(images):,} images leaves no image to "
                "check the target on, or none to train on; choose a fraction that leaves some of each."
            )
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(
                f"Training data must hold at least 2 classes, got 1 class ({self.classes_[:1].tolist()[0]!r})."
            )
        check_classes(self.classes_, MAX_CLASSES, MAX_LABEL_CHARS)  # else trained, then refused by save_model
        if self.module is not None:
            check_module(self.module, len(self.classes_), self.image_shape_)
        device = _torch_device(self.device)
        # Recorded: "auto" says where it might run, not where it ran, and CPU and GPU fits differ in their floats.
        self.device_ = device_name(device)
        self.seeds_ = [int(s) for s in check_random_state(self.random_state).randint(2**31 - 1, size=self.n_members)]
        # Recorded: the thread count changes the order of float sums, so results
        # are bit-identical only for the same seed, device and thread count.
        self.n_threads_ = self.n_threads or torch.get_num_threads()
        self.history_ = []
        start = time.perf_counter()
        hyp, deskews = _hyper(self), member_deskews(self.inputs, self.n_members)
        members = [
            Member(
                index=i,
                seed=seed,
                deskew_input=flag,
                hyp=hyp,
                n_classes=len(self.classes_),
                image_shape=self.image_shape_,
                target=self.target,
                validation_fraction=self.validation_fraction,
                start=start,
                module=self.module,
            )
            for i, (seed, flag) in enumerate(zip(self.seeds_, deskews))
        ]
        with torch_settings(self.n_threads_, deterministic=True):
            states = self._train(members, images, y_idx, device)
        self.history_.sort(key=lambda row: (row["member"], row["epoch"]))
        held_out = max(1, round(self.validation_fraction * len(images))) if self.target is not None else 0
        # The steps its nets took: a member that reached the target stopped before its last epoch.
        ran = min(sum(row["member"] == i for row in self.history_) for i in range(self.n_members))
        _warn_if_few_steps(len(images) - held_out, replace(hyp, epochs=ran))
        self.model_ = build_model(self, states, device)
        self.n_epochs_ = len(self.history_)
        self.train_seconds_ = time.perf_counter() - start
        self._ort_session = None  # a session of the previous fit's net is stale
        return self

    def _train(self, members: list[Member], images: np.ndarray, y_idx: np.ndarray, device) -> list[dict]:
        """Train the members, in this process or in workers; returns their state dicts."""
        raw = torch.from_numpy(images).to(device)  # (N, 1, H, W) float32, uploaded once
        # Deskewing is part of the input, not of the augmentation: done once,
        # before it, so a deskewed member sees straightened digits warped.
        inputs = {flag: deskew_all(raw) if flag else raw for flag in {m.deskew_input for m in members}}
        y_all = torch.from_numpy(y_idx.astype(np.int64)).to(device)  # (N,) class indices
        n_jobs = usable_cpus() if self.n_jobs == -1 else self.n_jobs or 1  # None: one, as in scikit-learn
        # A user module trains here: its class may live in a file a worker process cannot import.
        in_process = device.type == "cuda" or self.module is not None
        # A cluster's runner, for the block that installed it (members_run_by); for ensembles only.
        runner = member_runner() if len(members) > 1 and not in_process else None
        n_workers = 1 if in_process else min(len(members), n_jobs)
        if n_workers == 1 and runner is None:
            return [train_member(m, inputs[m.deskew_input], y_all, self._record).state_dict() for m in members]
        # One array per kind of input, shared by the members that read it (a runner ships each once).
        arrays = {flag: x.cpu().numpy() for flag, x in inputs.items()}
        tasks = [(m, arrays[m.deskew_input]) for m in members]
        if runner is not None:
            return runner(train_member, tasks, y_all.cpu().numpy(), n_threads=self.n_threads_, on_row=self._record)
        return train_in_processes(
            train_member,
            tasks,
            y_all.cpu().numpy(),
            n_workers=n_workers,
            n_threads=self.n_threads_,
            on_row=self._record,
        )

    def _record(self, row: dict) -> None:
        """Keep one epoch row (from this process or a worker), print it if verbose, pass it on."""
        self.history_.append(row)
        if self.verbose:
            who = f"member {row['member'] + 1}/{self.n_members} " if self.n_members > 1 else ""
            val = "" if row["val_accuracy"] is None else f" held-out acc {row['val_accuracy']:.4f}"
            print(
                f"{who}epoch {row['epoch']}/{self.epochs}: loss {row['loss']:.4f} train acc {row['train_accuracy']:.4f}{val}"
                f" ({row['seconds']:.1f} s, {row['elapsed']:.1f} s total)",
                file=sys.stderr,
                flush=True,
            )
        if self.callback is not None:
            self.callback(row)

    def _images(self, X, y=None, *, reset: bool):
        """Validate X (and y); return float32 images (N, 1, H, W) in [0, 1] as a numpy array."""
        shape, X = None, from_torch(X)  # a tensor that requires grad: torch's RuntimeError from numpy's hands
        if not reset:  # one digit's 28 rows were taken for 28 images of 28 pixels ("X has 28 features")
            refuse_one_image(X, self.n_features_in_)
        if isinstance(X, list | tuple):  # of images or of rows: their shape decides, as for an array
            X = np.asarray(X)
        if getattr(X, "ndim", 2) in (3, 4):  # images: (N, H, W), (N, 1, H, W) or (N, H, W, 1)
            if X.ndim == 4 and 1 not in (X.shape[1], X.shape[3]):
                raise InputError(
                    f"Images must have one channel (N x 1 x H x W or N x H x W x 1), got shape {X.shape}; pass "
                    "N x 28 x 28 grey images."
                )
            X = as_images(X)  # (N, H, W)
            shape = X.shape[1:]
            X = X.reshape(len(X), -1)
        # NaN and infinity are left to unit_pixels, which says so in mnistlab's sentence (scikit-learn's
        # suggests other estimators).
        if y is None:
            X = validate_data(self, X, reset=reset, dtype="numeric", ensure_all_finite=False)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype="numeric", ensure_all_finite=False)
        if reset:
            self.image_shape_ = tuple(int(s) for s in shape) if shape else _square_shape(X.shape[1])
            if max(self.image_shape_) > MAX_SIDE:  # trained, then refused by save_model as a config not its own
                raise InputError(
                    f"Got {self.image_shape_[0]} x {self.image_shape_[1]} images, but a CNN reads at most {MAX_SIDE} "
                    "pixels a side (what its model file holds); scale them down, as MNIST's are to 28 x 28."
                )
        elif shape is not None and tuple(shape) != tuple(self.image_shape_):
            raise InputError(
                f"Got {shape[0]} x {shape[1]} images, but this model was fitted on {self.image_shape_[0]} x "
                f"{self.image_shape_[1]}; pass images of the size it was trained on."
            )
        h, w = self.image_shape_
        pixels = unit_pixels(X)  # (N, F) float32 in [0, 1]
        if pixels.shape[1] < h * w:  # flat vectors padded to the square image
            pixels = np.pad(pixels, ((0, 0), (0, h * w - pixels.shape[1])))
        # C order, whatever X's: deskewing sums over a strided view (Fortran order) would add in another order.
        return np.ascontiguousarray(pixels.reshape(-1, 1, h, w)), y

    def predict_proba(self, X):
        check_is_fitted(self, "model_")
        images, _ = self._images(X, reset=False)
        if self.backend == "onnxruntime":
            from mnistlab.models.cnn.onnx import OnnxPredictor  # onnx and onnxruntime load in seconds: on demand

            if getattr(self, "_ort_session", None) is None:
                self._ort_session = OnnxPredictor.from_module(self.model_, self.image_shape_, n_threads=self.n_threads)
            proba = self._ort_session.predict_proba(images).astype(np.float64)
        else:
            with torch_settings(self.n_threads or torch.get_num_threads()):
                device = next(self.model_.parameters()).device
                proba = (
                    eval_batches(self.model_, self.model_, torch.from_numpy(images).to(device)).cpu().double().numpy()
                )
        return proba / proba.sum(axis=1, keepdims=True)  # exact sums after float32 softmax

    def predict(self, X):
        proba = self.predict_proba(X)  # checks fitted-ness first
        return self.classes_[proba.argmax(axis=1)]

    def __getstate__(self):  # an onnxruntime session cannot be pickled; it is rebuilt on demand
        state = self.__dict__.copy()
        state.pop("_ort_session", None)
        return state


def build_model(est: CNNClassifier, states: list[dict] | None = None, device="cpu") -> Averaged:
    """``est``'s ``Averaged`` module, one net per member, from the members' state dicts (None: untrained).

    Needs ``est``'s parameters and its ``classes_`` and ``image_shape_``.
    """
    deskews = member_deskews(est.inputs, est.n_members)
    members = [new_net(_hyper(est), len(est.classes_), est.image_shape_, flag, device, est.module) for flag in deskews]
    for net, state in zip(members, states or []):
        net.load_state_dict(state)
    return Averaged(members).eval()


def _hyper(est: CNNClassifier) -> Hyper:
    """The hyperparameters of each of ``est``'s nets, read from its parameters."""
    return Hyper(**{name: getattr(est, name) for name in HYPER_FIELDS})


def member_deskews(inputs: str, n_members: int) -> list[bool]:
    """Whether each member reads deskewed digits (see ``inputs``)."""
    return [inputs == "deskewed" or (inputs == "mixed" and i % 2 == 1) for i in range(n_members)]


def _fitted_state(est: CNNClassifier) -> dict:
    """What a fit sets on ``est``: its attributes ending in ``_``, and the onnxruntime session of its net."""
    return {k: v for k, v in vars(est).items() if (k.endswith("_") and not k.startswith("__")) or k == "_ort_session"}


def _restore_fitted_state(est: CNNClassifier, state: dict) -> None:
    """Put back the fit ``_fitted_state`` saw (or none), dropping what a fit since then set."""
    for name in _fitted_state(est):
        delattr(est, name)
    est.__dict__.update(state)


def _square_shape(n_features: int) -> tuple[int, int]:
    """28 x 28 for MNIST rows, else the smallest square image that holds n_features pixels."""
    if n_features == 784:
        return (28, 28)
    side = math.isqrt(n_features - 1) + 1 if n_features > 1 else 1
    return (side, side)


def device_name(device: torch.device) -> str:
    """The device a net trains on, in words: "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)" (the GPU's index and
    model: two GPUs' kernels can sum floats in another order)."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _torch_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not torch.cuda.is_available():
        raise RecipeError(f"device got {name!r}, but torch sees no CUDA GPU here; use device='auto' or 'cpu'.")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise RecipeError(
            f"device got {name!r}, but torch sees {torch.cuda.device_count()} CUDA GPU(s) here, numbered from 0."
        )
    return device


def _warn_if_few_steps(n_images: int, hyp: Hyper) -> None:
    """A ``ConvergenceWarning`` (as scikit-learn's iterative estimators give) for a fit of too few steps to learn."""
    steps = optimizer_steps(n_images, hyp)
    if steps < MIN_STEPS:
        warnings.warn(
            f"the CNN took {steps} optimizer steps ({hyp.epochs} epochs of {max(1, n_images // hyp.batch_size)} "
            f"batches of about {min(hyp.batch_size, n_images)} images), and fewer than {MIN_STEPS} seldom learn the classes (digits, clothes...): give it "
            "more images, more epochs or a smaller batch_size.",
            ConvergenceWarning,
            stacklevel=3,
        )
