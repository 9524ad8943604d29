"""Checkpoints of dl_main.py: model, optimizer, scheduler, config, step, history and RNG states in one dict.

The one place a checkpoint is written and read. Writes are atomic and refuse non-finite weights, so a diverged
run never replaces a good checkpoint; reads use ``torch.load(..., weights_only=True)`` (opening one runs no code)
and check the saved config against the network's limits and the weights for non-finite values.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import torch

from mnistlab.devices import resolve_device
from mnistlab.errors import ProjectError
from mnistlab.files import atomic_path, is_regular
from Network import MAX_HIDDEN, MAX_WIDTH, STEMS, build_model

MAX_CLASS_NAME = 100  # characters: Fashion-MNIST's longest is 11; a name is shown in every answer


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    try:
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        if "mps" in states and torch.backends.mps.is_available():
            torch.mps.set_rng_state(states["mps"])
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise ProjectError(
            f"the checkpoint's random-number states are not ones torch wrote ({detail}); start afresh"
        ) from None


def non_finite(weights: dict) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold NaN or infinity."""
    return [k for k, v in weights.items() if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()]


def save_checkpoint(path: Path, model, opt, sched, state: dict, config: dict, final: bool) -> None:
    """``final``: training has ended (the file predict.py and the page may use), or this is progress to resume."""
    weights = model.state_dict()
    bad = non_finite(weights)
    if bad:
        raise ProjectError(
            f"the weights became non-finite ({bad[0]}) at step {state['step']}; lower --lr "
            f"(nothing saved: {path} keeps the last good checkpoint, if any)"
        )
    ckpt = {
        "model": weights,
        "optimizer": opt.state_dict() if opt else None,
        "scheduler": sched.state_dict() if sched else None,
        "config": config,
        "final": final,
        "rng": rng_states(),
        **state,  # step, epoch, history, the partial log window, timings
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def refusal_reason(exc: Exception) -> str:
    """The line of torch's refusal that says why (e.g. "unsupported GLOBAL posix.system"): the message is
    several paragraphs of advice around it, and advice to load with weights_only=False must not be passed on."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = [line for line in lines if not line.startswith(TORCH_BOILERPLATE)]
    return " ".join(reason or lines[:1] or [type(exc).__name__])[:200]


def read_checkpoint(path: Path, need_training_state: bool = False) -> dict:
    """A checkpoint as saved by dl_main.py, loaded safely (weights_only) onto the CPU and checked."""
    path = Path(path)
    if not is_regular(path, "checkpoint"):
        raise ProjectError(f"no checkpoint at {path}; train one with python dl_main.py (without --resume)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError) as exc:
        raise ProjectError(f"{path} is refused: not a safe, readable checkpoint ({refusal_reason(exc)})") from None
    if not (isinstance(ckpt, dict) and all(isinstance(ckpt.get(k), dict) for k in ("model", "config"))):
        raise ProjectError(f"{path} is not a dl_main.py checkpoint (no model weights and config)")
    bad = non_finite(ckpt["model"])
    if bad:
        raise ProjectError(f"{path} holds non-finite weights ({bad[0]}); it is refused: retrain that run")
    if need_training_state:
        missing = [k for k in ("optimizer", "rng", "step", "history") if ckpt.get(k) is None]
        if missing or ckpt["config"].get("schedule") == "onecycle" and ckpt.get("scheduler") is None:
            what = ", ".join(missing) or "scheduler"
            raise ProjectError(f"{path} lacks its training state ({what}); it cannot be resumed: start afresh")
        problem = settings_problem(ckpt["config"], path) or state_problem(ckpt)
        if problem:
            raise ProjectError(f"{path} cannot be resumed: {problem}; start afresh without --resume")
    return ckpt


# ---------------------------------------------------------------- what a resumed run takes from its checkpoint
def _number(value, low: float = 0.0, high: float = math.inf) -> bool:
    """A finite int or float (not a bool) from ``low`` to ``high``."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high
    )


