"""CNNClassifier: a scikit-learn estimator that trains the nets in ``_cnn_model``.

The training loop is written for a small CPU: the whole training set is one
float tensor, each epoch is one random permutation cut into batches,
augmentation warps a whole batch in one call (``_augment``), and the
learning rate follows a one-cycle schedule (linear warm-up, linear decay)
so that a few epochs suffice. Nothing runs per image in Python. Ensemble
members are independent, so with ``n_jobs`` they train side by side in
separate processes with one torch thread each, which keeps every core busy
without the waits of several threads inside one small convolution.

Pixels: integer inputs are on the 0-255 scale. Float inputs are taken as
[0, 1], except rows whose maximum exceeds 1, which are taken as 0-255 and
divided by 255 (so both ``load_mnist(dtype=float)`` output and raw float
pixels work, and each row is scaled on its own). Inputs are N x 784 vectors,
N x 28 x 28 images, or N x 1 x 28 x 28; flat vectors of another length n are
laid out row-major in the smallest square image that holds them.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._augment import AUGMENTATIONS, augment_batch
from ._cnn_model import ARCHITECTURES, Averaged, build_net, deskew
from ._errors import InputError, RecipeError

__all__ = ["CNNClassifier"]

# Measured on the 2-core AMD EPYC dev machine (benchmarks/RESULTS.md): the
# oneDNN NHWC kernels make a training step 1.5-1.8x faster than NCHW.
CHANNELS_LAST = torch.channels_last
_BACKENDS = ("torch", "onnxruntime")
# What the members read: the digits as written, deskewed (``_cnn_model.deskew``),
# or "mixed": members 2, 4, ... read deskewed digits, the others raw ones.
_INPUTS = ("raw", "deskewed", "mixed")


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise RecipeError(f"{name} got {value!r}, expected one of: {', '.join(map(repr, allowed))}.")


def _check_number(name: str, value, low, high=None, *, integer=False) -> None:
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kind) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        expected = f"{'an integer' if integer else 'a number'} >= {low}" + (f" and <= {high}" if high else "")
        raise RecipeError(f"{name} got {value!r}, expected {expected}.")


def _unit_pixels(X: np.ndarray) -> np.ndarray:
    """(N, F) pixels of any numeric dtype -> float32 in [0, 1] (see module docstring)."""
    if X.dtype.kind in "iu":
        if X.size and (X.min() < 0 or X.max() > 255):
            raise InputError(
                f"Integer pixels must lie in 0-255, got values from {X.min()} to {X.max()}; "
                "pass uint8 images or floats in [0, 1]."
            )
        return X.astype(np.float32) / np.float32(255)
    X = X.astype(np.float32)  # a copy we may scale in place
    X[X.max(axis=1, initial=0) > 1] /= np.float32(255)
    return X


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """A convolutional net for digit images with the scikit-learn interface.

    Parameters
    ----------
    arch : one of ``_cnn_model.ARCHITECTURES`` ("tiny", "small", "standard", "deep").
    epochs : passes over the training data (per ensemble member).
    batch_size, lr, weight_decay, label_smoothing, dropout : the usual; ``lr`` is
        the peak of the one-cycle schedule for SGD with Nesterov momentum 0.9.
    augment : "none", "light" (shift/rotate/scale) or "full" (plus elastic).
    inputs : "raw", "deskewed" (each digit is straightened by its image moments before
        augmentation and inside the saved net) or "mixed" (every second member deskewed:
        the two kinds miss different digits, so their average makes fewer mistakes).
    n_members : nets trained with different seeds whose probabilities are averaged.
    n_jobs : members trained at once, each in its own process with ``n_threads`` threads
        (-1: one per CPU core). The weights are the same as with ``n_jobs=1``. Ignored on CUDA.
    target : stop a member once its accuracy on a held-out ``validation_fraction``
        of the training data reaches this value (None: run all epochs on all data).
    backend : "torch" or "onnxruntime" for predict/predict_proba. onnxruntime answers a
        single image ~50x sooner (0.03 vs ~1.5 ms for cnn-fast, benchmarks/RESULTS.md) but
        exports the net on first use (a few seconds).
    device : "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
    n_threads : CPU threads for torch during fit/predict (None: torch's current setting).
        Results are bit-identical for the same seed, device and thread count. The default
        is 1: measured on the shared 2-core dev machine, a second thread made training
        4-9x *slower* whenever other processes were running (OpenMP threads wait on each
        other), and one thread gives the same weights on machines with any core count.
    random_state : int seed (None: a fresh one each fit).
    verbose : print one line per epoch to stderr when > 0.
    callback : called after every epoch with a dict (member, epoch, epochs, loss,
        train_accuracy, val_accuracy, seconds, elapsed).

    Fitted attributes: ``classes_``, ``n_features_in_``, ``image_shape_``,
    ``model_`` (an ``Averaged`` module returning probabilities), ``seeds_``, ``n_threads_``,
    ``n_epochs_`` (epochs run, summed over members), ``train_seconds_``, ``history_``.
    """

    def __init__(
        self,
        arch="standard",
        epochs=4,
        batch_size=128,
        lr=0.1,
        weight_decay=5e-4,
        label_smoothing=0.1,
        dropout=0.0,
        augment="none",
        inputs="raw",
        n_members=1,
        n_jobs=1,
        target=None,
        validation_fraction=0.1,
        backend="torch",
        device="auto",
        n_threads=1,
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
        self.inputs = inputs
        self.n_members = n_members
        self.n_jobs = n_jobs
        self.target = target
        self.validation_fraction = validation_fraction
        self.backend = backend
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    # ----------------------------------------------------------------- input
    def _check_params(self) -> None:
        _choice("arch", self.arch, tuple(ARCHITECTURES))
        _choice("augment", self.augment, tuple(AUGMENTATIONS))
        _choice("backend", self.backend, _BACKENDS)
        _choice("inputs", self.inputs, _INPUTS)
        _check_number("epochs", self.epochs, 1, integer=True)
        _check_number("batch_size", self.batch_size, 1, integer=True)
        _check_number("n_members", self.n_members, 1, integer=True)
        _check_number("lr", self.lr, 0)
        _check_number("weight_decay", self.weight_decay, 0)
        _check_number("label_smoothing", self.label_smoothing, 0, 1)
        _check_number("dropout", self.dropout, 0, 1)
        _check_number("validation_fraction", self.validation_fraction, 0, 1)
        if self.target is not None:
            _check_number("target", self.target, 0, 1)
        if self.n_threads is not None:
            _check_number("n_threads", self.n_threads, 1, integer=True)
        if self.n_jobs != -1:
            _check_number("n_jobs", self.n_jobs, 1, integer=True)
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise RecipeError(f"device got {self.device!r}, expected one of: 'auto', 'cpu', 'cuda', 'cuda:N'.")

    def _images(self, X, y=None, *, reset: bool):
        """Validate X (and y); return float32 images (N, 1, H, W) as a numpy array."""
        shape = None
        if getattr(X, "ndim", 2) in (3, 4):  # images: (N, H, W) or (N, 1, H, W)
            X = np.asarray(X)
            if X.ndim == 4 and X.shape[1] != 1:
                raise InputError(f"Images must have one channel, got shape {X.shape}; pass N x 28 x 28 grey images.")
            shape = X.shape[-2:]
            X = X.reshape(len(X), -1)
        if y is None:
            X = validate_data(self, X, reset=reset, dtype="numeric")
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype="numeric")
        if reset:
            side = math.isqrt(X.shape[1] - 1) + 1 if X.shape[1] > 1 else 1
            self.image_shape_ = tuple(int(s) for s in shape) if shape else (28, 28) if X.shape[1] == 784 else (side, side)
        h, w = self.image_shape_
        pixels = _unit_pixels(X)
        if pixels.shape[1] < h * w:  # flat vectors padded to the square image
            pixels = np.pad(pixels, ((0, 0), (0, h * w - pixels.shape[1])))
        return pixels.reshape(-1, 1, h, w), y

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device != "cpu" and not torch.cuda.is_available():
            raise RecipeError(f"device got {self.device!r}, but torch sees no CUDA GPU here; use device='auto' or 'cpu'.")
        return torch.device(self.device)

    # ------------------------------------------------------------------- fit
    def fit(self, X, y):
        self._check_params()
        images, y = self._images(X, y, reset=True)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(f"Training data must hold at least 2 classes, got 1 class ({self.classes_[0]!r}).")
        device = self._device()
        self.seeds_ = [int(s) for s in check_random_state(self.random_state).randint(2**31 - 1, size=self.n_members)]
        threads, cudnn_deterministic = torch.get_num_threads(), torch.backends.cudnn.deterministic
        # Recorded: the thread count changes the order of float sums, so results
        # are bit-identical only for the same seed, device and thread count.
        self.n_threads_ = self.n_threads or threads
        torch.set_num_threads(self.n_threads_)
        torch.backends.cudnn.deterministic = True  # CUDA: reproducible convolutions (CPU ones already are)
        start = time.perf_counter()
        self.history_ = []
        try:
            raw = torch.from_numpy(images).to(device)  # (N, 1, H, W) float32, uploaded once
            # Deskewing is part of the input, not of the augmentation: done once,
            # before it, so a deskewed member sees straightened digits warped.
            inputs = {flag: _deskewed(raw) if flag else raw for flag in set(self._member_deskews())}
            y_all = torch.from_numpy(y_idx.astype(np.int64)).to(device)
            jobs = [(i, seed, flag) for i, (seed, flag) in enumerate(zip(self.seeds_, self._member_deskews()))]
            n_jobs = (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs
            n_workers = 1 if device.type == "cuda" else min(len(jobs), n_jobs)
            if n_workers > 1:
                states = self._fit_in_processes(jobs, inputs, y_all, n_workers, start)
            else:
                states = [self._fit_member(inputs[flag], y_all, i, seed, flag, start).state_dict() for i, seed, flag in jobs]
        finally:
            torch.set_num_threads(threads)
            torch.backends.cudnn.deterministic = cudnn_deterministic
        self.history_.sort(key=lambda row: (row["member"], row["epoch"]))
        self.model_ = self._assemble(states, device)
        self.n_epochs_ = len(self.history_)
        self.train_seconds_ = time.perf_counter() - start
        self._ort_session = None
        return self

    def _member_deskews(self) -> list[bool]:
        """Whether each member reads deskewed digits (see ``inputs``)."""
        return [self.inputs == "deskewed" or (self.inputs == "mixed" and i % 2 == 1) for i in range(self.n_members)]

    def _new_net(self, deskew_input: bool, device="cpu"):
        net = build_net(self.arch, len(self.classes_), self.image_shape_, dropout=self.dropout, deskew_input=deskew_input)
        return net.to(device, memory_format=CHANNELS_LAST)

    def _assemble(self, states: list[dict], device) -> Averaged:
        members = [self._new_net(flag, device) for flag in self._member_deskews()]
        for net, state in zip(members, states):
            net.load_state_dict(state)
        return Averaged(members).eval()

    def _fit_in_processes(self, jobs, inputs, y_all, n_workers: int, start: float) -> list[dict]:
        """Train members in worker processes; their epoch rows reach ``_record`` here as they come.

        loky (scikit-learn's process pool) starts clean interpreters, so torch's
        thread pools are not forked mid-use and user scripts need no
        ``if __name__ == "__main__"`` guard. Workers append each epoch row as a
        JSON line to a file of their own, which this process tails.
        """
        from joblib.externals.loky import get_reusable_executor

        worker = copy.copy(self)  # what a worker needs: the parameters and classes_, image_shape_
        worker.callback, worker.verbose = None, 0  # a callback may not pickle; rows come back instead
        arrays = {flag: x.cpu().numpy() for flag, x in inputs.items()}
        y = y_all.cpu().numpy()
        states: dict[int, dict] = {}
        with tempfile.TemporaryDirectory(prefix="mnistlab-members-") as tmp:
            logs = [_RowLog(Path(tmp) / f"member-{i}.jsonl") for i, _, _ in jobs]
            pool = get_reusable_executor(max_workers=n_workers)
            pending = {
                pool.submit(_member_in_process, worker, arrays[flag], y, i, seed, flag, start, str(logs[i].path)): i
                for i, seed, flag in jobs
            }
            try:
                while pending:
                    done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for log in logs:
                        log.read(self._record)
                    for future in done:
                        states[pending.pop(future)] = {k: torch.from_numpy(v) for k, v in future.result().items()}
            except BaseException:  # a failed member or Ctrl-C: stop the others instead of leaving them running
                pool.shutdown(wait=False, kill_workers=True)
                raise
            for log in logs:
                log.read(self._record)
        return [states[i] for i, _, _ in jobs]

    def _fit_member(self, X_all, y_all, member: int, seed: int, deskew_input: bool, start: float):
        device = X_all.device
        gpus = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=gpus):
            torch.manual_seed(seed)  # weight init and dropout
            gen = torch.Generator(device=device).manual_seed(seed)  # order, split, augmentation
            X, y, X_val, y_val = X_all, y_all, None, None
            if self.target is not None:  # hold out a random validation part to check the target on
                order = torch.randperm(len(X_all), generator=gen, device=device)
                n_val = max(1, round(self.validation_fraction * len(X_all)))
                X_val, y_val = X_all[order[:n_val]], y_all[order[:n_val]]
                X, y = X_all[order[n_val:]], y_all[order[n_val:]]
            net = self._new_net(deskew_input, device)
            n_batches = max(1, len(X) // self.batch_size)  # the remainder is spread over the batches
            total_steps = n_batches * self.epochs
            opt = torch.optim.SGD(
                net.parameters(), lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay
            )
            # One-cycle: linear warm-up over the first 20% of steps, then linear decay to 0.
            warm = max(1, int(0.2 * total_steps))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total_steps - s) / (total_steps - warm + 1))
            )
            aug = AUGMENTATIONS[self.augment]
            for epoch in range(1, self.epochs + 1):
                t0 = time.perf_counter()
                net.train()
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device, dtype=torch.long)
                for idx in torch.tensor_split(torch.randperm(len(X), generator=gen, device=device), n_batches):
                    xb, yb = X[idx], y[idx]  # (B, 1, H, W), (B,): already deskewed for a deskewing net
                    if aug is not None:
                        xb = augment_batch(xb, aug, gen)
                    logits = net.logits(xb.contiguous(memory_format=CHANNELS_LAST))
                    loss = F.cross_entropy(logits, yb, label_smoothing=self.label_smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    loss_sum += loss.detach() * len(idx)
                    correct += (logits.argmax(1) == yb).sum()
                val_acc = None
                if X_val is not None:
                    # logits, not forward: X_val is already deskewed for a deskewing net
                    val_acc = float((_in_eval_mode(net, net.logits, X_val).argmax(1) == y_val).float().mean())
                self._report(member, epoch, float(loss_sum) / len(X), float(correct) / len(X), val_acc, t0, start)
                if val_acc is not None and val_acc >= self.target:
                    break
        return net.eval()

    def _report(self, member, epoch, loss, acc, val_acc, t0, start) -> None:
        self._record({
            "member": member,
            "epoch": epoch,
            "epochs": self.epochs,
            "loss": loss,
            "train_accuracy": acc,
            "val_accuracy": val_acc,
            "seconds": time.perf_counter() - t0,
            "elapsed": time.perf_counter() - start,
        })

    def _record(self, row: dict) -> None:
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

    # --------------------------------------------------------------- predict
    def predict_proba(self, X):
        check_is_fitted(self, "model_")
        images, _ = self._images(X, reset=False)
        if self.backend == "onnxruntime":
            from ._onnx import OnnxPredictor

            if getattr(self, "_ort_session", None) is None:
                self._ort_session = OnnxPredictor.from_module(self.model_, self.image_shape_, n_threads=self.n_threads)
            proba = self._ort_session.predict_proba(images).astype(np.float64)
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(self.n_threads or threads)
            try:
                device = next(self.model_.parameters()).device
                proba = _in_eval_mode(self.model_, self.model_, torch.from_numpy(images).to(device)).cpu().double().numpy()
            finally:
                torch.set_num_threads(threads)
        return proba / proba.sum(axis=1, keepdims=True)  # exact sums after float32 softmax

    def predict(self, X):
        proba = self.predict_proba(X)  # checks fitted-ness first
        return self.classes_[proba.argmax(axis=1)]

    def __getstate__(self):  # an onnxruntime session cannot be pickled; it is rebuilt on demand
        state = self.__dict__.copy()
        state.pop("_ort_session", None)
        return state

    # ------------------------------------------------------------ model files
    def _export_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Weights as numpy arrays (for safetensors) and a JSON-able config."""
        check_is_fitted(self, "model_")
        # .contiguous(): channels-last conv weights would otherwise reach safetensors
        # as strided numpy views, whose raw buffer is in the wrong order.
        tensors = {k: v.detach().cpu().contiguous().numpy() for k, v in self.model_.state_dict().items()}
        params = self.get_params()
        params.pop("callback")
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None  # a RandomState object; the member seeds below still apply
        config = {
            "estimator": type(self).__name__,
            "params": params,
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "n_features_in": int(self.n_features_in_),
            "image_shape": list(self.image_shape_),
            "seeds": self.seeds_,
            "n_threads": self.n_threads_,
            "n_epochs": self.n_epochs_,
            "train_seconds": self.train_seconds_,
            "history": self.history_,
        }
        return tensors, config

    @classmethod
    def _from_state(cls, tensors: dict[str, np.ndarray], config: dict) -> CNNClassifier:
        est = cls(**config["params"])
        est._check_params()
        est.classes_ = np.asarray(config["classes"], dtype=np.dtype(config["classes_dtype"]))
        est.n_features_in_ = config["n_features_in"]
        est.image_shape_ = tuple(config["image_shape"])
        est.seeds_ = list(config["seeds"])
        est.n_threads_ = config["n_threads"]
        est.n_epochs_ = config["n_epochs"]
        est.train_seconds_ = config["train_seconds"]
        est.history_ = list(config["history"])
        est.model_ = Averaged([est._new_net(flag) for flag in est._member_deskews()]).eval()
        est.model_.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()})
        est._ort_session = None
        return est


