"""Checkpoints of dl_main.py: model, optimizer, scheduler, config, step, history and RNG states in one dict.

They are saved atomically and loaded with ``torch.load(..., weights_only=True)``, so opening one runs no code.
"""

from __future__ import annotations

from pathlib import Path

from data_prep import N_CLASSES
from trainer import resolve_device
from utils import ProjectError, atomic_path


def checkpoint_path(config: dict, index: int, best: bool = False) -> Path:
    """<model>.pt for the first seed, <model>_seed<S>.pt for the others; _best for the validation pick."""
    name = config["model"] + (f"_seed{config['seed']}" if index else "") + ("_best" if best else "")
    return Path(config["checkpoint_dir"]) / f"{name}.pt"


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
        n_classes = len(config.get("classes") or range(N_CLASSES))
        model = build_model(config["model"], config["hidden_size"], config["dropout"], n_classes)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProjectError(f"{path}: its config does not describe a known network ({exc})") from None
    load_weights(model, ckpt, Path(path))
    return model.to(resolve_device(device)).eval(), config
