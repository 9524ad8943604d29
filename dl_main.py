"""Train the published networks (MLP, CNN) on MNIST-format digits, log curves, beat the published accuracy.

    python dl_main.py --model cnn                  # published settings: 20 epochs, batch 30, SGD lr 0.01
    python dl_main.py --model mlp --recipe best    # a stronger recipe (schedule, Adam, more hidden units)
    python dl_main.py --model cnn --recipe fast    # >= 99.0% in under 20 s, process start to exit, on 2 cores
    python dl_main.py --model cnn --resume         # continue an interrupted run from checkpoints/cnn.pt

Writes results/<model>.json (accuracy, predictions, per-class scores, the full train/test history),
plots/curves_<model>.png and plots/confusion_<model>.png, and checkpoints/<model>.pt. Ctrl-C saves a
checkpoint and the curves so far; --resume then finishes the run with the same result as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from data_prep import BUNDLED
from utils import ProjectError, atomic_path, per_class_scores, print_config, pyplot, run_cli, summarize_seeds, versions

# The published settings; recipes override some of them, explicit flags override the recipe.
PAPER = {
    "epochs": 20,
    "batch_size": 30,
    "lr": 0.01,
    "optimizer": "sgd",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "schedule": "constant",
    "hidden_size": 196,
    "dropout": 0.5,
    "label_smoothing": 0.0,
    "augment": 0.0,
    "amp": False,
    "eval_every": 1000,
}
FAST = {"optimizer": "adam", "schedule": "onecycle", "amp": True, "batch_size": 128, "eval_every": 0}
BEST = {**FAST, "augment": 1.0, "eval_every": 2000}
RECIPES = {
    "paper": {"mlp": {}, "cnn": {}},
    "fast": {
        "mlp": {**FAST, "epochs": 3, "lr": 3e-3, "hidden_size": 512, "dropout": 0.2},
        "cnn": {**FAST, "epochs": 2, "lr": 6e-3, "dropout": 0.1, "label_smoothing": 0.1},
    },
    "best": {
        "mlp": {**BEST, "epochs": 30, "lr": 2e-3, "hidden_size": 1024, "dropout": 0.3},
        "cnn": {**BEST, "epochs": 50, "lr": 4e-3, "dropout": 0.3, "label_smoothing": 0.1},
    },
}
# Where a run's final-model accuracy should land (the published figure, or the recipe's goal); checked at the end.
TARGETS = {"paper": {"mlp": 0.9386, "cnn": 0.9886}, "fast": {"cnn": 0.990}, "best": {"mlp": 0.980, "cnn": 0.995}}
# Settings that only say where and how to run; everything else comes from the checkpoint on --resume.
RUNTIME = {"device", "threads", "data_dir", "results_dir", "plots_dir", "checkpoint_dir", "resume", "stop_after"}
EVAL_BATCH = 1000
SPLIT_SEED = 0  # the validation split is the same for every training seed


# ---------------------------------------------------------------- settings
def positive(kind):
    def check(text: str):
        value = kind(text)
        if not value > 0:  # also rejects nan
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return check


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser(with_defaults: bool = True) -> argparse.ArgumentParser:
    """The CLI; without defaults, parsing it yields only the flags given explicitly."""
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=None if with_defaults else argparse.SUPPRESS,
    )

    def add(*flags, default=None, **kwargs):
        p.add_argument(*flags, **kwargs, **({"default": default} if with_defaults else {}))

    add("--model", choices=["mlp", "cnn"], default="cnn", help="network to train (default: cnn)")
    add(
        "--recipe",
        choices=list(RECIPES),
        default="paper",
        help="paper: the published settings (default); "
        "fast: Adam, one-cycle, batch 128, bfloat16, 2 epochs (cnn); best: fast plus augmentation, 50 epochs (cnn)",
    )
    add("--epochs", type=positive(int), default=PAPER["epochs"], help="passes over the training set (paper: 20)")
    add("--batch-size", type=positive(int), default=PAPER["batch_size"], help="images per step (paper: 30)")
    add("--lr", type=positive(float), default=PAPER["lr"], help="learning rate, peak one for onecycle (paper: 0.01)")
    add("--optimizer", choices=["sgd", "adam", "adamw"], default=PAPER["optimizer"], help="(paper: sgd)")
    add("--momentum", type=float, default=PAPER["momentum"], help="SGD momentum (paper: 0)")
    add("--weight-decay", type=float, default=PAPER["weight_decay"], help="(paper: 0)")
    add("--schedule", choices=["constant", "onecycle"], default=PAPER["schedule"], help="learning-rate schedule")
    add("--hidden-size", type=positive(int), default=PAPER["hidden_size"], help="hidden units (paper: 196)")
    add("--dropout", type=float, default=PAPER["dropout"], help="dropout probability (paper: 0.5)")
    add("--label-smoothing", type=float, default=PAPER["label_smoothing"], help="(paper: 0)")
    add("--augment", type=float, default=PAPER["augment"], help="random shift/rotate/scale strength, 0 = off")
    add(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=PAPER["amp"],
        help="bfloat16 autocast in training (paper: off)",
    )
    add("--seed", type=int, default=0, help="random seed (default: 0)")
    add("--seeds", type=positive(int), default=1, help="run seeds seed..seed+N-1 and report mean and std")
    add("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="auto: cuda, then mps, then cpu")
    add("--threads", type=non_negative_int, default=0, help="CPU threads (default 0: every available core)")
    add("--dataset", default="mnist", help="dataset name under --data-dir (default: mnist)")
    add("--data-dir", type=Path, default=BUNDLED, help="data folder (default: data/)")
    add("--train-size", type=positive(int), help="use the first N training images (default: all)")
    add("--val-size", type=non_negative_int, default=0, help="hold out N training images to pick a best checkpoint")
    add("--test-size", type=positive(int), help="use the first N test images (default: all)")
    add("--log-every", type=positive(int), default=20, help="log a train point every N steps (default: 20)")
    add("--eval-every", type=non_negative_int, default=PAPER["eval_every"], help="test every N steps, 0: at the end")
    add("--results-dir", type=Path, default=Path("results"), help="default: results/")
    add("--plots-dir", type=Path, default=Path("plots"), help="default: plots/")
    add("--checkpoint-dir", type=Path, default=Path("checkpoints"), help="default: checkpoints/")
    add(
        "--resume",
        action="store_true",
        default=False,
        help="continue from <checkpoint-dir>/<model>.pt with its saved settings",
    )
    add("--stop-after", type=positive(int), help="stop after N steps, saving a checkpoint to --resume from")
    return p


def parse_args(argv=None) -> tuple[argparse.Namespace, set]:
    """The parsed flags and the set of flags given explicitly (they win over the recipe and the checkpoint)."""
    p = build_parser()
    args = p.parse_args(argv)
    explicit = set(vars(build_parser(with_defaults=False).parse_args(argv)))
    for name in ("dropout", "label_smoothing"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    return args, explicit


def resolve_config(args: argparse.Namespace, explicit: set) -> dict:
    """Defaults, then the recipe's settings, then the flags given explicitly."""
    config = vars(args).copy()
    recipe = RECIPES[args.recipe][args.model]
    config.update({k: v for k, v in recipe.items() if k not in explicit})
    config["target"] = TARGETS.get(args.recipe, {}).get(args.model)
    return {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}


