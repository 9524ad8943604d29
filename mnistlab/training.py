"""The pieces of dl_main.py's loop: data as whole tensors on the device, evaluation, the shuffled order,
log points, the stop flag (Ctrl-C, --stop-after) and the run's checkpoint state.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.data import load_splits
from mnistlab.errors import ProjectError
from mnistlab.records import run_paths

EVAL_BATCH = 1000


def load_data(config: dict, device) -> dict:
    """The run's splits as whole tensors on the device: images float (N, 1, 28, 28) in [0, 1], labels int64.

    ``eval`` is the test set, or the held-out validation images of a tuning run (``eval_split`` says which).
    """
    splits = load_splits(config)

    def to_device(images, labels):
        pin = device.type == "cuda"
        xt, yt = torch.from_numpy(images), torch.from_numpy(labels)
        xt, yt = (xt.pin_memory(), yt.pin_memory()) if pin else (xt, yt)
        xt = xt.to(device, non_blocking=pin).unsqueeze(1).float().div_(255)
        # Strides of a channels-last tensor, so batches taken from it keep the fast layout (same memory for C=1).
        xt = xt.contiguous(memory_format=torch.channels_last)
        return xt, yt.to(device, non_blocking=pin)

    return {
        "classes": splits["classes"],
        "eval_split": splits["eval_split"],
        "labels": splits["eval"][1],
        "train": to_device(*splits["train"]),
        "eval": to_device(*splits["eval"]),
    }


# ---------------------------------------------------------------- training and evaluation
def evaluate(model, x, y) -> tuple[float, float, object]:
    """(true mean cross-entropy, accuracy, predicted labels) in eval mode, in large batches."""
    was_training = model.training
    model.eval()
    loss, preds = torch.zeros((), device=x.device), []
    with torch.inference_mode():
        for i in range(0, len(x), EVAL_BATCH):
            logits = model(x[i : i + EVAL_BATCH]).float()
            loss += F.cross_entropy(logits, y[i : i + EVAL_BATCH], reduction="sum")
            preds.append(logits.argmax(1))
    model.train(was_training)
    pred = torch.cat(preds)
    return loss.item() / len(y), (pred == y).sum().item() / len(y), pred


def steps_per_epoch(n: int, batch_size: int) -> int:
    # A last batch of a single image is dropped: batch norm cannot train on one value per channel.
    return n // batch_size + (n % batch_size > 1)


def epoch_order(n: int, seed: int, epoch: int, device):
    """The epoch's shuffled order, a function of (seed, epoch) alone, so a resumed run replays it exactly."""
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return torch.randperm(n, generator=gen).to(device, non_blocking=True)


def point(step: int, epoch: float, loss: float, accuracy: float) -> dict:
    return {"step": step, "epoch": round(epoch, 4), "loss": loss, "accuracy": accuracy}


def log_train(state: dict, window, epoch: float, total: int, bar, show: bool) -> None:
    """A train point: the mean loss and accuracy over the steps since the last one (a console line if ``show``)."""
    loss_sum, correct, seen = window.tolist()
    window.zero_()
    if not math.isfinite(loss_sum):
        raise ProjectError(
            f"the training loss became {loss_sum} at step {state['step']}; lower --lr "
            "(no results written, the last checkpoint kept)"
        )
    state["history"]["train"].append(point(state["step"], epoch, loss_sum / seen, correct / seen))
    if show:
        bar.write(
            f"step {state['step']}/{total} epoch {epoch:.2f} | train loss {loss_sum / seen:.4f} "
            f"acc {100 * correct / seen:.2f}%"
        )


def log_eval(model, data: dict, state: dict, epoch: float, total: int, bar) -> tuple:
    """An evaluation point (test set, or validation images in a tuning run) with one console line;
    (loss, accuracy, predictions, seconds taken to evaluate)."""
    start = time.perf_counter()
    loss, acc, pred = evaluate(model, *data["eval"])
    seconds = time.perf_counter() - start
    if not math.isfinite(loss):
        raise ProjectError(
            f"the {data['eval_split']} loss became {loss} at step {state['step']}; lower --lr "
            "(no results written, the last checkpoint kept)"
        )
    state["history"][data["eval_split"]].append(point(state["step"], epoch, loss, acc))
    bar.write(
        f"step {state['step']}/{total} epoch {epoch:.2f} | {data['eval_split']} loss {loss:.4f} "
        f"acc {100 * acc:.2f}% | {state['seconds_train']:.0f}s"
    )
    return loss, acc, pred, seconds


class StopFlag:
    """Ctrl-C (SIGINT) asks the loop to stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self, stop_after: int | None):
        self.requested, self.budget, self.old = False, stop_after, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self.handle)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        if self.budget is not None:
            self.budget -= 1
            return self.requested or self.budget <= 0
        return self.requested


# ---------------------------------------------------------------- one run
def fresh_state() -> dict:
    return {
        "step": 0,
        "epoch": 0.0,
        "history": {"train": [], "test": [], "val": []},
        "window": [0.0, 0.0, 0.0],
        "seconds_train": 0.0,
        "seconds_eval": 0.0,
    }


def checkpoint_files(config: dict, index: int) -> tuple[Path, Path]:
    """(final, progress): <name>.pt for the first seed, <name>-seed<S>.pt for the others, and beside each the
    .progress.pt that an unfinished run writes, so that an interrupted run never replaces a finished model."""
    path = run_paths(config)["checkpoint"]
    final = path.with_name(path.name + (f"-seed{config['seed']}" if index else "") + ".pt")
    return final, final.with_suffix(".progress.pt")