def _whole(value, low: int = 0, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# The saved settings a resumed run uses as they are (dl_main.check_config checks the network's sizes, dropout and
# label smoothing), each with what it must be.
SETTINGS = {
    "lr": ("a learning rate > 0", lambda v: _number(v) and v > 0),
    "momentum": ("a number >= 0", _number),
    "weight_decay": ("a number >= 0", _number),
    "augment": ("a number >= 0", _number),
    "optimizer": ("sgd, adam or adamw", lambda v: v in ("sgd", "adam", "adamw")),
    "schedule": ("constant or onecycle", lambda v: v in ("constant", "onecycle")),
    "distort": ("a list of distortions", lambda v: isinstance(v, str)),
    "amp": ("on or off", lambda v: v is None or isinstance(v, bool)),
    "print_every": ("a whole number >= 1", lambda v: _whole(v, 1)),
    "target": ("an accuracy from 0 to 1", lambda v: v is None or _number(v, 0, 1)),
    "seed": ("a seed from 0 to 2**32 - 1", lambda v: _whole(v, 0, 2**32 - 1)),
    "seeds": ("from 1 to 1000", lambda v: _whole(v, 1, 1000)),
    "train_size": ("a number of images", lambda v: v is None or _whole(v, 1)),
    "test_size": ("a number of images", lambda v: v is None or _whole(v, 1)),
    "val_size": ("a number of images", lambda v: v is None or _whole(v)),
    "name": ("a run name", lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9][\w.,=+-]*", v) is not None),
}


def settings_problem(config: dict, path: Path) -> str | None:
    """Why the saved settings cannot be trained on as they are, or None."""
    for key, (what, holds) in SETTINGS.items():
        if key not in config:
            return f"its saved settings lack {key}"
        if not holds(config[key]):
            return f"its saved {key} is {config[key]!r:.60}, not {what}"
    stem = re.sub(r"-seed\d+$", "", path.name.removesuffix(".pt").removesuffix(".progress"))
    if config["name"] != stem:  # the name chooses where the run's record, figures and final model are written
        return f"it holds the run {config['name']!r}, not {stem!r}"
    return None


def state_problem(ckpt: dict) -> str | None:
    """Why the saved step, history, log window, timings, optimizer or scheduler are not what dl_main.py wrote."""
    step, epoch, epochs = ckpt["step"], ckpt.get("epoch"), ckpt["config"].get("epochs")
    if not _whole(step) or not _number(epoch) or not _whole(epochs, 1) or epoch > epochs:
        return f"its step {step!r:.30} and epoch {epoch!r:.30} are not a position in {epochs!r:.30} epochs"
    if step and (epoch == 0 or abs(step / epoch - round(step / epoch)) > 1e-6):  # the epoch is step / steps per epoch
        return f"its step {step} is not a whole number of steps per epoch at epoch {epoch}"
    history, kinds, points = ckpt["history"], ("train", "test", "val"), ("step", "epoch", "loss", "accuracy")
    lists = isinstance(history, dict) and all(isinstance(history.get(k, []), list) for k in kinds)
    if not lists or not all(
        isinstance(p, dict) and all(_number(p.get(k), -math.inf) for k in points) for k in kinds for p in history[k]
    ):
        return "its history is not lists of (step, epoch, loss, accuracy) points"
    window = ckpt.get("window", [0.0, 0.0, 0.0])
    if not (isinstance(window, list) and len(window) == 3 and all(_number(v) for v in window)):
        return f"its log window {window!r:.40} is not three finite numbers"
    for key in ("seconds_train", "seconds_eval"):
        if not _number(ckpt.get(key, 0.0)):
            return f"its {key} is {ckpt.get(key)!r:.30}, not a number of seconds"
    rng = ckpt["rng"]
    if not (isinstance(rng, dict) and torch.is_tensor(rng.get("torch")) and rng["torch"].dtype == torch.uint8):
        return "its random-number state is not one torch wrote"
    return optimizer_problem(ckpt) or scheduler_problem(ckpt)


def optimizer_problem(ckpt: dict) -> str | None:
    """The optimizer state must be one group over the network's parameters, each state tensor a scalar or of its
    parameter's shape (torch.optim would otherwise fail, or train on, with a traceback several steps later)."""
    config, opt = ckpt["config"], ckpt["optimizer"]
    problem = network_problem(config, ckpt["model"])
    if problem:
        return problem
    with torch.device("meta"):
        shapes = [p.shape for p in build_model(config["model"], *network_shape(config)).parameters()]
    groups = opt.get("param_groups") if isinstance(opt, dict) else None
    one_group = isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)
    if not one_group or groups[0].get("params") != list(range(len(shapes))) or not isinstance(opt.get("state"), dict):
        return f"its optimizer state is not one group over the {len(shapes)} parameters of this network"
    numbers = [v for v in groups[0].values() if isinstance(v, int | float) and not isinstance(v, bool)]
    if not all(math.isfinite(v) for v in numbers) or not (_number(groups[0].get("lr")) and groups[0]["lr"] > 0):
        return "its optimizer settings hold a learning rate that is not a number > 0, or a non-finite number"
    for index, state in opt["state"].items():
        if not (_whole(index, 0, len(shapes) - 1) and isinstance(state, dict)):
            return f"its optimizer state names a parameter {index!r:.20} this network does not have"
        for name, value in state.items():
            if not (
                torch.is_tensor(value) and value.shape in (torch.Size([]), shapes[index]) and value.isfinite().all()
            ):
                return f"its optimizer state {name} of parameter {index} does not fit it"
    return None