# ---------------------------------------------------------------- device and data
def resolve_device(name: str):
    import torch

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
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass


def setup_torch(config: dict, device) -> None:
    import torch

    if device.type == "cpu":
        keep_freed_memory()
    torch.set_num_threads(config["threads"] or len(os.sched_getaffinity(0)))
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.backends.cudnn.benchmark = False
    if device.type != "cpu":
        # Same seed, same metrics; ops without a deterministic version only warn. Not needed on the CPU, whose
        # kernels here are deterministic for a fixed thread count, and the call costs a second of imports.
        torch.use_deterministic_algorithms(True, warn_only=True)


def load_data(config: dict, device) -> dict:
    """Every split as whole tensors on the device: images float (N, 1, 28, 28) in [0, 1], labels int64."""
    import torch

    from data_prep import class_names, load_split

    x, y = load_split("train", config["dataset"], config["data_dir"])
    n_val, n_train = config["val_size"], config["train_size"] or len(y) - config["val_size"]
    if n_val + n_train > len(y):
        raise ProjectError(
            f"--train-size {n_train} plus --val-size {n_val} exceed the {len(y)} training images; choose smaller ones"
        )
    # Validation images are a fixed random subset; training images are the first n_train of the rest, in order.
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y)) if n_val else np.arange(len(y))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])[:n_train]
    x_test, y_test = load_split("test", config["dataset"], config["data_dir"], size=config["test_size"])

    def to_device(images, labels):
        pin = device.type == "cuda"
        xt, yt = torch.from_numpy(images), torch.from_numpy(labels)
        xt, yt = (xt.pin_memory(), yt.pin_memory()) if pin else (xt, yt)
        xt = xt.to(device, non_blocking=pin).unsqueeze(1).float().div_(255)
        # Strides of a channels-last tensor, so batches taken from it keep the fast layout (same memory for C=1).
        xt = xt.contiguous(memory_format=torch.channels_last)
        return xt, yt.to(device, non_blocking=pin)

    data = {"classes": class_names(config["dataset"], config["data_dir"]), "y_test_np": y_test}
    data["train"] = to_device(x[train_idx], y[train_idx])
    data["val"] = to_device(x[val_idx], y[val_idx]) if n_val else None
    data["test"] = to_device(x_test, y_test)
    return data


