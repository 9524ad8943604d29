"""The one training loop and the one evaluation function that every network of dl_main.py goes through.

The whole dataset lives as tensors on the training device and batches are taken by index: no DataLoader and no
per-image conversion in the hot loop. Train points are accumulated on the device and read back only at log points.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from augment import distort
from dataset import load_splits
from Network import build_model, has_conv
from utils import ProjectError, idle_cores, usable_cores

EVAL_BATCH = 1000


# ---------------------------------------------------------------- device and data
def resolve_device(name: str):
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ProjectError("--device cuda: no CUDA GPU is available here (torch sees none); use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ProjectError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return torch.device(name)


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory instead of returning it to the OS after every step.

    Each training step frees and re-allocates the same multi-megabyte activation buffers; by default
    glibc unmaps them and the next step page-faults them back in (measured: 10 of 27 s of the fast recipe
    in the kernel). PyTorch's CPU tuning guide suggests jemalloc/tcmalloc for this; these two settings
    do the same job without a new dependency. A no-op where the C library is not glibc.
    """
    if platform.libc_ver()[0] != "glibc":  # macOS, Windows, musl: their allocators differ; nothing to set
        return
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


def native_bf16(device) -> bool:
    """Whether the device computes bfloat16 in hardware, so that autocast to it is a speed-up.

    Measured on this project's CPU with oneDNN limited to AVX2, a CNN step in bfloat16 was 8x slower than
    in float32 (emulated), and 1.2x slower with AVX-512 but no BF16 instructions; with AVX512-BF16, 1.7x faster.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()  # Arm: oneDNN's own test for BF16 instructions


def resolve_amp(requested, device) -> bool:
    """--amp / --no-amp as given; "auto" (the fast and best recipes): bfloat16 only where it is native."""
    if requested == "auto":
        native = native_bf16(device)
        if not native:
            print(f"amp: {device.type} has no native bfloat16 here, so training runs in float32 (--amp forces it)")
        return native
    if requested and not native_bf16(device):
        print(f"amp: {device.type} has no native bfloat16 here; --amp will likely be slower than float32")
    return bool(requested)


def setup_torch(config: dict, device) -> None:
    if device.type == "cpu":
        keep_freed_memory()
    threads, cores = config["threads"] or idle_cores(), usable_cores()  # --threads 0: the cores no one is busy on
    if threads < cores and not config["threads"]:
        print(f"note: {cores - threads} of {cores} cores are busy with other work; "
              f"training with {threads} thread(s) (--threads N to choose)")  # fmt: skip
    torch.set_num_threads(threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.backends.cudnn.benchmark = False
    if device.type != "cpu":
        # Same seed, same metrics; ops without a deterministic version only warn. Not needed on the CPU, whose
        # kernels here are deterministic for a fixed thread count, and the call costs a second of imports.
        torch.use_deterministic_algorithms(True, warn_only=True)


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

    return {"classes": splits["classes"], "eval_split": splits["eval_split"], "labels": splits["eval"][1],
            "train": to_device(*splits["train"]), "eval": to_device(*splits["eval"])}  # fmt: skip


# ---------------------------------------------------------------- model and optimizer
def build(config: dict, device, total_steps: int):
    model = build_model(config["model"], config["hidden_size"], config["dropout"], len(config["classes"]),
                        config.get("width", 32), config.get("stem", "pool"))  # fmt: skip
    if has_conv(model) and device.type != "mps":
        model = model.to(memory_format=torch.channels_last)  # measured 1.4x faster steps on the CPU
    model = model.to(device)
    params, lr, wd = model.parameters(), config["lr"], config["weight_decay"]
    fused = device.type in ("cpu", "cuda")  # one kernel for all parameters: Adam's step measured 4x faster
    if config["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=config["momentum"], weight_decay=wd, fused=fused)
    else:
        cls = torch.optim.Adam if config["optimizer"] == "adam" else torch.optim.AdamW
        opt = cls(params, lr=lr, weight_decay=wd, fused=fused)
    sched = None
    if config["schedule"] == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.25)
    return model, opt, sched


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


def train_step(model, opt, sched, xb, yb, config: dict):
    """One optimisation step; returns (summed loss, correct predictions, images) as a tensor on the device."""
    if config["augment"]:  # random distortions, on the device (augment.py); "distort" names the kinds beyond affine
        xb = distort(xb, config["augment"], config.get("distort", ""))
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=config["amp"]):
        logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=config["label_smoothing"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched:
        sched.step()
    correct = (logits.argmax(1) == yb).sum()
    return torch.stack([loss.detach() * len(yb), correct, correct.new_tensor(len(yb))])  # float32


def train(model, opt, sched, data: dict, config: dict, state: dict, save, stop) -> tuple[bool, tuple | None]:
    """The one training loop for every model.

    Returns (finished, final): finished is False when stopped early; final is the last test point's
    (loss, accuracy, predictions, seconds), the final model's evaluation, when this call made it.

    ``state`` (step, history, the partial log window, timings) is updated in place; ``save()`` writes a
    checkpoint; ``stop()`` says whether to stop after the current step (Ctrl-C, --stop-after).
    """
    x, y = data["train"]
    bs, device = config["batch_size"], x.device
    spe = steps_per_epoch(len(y), bs)
    total = config["epochs"] * spe
    log_every, eval_every = config["log_every"], config["eval_every"] or total
    # Loss sum, correct, images. MPS has no float64; float32 counts stay exact up to 2**24 images per window.
    window = torch.tensor(
        state["window"], dtype=torch.float32 if device.type == "mps" else torch.float64, device=device
    )
    bar = tqdm(total=total, initial=state["step"], unit="step", disable=None, mininterval=1, leave=False)
    start, final = time.perf_counter() - state["seconds_train"], None
    while state["step"] < total:
        epoch, first = divmod(state["step"], spe)
        order = epoch_order(len(y), config["seed"], epoch, device)
        for i in range(first, spe):
            idx = order[i * bs : (i + 1) * bs]
            # Accumulated on the device: no host sync per step, only at log points.
            window += train_step(model, opt, sched, x[idx], y[idx], config)
            state["step"] += 1
            step = state["step"]
            state["epoch"] = step / spe
            bar.update()
            if step % log_every == 0:
                log_train(state, window, step / spe, total, bar, step % config["print_every"] < log_every)
            if step % eval_every == 0 or step == total:
                seconds = time.perf_counter()
                final = log_eval(model, data, state, step / spe, total, bar)
                state["seconds_eval"] += time.perf_counter() - seconds
            state["seconds_train"] = time.perf_counter() - start
            if stop():
                state["window"] = window.tolist()
                bar.close()
                return False, None
        state["window"] = window.tolist()
        save()  # every epoch: a crash loses at most one epoch
    bar.close()
    return True, final


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
        bar.write(f"step {state['step']}/{total} epoch {epoch:.2f} | train loss {loss_sum / seen:.4f} "
                  f"acc {100 * correct / seen:.2f}%")  # fmt: skip


def log_eval(model, data: dict, state: dict, epoch: float, total: int, bar) -> tuple:
    """An evaluation point (test set, or validation images in a tuning run) with one console line.

    Returns (loss, accuracy, predictions, seconds taken to evaluate).
    """
    start = time.perf_counter()
    loss, acc, pred = evaluate(model, *data["eval"])
    seconds = time.perf_counter() - start
    if not math.isfinite(loss):
        raise ProjectError(f"the {data['eval_split']} loss became {loss} at step {state['step']}; lower --lr "
                           "(no results written, the last checkpoint kept)")  # fmt: skip
    state["history"][data["eval_split"]].append(point(state["step"], epoch, loss, acc))
    bar.write(f"step {state['step']}/{total} epoch {epoch:.2f} | {data['eval_split']} loss {loss:.4f} "
              f"acc {100 * acc:.2f}% | {state['seconds_train']:.0f}s")  # fmt: skip
    return loss, acc, pred, seconds