def scheduler_problem(ckpt: dict) -> str | None:
    sched = ckpt.get("scheduler")
    if sched is None:
        return None
    total, last = (sched.get("total_steps"), sched.get("last_epoch")) if isinstance(sched, dict) else (None, None)
    if not (_whole(total, 1) and last == ckpt["step"] and ckpt["step"] <= total):
        return f"its learning-rate schedule (step {last!r:.20} of {total!r:.20}) is not at its step {ckpt['step']}"
    return None


def position_problem(ckpt: dict, epochs: int, total: int) -> str | None:
    """Why a checkpoint's step is not a position in a run of ``total`` steps over ``epochs`` epochs, or None:
    a step past the end would be taken as a finished run, one off the epochs' grid would replay other batches."""
    step, per_epoch, sched = ckpt["step"], total // epochs, ckpt.get("scheduler")
    if step > total:
        run = f"{total} steps = --epochs {epochs} x {per_epoch} per epoch"
        return f"its step {step} is past the end of this run ({run})"
    if abs(ckpt["epoch"] - step / per_epoch) > 1e-6:
        return f"its step {step} at epoch {ckpt['epoch']:g} does not fit this run's {per_epoch} steps per epoch"
    if sched is not None and sched["total_steps"] != total:
        return f"its learning-rate schedule spans {sched['total_steps']} steps, not this run's {total}"
    return None


def load_weights(model, ckpt: dict, path: Path) -> None:
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ProjectError(f"{path} does not fit a {ckpt['config'].get('model')} of this shape: {detail}") from None


def load_model(path, device: str = "cpu"):
    """(model in eval mode on ``device``, its config) from a finished dl_main.py checkpoint, refused unless its
    config, tensors and outputs on a probe input are those of a network of this repo."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    config = ckpt["config"]
    if ckpt.get("final") is not True:
        raise ProjectError(
            f"{path} is an unfinished run (stopped at step {ckpt.get('step')!r}); finish it with "
            "python dl_main.py --resume and the same flags, or train it anew"
        )
    problem = network_problem(config, ckpt["model"])
    if problem:
        raise ProjectError(f"{path}: {problem}; it is refused")
    model = build_model(config["model"], *network_shape(config))
    load_weights(model, ckpt, path)
    model = model.to(resolve_device(device)).eval()
    probe = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(next(model.parameters()).device)
    with torch.inference_mode():
        finite = bool(model(probe).float().isfinite().all())
    if not finite:
        raise ProjectError(
            f"{path}: the network computes non-finite scores (a broken batch norm or weights); "
            "it is refused: retrain that run"
        )
    return model, config


def network_shape(config: dict) -> tuple:
    """build_model's (hidden_size, dropout, number of classes, width, stem) from a saved config."""
    return config["hidden_size"], config["dropout"], len(config["classes"]), config["width"], config["stem"]


def network_problem(config: dict, saved: dict) -> str | None:
    """Why a saved config and tensors are not a network of this repo, or None: the sizes must be in bounds and the
    tensors the network's, name for name, shape and dtype (compared on torch's meta device, which allocates nothing)."""
    hidden, dropout, classes = config.get("hidden_size"), config.get("dropout"), config.get("classes")
    width, stem = config.get("width"), config.get("stem")
    if not (
        _whole(hidden, 1, MAX_HIDDEN)
        and _number(dropout, 0, 1)
        and dropout < 1
        and isinstance(classes, list)
        and 2 <= len(classes) <= 1000
        and all(isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME and c.isprintable() for c in classes)
        and len(set(classes)) == len(classes)
        and _whole(width, 1, MAX_WIDTH)
        and stem in STEMS
    ):
        return (
            f"its config does not describe a network of this repo (hidden_size {hidden!r:.20}, width {width!r:.20}, "
            f"stem {stem!r:.20}, dropout {dropout!r:.20}, classes {classes!r:.60})"
        )
    try:
        with torch.device("meta"):
            expected = build_model(config.get("model"), *network_shape(config)).state_dict()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        return f"its config does not describe a known network ({' '.join(str(exc).split())[:100]})"
    wrong = [
        k
        for k, v in expected.items()
        if k not in saved or not torch.is_tensor(saved[k]) or saved[k].shape != v.shape or saved[k].dtype != v.dtype
    ]
    if wrong or set(saved) != set(expected):
        what = wrong[0] if wrong else "its set of tensors"
        return f"its weights do not fit the network its config describes ({what})"
    return None