def augment(x, strength: float):
    """Random affine distortion of a batch on its device: shifts up to 2 px, 10 degrees, 10% scale (x strength)."""
    import torch
    import torch.nn.functional as F

    n = len(x)
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(10) * strength
    scale = 1 + (torch.rand(n, device=x.device) * 2 - 1) * 0.1 * strength
    shift = (torch.rand(n, 2, device=x.device) * 2 - 1) * (2 / 14) * strength  # grid units: 14 px = 1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------- model, optimizer, checkpoints
def build(config: dict, device, total_steps: int):
    import torch

    from Network import build_model, has_conv

    model = build_model(config["model"], config["hidden_size"], config["dropout"], len(config["classes"]))
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


def rng_states() -> dict:
    import torch

    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])


def save_checkpoint(path: Path, model, opt, sched, state: dict, config: dict) -> None:
    import torch

    ckpt = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict() if opt else None,
        "scheduler": sched.state_dict() if sched else None,
        "config": config,
        "rng": rng_states(),
        **state,  # step, epoch, history, the partial log window, timings, best validation point
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint as saved by dl_main.py, loaded safely (weights_only) onto the CPU."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"no checkpoint at {path}; train one with python dl_main.py (without --resume)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ProjectError(f"{path} is not a readable checkpoint ({first[:120]})") from None
    if not isinstance(ckpt, dict) or not {"model", "config"} <= set(ckpt):
        raise ProjectError(f"{path} is not a dl_main.py checkpoint (no model weights and config)")
    return ckpt


def load_weights(model, ckpt: dict, path: Path) -> None:
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ProjectError(f"{path} does not fit a {ckpt['config'].get('model')} of this shape: {detail}") from None


def load_model(path, device: str = "cpu"):
    """(model in eval mode on ``device``, its config) rebuilt from a dl_main.py checkpoint."""
    from Network import build_model

    ckpt = read_checkpoint(path)
    config = ckpt["config"]
    try:
        n_classes = len(config.get("classes") or range(10))
        model = build_model(config["model"], config["hidden_size"], config["dropout"], n_classes)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProjectError(f"{path}: its config does not describe a known network ({exc})") from None
    load_weights(model, ckpt, Path(path))
    return model.to(resolve_device(device)).eval(), config


