"""Checkpoints of dl_main.py: model, optimizer, scheduler, config, step, history and RNG states in one dict.

The one place a checkpoint is written and read. Writes are atomic and refuse non-finite weights, so a diverged
run never replaces a good checkpoint; reads use ``torch.load(..., weights_only=True)`` (opening one runs no code)
and check the saved config against the network's limits and the weights for non-finite values.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from mnistlab.devices import resolve_device
from mnistlab.errors import ProjectError
from mnistlab.files import atomic_path, is_regular
from Network import MAX_HIDDEN, MAX_WIDTH, STEMS, build_model


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])


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
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("model"), dict)
        or not isinstance(ckpt.get("config"), dict)
    ):
        raise ProjectError(f"{path} is not a dl_main.py checkpoint (no model weights and config)")
    bad = non_finite(ckpt["model"])
    if bad:
        raise ProjectError(f"{path} holds non-finite weights ({bad[0]}); it is refused: retrain that run")
    if need_training_state:
        missing = [k for k in ("optimizer", "rng", "step", "history") if ckpt.get(k) is None]
        if missing or ckpt["config"].get("schedule") == "onecycle" and ckpt.get("scheduler") is None:
            what = ", ".join(missing) or "scheduler"
            raise ProjectError(f"{path} lacks its training state ({what}); it cannot be resumed: start afresh")
    return ckpt


def load_weights(model, ckpt: dict, path: Path) -> None:
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ProjectError(f"{path} does not fit a {ckpt['config'].get('model')} of this shape: {detail}") from None


def load_model(path, device: str = "cpu"):
    """(model in eval mode on ``device``, its config) rebuilt from a finished dl_main.py checkpoint.

    Validated by what it holds and computes, not only by its types: the config's sizes are checked, the saved
    tensors' shapes are compared with the network's on torch's meta device (which allocates nothing) before
    the real network is built, and its outputs must be finite on a probe input.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    config = ckpt["config"]
    if ckpt.get("final") is not True:
        raise ProjectError(
            f"{path} is an unfinished run (stopped at step {ckpt.get('step')!r}); finish it with "
            "python dl_main.py --resume and the same flags, or train it anew"
        )
    hidden, dropout, classes = config.get("hidden_size"), config.get("dropout"), config.get("classes")
    width, stem = config.get("width"), config.get("stem")
    if not (
        isinstance(hidden, int)
        and 1 <= hidden <= MAX_HIDDEN
        and isinstance(dropout, (int, float))
        and 0 <= dropout < 1
        and isinstance(classes, list)
        and 2 <= len(classes) <= 1000
        and isinstance(width, int)
        and 1 <= width <= MAX_WIDTH
        and stem in STEMS
    ):
        raise ProjectError(
            f"{path}: its config does not describe a network of this repo (hidden_size {hidden!r}, "
            f"width {width!r}, stem {stem!r}, dropout {dropout!r}); it is refused"
        )
    try:
        with torch.device("meta"):
            expected = build_model(config["model"], hidden, dropout, len(classes), width, stem).state_dict()
    except (KeyError, TypeError, ValueError) as exc:
        raise ProjectError(f"{path}: its config does not describe a known network ({exc})") from None
    saved = ckpt["model"]
    wrong = [
        k for k, v in expected.items() if k not in saved or not torch.is_tensor(saved[k]) or saved[k].shape != v.shape
    ]
    if wrong or set(saved) != set(expected):
        what = wrong[0] if wrong else "its set of tensors"
        raise ProjectError(f"{path}: its weights do not fit the network its config describes ({what}); it is refused")
    model = build_model(config["model"], hidden, dropout, len(classes), width, stem)
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