def _member_in_process(est, X, y, member, seed, deskew_input, start, row_file) -> dict[str, np.ndarray]:
    """Worker-process side of ``_fit_in_processes``: one member's weights as numpy arrays."""
    torch.set_num_threads(est.n_threads_)  # the parent's setting, so the weights match a sequential fit
    with open(row_file, "a", encoding="utf-8") as rows:

        def send(row: dict) -> None:  # one whole line per row, flushed: the parent reads whole lines
            rows.write(json.dumps(row) + "\n")
            rows.flush()

        est._record = send  # this copy's epoch rows go to the parent, which reports them
        net = est._fit_member(torch.from_numpy(X), torch.from_numpy(y), member, seed, deskew_input, start)
    return {k: v.detach().contiguous().numpy() for k, v in net.state_dict().items()}


class _RowLog:
    """Reads the complete JSON lines a worker appended to ``path`` since the last read."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self, record) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.offset += len(complete)
        for line in complete.splitlines():
            record(json.loads(line))


@torch.no_grad()  # not inference_mode: training indexes into the result
def _deskewed(images: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """``_cnn_model.deskew`` over (N, 1, H, W) in chunks (its sampling grid is 2 floats per pixel)."""
    return torch.cat([deskew(chunk) for chunk in images.split(batch)])


@torch.inference_mode()
def _in_eval_mode(module: torch.nn.Module, forward, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """``forward`` (``module`` or one of its methods) over images (N, 1, H, W), in eval mode and batches."""
    was_training = module.training
    module.eval()
    out = [forward(chunk.contiguous(memory_format=CHANNELS_LAST)) for chunk in images.split(batch)]
    module.train(was_training)
    return torch.cat(out)