# ---------------------------------------------------------------- training and evaluation
def evaluate(model, x, y) -> tuple[float, float, object]:
    """(true mean cross-entropy, accuracy, predicted labels) in eval mode, in large batches."""
    import torch
    import torch.nn.functional as F

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
    import torch

    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return torch.randperm(n, generator=gen).to(device, non_blocking=True)


def train_step(model, opt, sched, xb, yb, config: dict):
    """One optimisation step; returns (summed loss, correct predictions, images) as a tensor on the device."""
    import torch
    import torch.nn.functional as F

    if config["augment"]:
        xb = augment(xb, config["augment"])
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=config["amp"]):
        logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=config["label_smoothing"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched:
        sched.step()
    correct = (logits.argmax(1) == yb).sum()
    return torch.stack([loss.detach() * len(yb), correct, correct.new_tensor(len(yb))]).double()


def train(model, opt, sched, data: dict, config: dict, state: dict, save, stop) -> tuple[bool, tuple | None]:
    """The one training loop for every model.

    Returns (finished, final): finished is False when stopped early; final is the last test point's
    (loss, accuracy, predictions, seconds), the final model's evaluation, when this call made it.

    ``state`` (step, history, the partial log window, timings) is updated in place; ``save()`` writes a
    checkpoint; ``stop()`` says whether to stop after the current step (Ctrl-C, --stop-after).
    """
    import torch
    from tqdm import tqdm

    x, y = data["train"]
    bs, device = config["batch_size"], x.device
    spe = steps_per_epoch(len(y), bs)
    total = config["epochs"] * spe
    log_every, eval_every = config["log_every"], config["eval_every"] or total
    window = torch.tensor(state["window"], dtype=torch.float64, device=device)  # loss sum, correct, images
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
                log_train(state, window, step / spe, bar)
            if step % eval_every == 0 or step == total:
                seconds = time.perf_counter()
                final = log_test(model, data, state, step / spe, total, bar, save)
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


def log_train(state: dict, window, epoch: float, bar) -> None:
    loss_sum, correct, seen = window.tolist()
    window.zero_()
    if not math.isfinite(loss_sum):
        raise ProjectError(
            f"the training loss became {loss_sum} at step {state['step']}; lower --lr (no results written)"
        )
    state["history"]["train"].append(point(state["step"], epoch, loss_sum / seen, correct / seen))
    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%", refresh=False)


def log_test(model, data: dict, state: dict, epoch: float, total: int, bar, save) -> tuple:
    """A test point (and a validation point, keeping the best-on-validation checkpoint) with one console line.

    Returns the test (loss, accuracy, predictions, seconds taken to evaluate the test set).
    """
    start = time.perf_counter()
    loss, acc, pred = evaluate(model, *data["test"])
    seconds = time.perf_counter() - start
    if not math.isfinite(loss):
        raise ProjectError(f"the test loss became {loss} at step {state['step']}; lower --lr (no results written)")
    state["history"]["test"].append(point(state["step"], epoch, loss, acc))
    train = state["history"]["train"][-1] if state["history"]["train"] else None
    line = f"step {state['step']}/{total} epoch {epoch:.2f}"
    if train:
        line += f" | train loss {train['loss']:.4f} acc {100 * train['accuracy']:.2f}%"
    line += f" | test loss {loss:.4f} acc {100 * acc:.2f}%"
    if data["val"] is not None:
        v_loss, v_acc, _ = evaluate(model, *data["val"])
        state["history"]["val"].append(point(state["step"], epoch, v_loss, v_acc))
        line += f" | val acc {100 * v_acc:.2f}%"
        if state["best_val"] is None or v_acc > state["best_val"]["val_accuracy"]:
            state["best_val"] = {"step": state["step"], "val_accuracy": v_acc}
            save(best=True)
    bar.write(line + f" | {state['seconds_train']:.0f}s")
    return loss, acc, pred, seconds


# ---------------------------------------------------------------- outputs
def plot_curves(history: dict, path: Path, title: str) -> None:
    """Loss and accuracy against the step: train points as a line, test (and validation) points as markers."""
    plt = pyplot()

    from utils import savefig

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for split, style in (("train", {"lw": 0.8, "alpha": 0.7}), ("test", {"marker": "o"}), ("val", {"marker": "s"})):
        pts = history.get(split) or []
        if not pts:
            continue
        steps = [p["step"] for p in pts]
        axes[0].plot(steps, [p["loss"] for p in pts], label=split, **style)
        axes[1].plot(steps, [100 * p["accuracy"] for p in pts], label=split, **style)
    for ax, name in zip(axes, ("cross-entropy loss", "accuracy (%)"), strict=True):
        ax.set_xlabel("step (batches)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    # Zoom on where the evaluated accuracy lies; the first train points, far lower, run in from below.
    evaluated = [100 * p["accuracy"] for split in ("test", "val") for p in history.get(split) or []]
    if evaluated:
        axes[1].set_ylim(max(0.0, min(evaluated) - 3), 100.2)
    fig.suptitle(title)
    savefig(fig, path)


def checkpoint_path(config: dict, index: int, best: bool = False) -> Path:
    """<model>.pt for the first seed, <model>_seed<S>.pt for the others; _best for the validation pick."""
    name = config["model"] + (f"_seed{config['seed']}" if index else "") + ("_best" if best else "")
    return Path(config["checkpoint_dir"]) / f"{name}.pt"


# ---------------------------------------------------------------- one run
def fresh_state() -> dict:
    return {"step": 0, "epoch": 0.0, "history": {"train": [], "test": [], "val": []}, "window": [0.0, 0.0, 0.0],
            "seconds_train": 0.0, "seconds_eval": 0.0, "best_val": None}  # fmt: skip


def saved_config(config: dict, explicit: set, ckpt: dict, path: Path) -> dict:
    """The checkpoint's settings with this invocation's runtime ones; a conflicting explicit flag is an error."""
    saved = ckpt["config"]
    if saved.get("model") != config["model"]:
        raise ProjectError(f"{path} holds a {saved.get('model')!r} network, not {config['model']!r}")
    for key in sorted(explicit - RUNTIME - {"seeds"}):
        if saved.get(key) != config[key]:
            raise ProjectError(
                f"--{key.replace('_', '-')} {config[key]} differs from the checkpoint's {saved.get(key)}; "
                "drop the flag to continue that run, or start afresh without --resume"
            )
    return {**saved, **{k: config[k] for k in RUNTIME | {"seeds"}}}


def run_seed(config: dict, index: int, explicit: set, data: dict, device, stop) -> dict | None:
    """Train (or continue) one seed and return its record; None when stopped before the end."""
    import torch

    path, state, ckpt = checkpoint_path(config, index), fresh_state(), None
    if config["resume"] and (index == 0 or path.exists()):  # later seeds may not have started yet
        ckpt = read_checkpoint(path)
        config = saved_config(config, explicit, ckpt, path)
        state.update({k: ckpt[k] for k in state if k in ckpt})
    torch.manual_seed(config["seed"])
    total = config["epochs"] * steps_per_epoch(len(data["train"][1]), config["batch_size"])
    model, opt, sched = build(config, device, total)
    if ckpt:
        load_weights(model, ckpt, path)
        opt.load_state_dict(ckpt["optimizer"])
        if sched:
            sched.load_state_dict(ckpt["scheduler"])
        set_rng_states(ckpt["rng"])
        print(f"resuming {path} at step {state['step']}/{total}")

    def save(best: bool = False) -> None:
        save_checkpoint(checkpoint_path(config, index, best), model, opt, sched, state, config)

    title = f"{config['model']} ({config['recipe']} recipe, seed {config['seed']}) on {config['dataset']}"
    curves = Path(config["plots_dir"]) / f"curves_{config['model']}.png"
    finished, final = train(model, opt, sched, data, config, state, save, stop)
    if not finished:
        save()
        plot_curves(state["history"], curves, title + f", stopped at step {state['step']}")
        return None
    if final is None:  # a finished run resumed: evaluate it here
        start = time.perf_counter()
        final = (*evaluate(model, *data["test"]), time.perf_counter() - start)
    loss, acc, pred, seconds_predict = final
    if index == 0:  # the merged record keeps the first seed's history and predictions; so do the figures
        plot_curves(state["history"], curves, title)
    record = {
        "model": config["model"],
        "dataset": config["dataset"],
        "test_accuracy": acc,
        "test_loss": loss,
        "n_train": len(data["train"][1]),
        "n_val": 0 if data["val"] is None else len(data["val"][1]),
        "n_test": len(data["test"][1]),
        "seconds_train": state["seconds_train"],
        "seconds_eval_during_training": state["seconds_eval"],
        "seconds_per_epoch": state["seconds_train"] / config["epochs"],
        "seconds_predict": seconds_predict,
        "steps": state["step"],
        "seed": config["seed"],
        "device": str(device),
        "checkpoint": str(checkpoint_path(config, index)),
        "predictions": pred.cpu().tolist(),
        "history": state["history"],
        "config": config,
    }
    if state["best_val"]:
        record["best_val"] = {**state["best_val"], "checkpoint": str(checkpoint_path(config, index, best=True))}
    print(f"{config['model']} seed {config['seed']}: test accuracy {100 * acc:.2f}% (final model), "
          f"{record['seconds_per_epoch']:.1f} s/epoch, {state['seconds_train']:.1f} s training")  # fmt: skip
    return record


def write_outputs(record: dict, data: dict, config: dict) -> None:
    """Figures first, the JSON last: its presence vouches for a finished run."""
    from utils import plot_confusion, write_json

    classes, pred = data["classes"], np.asarray(record["predictions"])
    record["per_class"] = per_class_scores(data["y_test_np"], pred, classes)
    record["versions"] = versions("torch", "torchvision", "numpy", "scikit-learn")
    full_mnist = config["dataset"] == "mnist" and not config["train_size"] and not config["test_size"]
    target = config["target"] if full_mnist else None  # the goals hold for the full split only
    record["target"], record["target_met"] = target, None if target is None else record["test_accuracy"] >= target
    title = f"{record['model']} ({config['recipe']}): {100 * record['test_accuracy']:.2f}% on {record['n_test']} images"
    plot_confusion(data["y_test_np"], pred, classes, Path(config["plots_dir"]) / f"confusion_{record['model']}.png",
                   title)  # fmt: skip
    write_json(Path(config["results_dir"]) / f"{record['model']}.json", record)
    if target is not None:
        verdict = "reached" if record["target_met"] else "NOT reached"
        print(f"target {100 * target:.2f}% {verdict} (final model {100 * record['test_accuracy']:.2f}%)")


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


def _main(argv=None) -> int:
    args, explicit = parse_args(argv)
    with StopFlag(args.stop_after) as stop:  # from the start: a Ctrl-C during set-up also ends cleanly
        return run_all(resolve_config(args, explicit), explicit, stop)


def run_all(config: dict, explicit: set, stop) -> int:
    if config["resume"]:  # the data and every training setting come from the checkpoint
        path = checkpoint_path(config, 0)
        config = saved_config(config, explicit, read_checkpoint(path), path)
    device = resolve_device(config["device"])
    print_config(config)
    setup_torch(config, device)
    data = load_data(config, device)
    config["classes"] = data["classes"]
    records = []
    for index in range(config["seeds"]):
        record = run_seed({**config, "seed": config["seed"] + index}, index, explicit, data, device, stop)
        if record is None:
            path = checkpoint_path({**config, "seed": config["seed"] + index}, index)
            why = "interrupted" if stop.requested else f"stopped after --stop-after {config['stop_after']} steps"
            print(f"dl_main.py: {why}; checkpoint saved to {path}; continue with --resume", file=sys.stderr)
            return 130 if stop.requested else 0
        records.append(record)
    merged = summarize_seeds(records)
    write_outputs(merged, data, records[0]["config"])
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
