"""Train the published networks (MLP, CNN) on MNIST, log their curves, and beat the published accuracy.

    python dl_main.py --model cnn                  # published settings: 20 epochs, batch 30, SGD lr 0.01
    python dl_main.py --model cnn --recipe fast    # >= 99.0% in seconds (Adam, one-cycle, batch 128)
    python dl_main.py --model mlp --recipe best    # the highest accuracy, also on other writers' digits
    python dl_main.py --model cnn --resume         # continue an interrupted run from its checkpoint

A run is named <model>-<recipe> (plus any setting given explicitly, e.g. cnn-paper-epochs2) and writes
results/<dataset>/<name>.json (accuracy, predictions, per-class scores, the full train/test history),
plots/<dataset>/curves_<name>.png and confusion_<name>.png, and checkpoints/<dataset>/<name>.pt once it has
finished (an unfinished run keeps its state in <name>.progress.pt: it never replaces a finished model).
The published log cadence (a train point every 20 steps, a test point every 1000) is kept in the record and
the curves; on the console a train line is printed every --print-every steps (default 500) and at every test
point. Ctrl-C saves the progress; --resume then finishes with the same result as an uninterrupted run.
"""

from __future__ import annotations

import mnistlab.errors  # noqa: F401 (first: its hook makes a Ctrl-C during the slow imports below one line)

# isort: split
import argparse
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mnistlab import flags
from mnistlab.augment import KINDS, distort, parse_kinds
from mnistlab.checkpoints import load_weights, position_problem, read_checkpoint, save_checkpoint, set_rng_states
from mnistlab.devices import resolve_amp, resolve_device, setup_torch
from mnistlab.errors import ProjectError, hard_exit, one_line, run_cli
from mnistlab.files import check_output_dirs, is_regular, write_json
from mnistlab.machine import process_age, versions
from mnistlab.plots import plot_confusion, plot_curves
from mnistlab.recipes import NETWORK_RECIPES, PAPER, RECIPE_HELP, network_settings
from mnistlab.records import RUNTIME, per_class_scores, print_config, run_name, run_paths, summarize_seeds
from mnistlab.training import (
    StopFlag,
    checkpoint_files,
    epoch_order,
    evaluate,
    fresh_state,
    load_data,
    log_eval,
    log_train,
    steps_per_epoch,
)
from Network import MAX_HIDDEN, MAX_WIDTH, STEMS, build_model, has_conv


# ---------------------------------------------------------------- the model, the optimizer, one step
def build(config: dict, device, total_steps: int):
    """The network of Network.py, its optimizer and its learning-rate schedule."""
    model = build_model(
        config["model"],
        config["hidden_size"],
        config["dropout"],
        len(config["classes"]),
        config["width"],
        config["stem"],
    ).to(device)
    if has_conv(model) and device.type != "mps":
        model = model.to(memory_format=torch.channels_last)  # measured 1.4x faster steps on the CPU
    fused = device.type in ("cpu", "cuda")  # one kernel for all parameters: Adam's step measured 4x faster
    kwargs = {"lr": config["lr"], "weight_decay": config["weight_decay"], "fused": fused}
    if config["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), momentum=config["momentum"], **kwargs)
    else:
        opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config["optimizer"]](model.parameters(), **kwargs)
    sched = None
    if config["schedule"] == "onecycle":  # OneCycleLR divides by its warm-up's length: keep it off zero
        pct = 0.25 if total_steps > 4 else 0.5 / total_steps
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config["lr"], total_steps=total_steps, pct_start=pct)
    return model, opt, sched


def train_step(model, opt, sched, xb, yb, config: dict):
    """One optimisation step on a batch xb (B, 1, 28, 28), yb (B,); returns [loss sum, correct, B] on the device."""
    if config["augment"]:  # random distortions, on the device (mnistlab/augment.py)
        xb = distort(xb, config["augment"], config["distort"])
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=config["amp"]):
        logits = model(xb)  # (B, classes)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=config["label_smoothing"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched:
        sched.step()
    correct = (logits.argmax(1) == yb).sum()
    return torch.stack([loss.detach() * len(yb), correct, correct.new_tensor(len(yb))])


# ---------------------------------------------------------------- the training loop
def train(config: dict, index: int, data: dict, device, stop) -> dict | None:
    """Train (or continue) one seed; its record, or None when stopped before the end."""
    final_path, progress_path = checkpoint_files(config, index)
    x, y = data["train"]  # (N, 1, 28, 28) float in [0, 1], (N,) int64, on the device
    bs, spe = config["batch_size"], steps_per_epoch(len(y), config["batch_size"])
    total, log_every = config["epochs"] * spe, config["log_every"]
    eval_every = config["eval_every"] or total  # 0: evaluate at the end only
    torch.manual_seed(config["seed"])
    setup = time.perf_counter()
    model, opt, sched = build(config, device, total)  # torch.optim imports torch's compiler here: about 1.3 s
    state = resume(config, index, model, opt, sched, total) if config["resume"] else fresh_state()
    seconds_setup = time.perf_counter() - setup

    def save_progress() -> None:
        save_checkpoint(progress_path, model, opt, sched, state, config, final=False)

    # Loss sum, correct, images since the last train point, summed on the device: no host sync per step.
    window = torch.tensor(
        state["window"], dtype=torch.float32 if device.type == "mps" else torch.float64, device=device
    )
    bar = tqdm(total=total, initial=state["step"], unit="step", disable=None, mininterval=1, leave=False)
    start, final = time.perf_counter() - state["seconds_train"], None
    while state["step"] < total:
        epoch, first = divmod(state["step"], spe)
        order = epoch_order(len(y), config["seed"], epoch, device)  # a function of (seed, epoch): resumable
        for i in range(first, spe):
            idx = order[i * bs : (i + 1) * bs]
            window += train_step(model, opt, sched, x[idx], y[idx], config)
            state["step"] += 1
            step, state["epoch"] = state["step"], state["step"] / spe
            bar.update()
            if step % log_every == 0:  # the published cadence: a train point every 20 steps
                log_train(state, window, step / spe, total, bar, step % config["print_every"] < log_every)
            if step % eval_every == 0 or step == total:  # and a test point every 1000
                began = time.perf_counter()
                final = log_eval(model, data, state, step / spe, total, bar)
                state["seconds_eval"] += time.perf_counter() - began
            state["seconds_train"] = time.perf_counter() - start
            if stop():
                state["window"] = window.tolist()
                save_progress()
                bar.close()
                plot_curves(state["history"], run_paths(config)["curves"], f"{config['name']}, stopped at {step}")
                return None
        state["window"] = window.tolist()
        save_progress()  # every epoch: a crash loses at most one epoch
    bar.close()
    seconds_eval_after = 0.0  # the last test point is the final evaluation, already in seconds_eval
    if final is None:  # a finished run resumed: evaluate it here
        began = time.perf_counter()
        final = (*evaluate(model, *data["eval"]), time.perf_counter() - began)
        seconds_eval_after = final[-1]
    began = time.perf_counter()  # the model saved and its record (per-class scores: scikit-learn's import, 1-2 s)
    save_checkpoint(final_path, model, opt, sched, state, config, final=True)  # then the progress is not needed
    progress_path.unlink(missing_ok=True)
    record = seed_record(config, data, state, final, device, final_path)
    seconds = {"seconds_setup": seconds_setup, "seconds_eval_after": seconds_eval_after}
    return {**record, **seconds, "seconds_record": time.perf_counter() - began}


# ---------------------------------------------------------------- the run
def run(config: dict, stop) -> int:
    if config["resume"]:  # the data and every training setting come from the checkpoint
        config = resumed_config(config)
    started, timings = time.perf_counter(), {"startup": process_age()}  # startup: interpreter and imports
    device = resolve_device(config["device"])
    config["amp"] = resolve_amp(config["amp"], device)  # saved resolved: a resumed run repeats it
    print_config(config)
    paths = run_paths(config)
    check_output_dirs(
        {
            "--results-dir": paths["record"].parent,
            "--plots-dir": paths["curves"].parent,
            "--checkpoint-dir": paths["checkpoint"].parent,
        }
    )
    setup_torch(config, device)
    data = load_data(config, device)  # every split as whole tensors on the device
    config["classes"] = data["classes"]
    timings["data"] = time.perf_counter() - started  # with the device and thread set-up
    if steps_per_epoch(len(data["train"][1]), config["batch_size"]) == 0:
        raise ProjectError(
            f"{len(data['train'][1])} training image(s) make no batch of --batch-size "
            f"{config['batch_size']} (a batch needs 2 images or more); use more training images"
        )
    records = []
    for index in range(config["seeds"]):
        seed_config = {**config, "seed": config["seed"] + index}
        record = train(seed_config, index, data, device, stop)
        if record is None:
            why = "interrupted" if stop.requested else f"stopped after --stop-after {config['stop_after']} steps"
            print(
                f"dl_main.py: {why}; progress saved to {one_line(checkpoint_files(seed_config, index)[1])}; "
                "continue with --resume",
                file=sys.stderr,
            )
            return 130 if stop.requested else 0
        records.append(record)
    timings["model"] = sum(r.pop("seconds_setup") for r in records)  # model and optimizer set-up
    timings["training"] = sum(r["seconds_train"] - r["seconds_eval_during_training"] for r in records)
    timings["evaluation"] = sum(r["seconds_eval_during_training"] + r.pop("seconds_eval_after") for r in records)
    timings["record"] = sum(r.pop("seconds_record") for r in records)  # the checkpoint and the record
    write_outputs(records, data, records[0]["config"], timings)
    return 0


def resume(config: dict, index: int, model, opt, sched, total: int) -> dict:
    """Load a run's progress (or, when it had finished, its final checkpoint) into the model and optimizer;
    ``total``: this run's steps (epochs x steps per epoch), which the saved step must be a position in."""
    path = resume_file(config, index)
    if path is None and index > 0:
        return fresh_state()  # a later seed that had not started yet
    path = path or checkpoint_files(config, index)[0]  # none at all: read_checkpoint says so in one line
    ckpt, state = read_checkpoint(path, need_training_state=True), fresh_state()
    if problem := position_problem(ckpt, config["epochs"], total):
        raise ProjectError(f"{path} cannot be resumed: {problem}; start afresh without --resume")
    state.update({k: ckpt[k] for k in state if k in ckpt})
    load_weights(model, ckpt, path)
    opt.load_state_dict(ckpt["optimizer"])
    if sched:
        sched.load_state_dict(ckpt["scheduler"])
    set_rng_states(ckpt["rng"])
    print(f"resuming {one_line(path)} at step {state['step']}")
    return state


# ---------------------------------------------------------------- the record
def seed_record(config: dict, data: dict, state: dict, final: tuple, device, path) -> dict:
    loss, acc, pred, seconds_predict = final
    print(
        f"{config['name']} seed {config['seed']}: {data['eval_split']} accuracy {100 * acc:.2f}% (final model), "
        f"{state['seconds_train'] / config['epochs']:.1f} s/epoch, {state['seconds_train']:.1f} s training"
    )
    pred = pred.cpu().numpy()
    return {
        "model": config["model"],
        "name": config["name"],
        "dataset": config["dataset"],
        "accuracy": acc,
        "loss": loss,
        "split": data["eval_split"],
        "n_train": len(data["train"][1]),
        "n_eval": len(pred),
        "seconds_train": state["seconds_train"],
        "seconds_eval_during_training": state["seconds_eval"],
        "seconds_per_epoch": state["seconds_train"] / config["epochs"],
        "seconds_predict": seconds_predict,
        "steps": state["step"],
        "seed": config["seed"],
        "device": str(device),
        "checkpoint": str(path),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "predictions": pred.tolist(),
        "per_class": per_class_scores(data["labels"], pred, data["classes"]),
        "history": state["history"],
        "config": config,
    }


def write_outputs(records: list[dict], data: dict, config: dict, timings: dict) -> None:
    """The figures first, the JSON last: its presence vouches for a finished run."""
    record = summarize_seeds(records)
    record.update(
        labels=data["labels"].tolist(),
        classes=data["classes"],
        versions=versions("torch", "torchvision", "numpy", "scikit-learn"),
    )
    full = record["split"] == "test" and not config["train_size"] and not config["test_size"]
    target = config["target"] if full else None  # goals hold for the full split only
    record["target"], record["target_met"] = target, None if target is None else record["accuracy"] >= target
    paths, started = run_paths(config), time.perf_counter()
    title = f"{config['name']} (seed {config['seed']}) on {config['dataset']}"
    plot_curves(records[0]["history"], paths["curves"], title)  # the figures show the first seed, as its record
    title = f"{config['name']}: {100 * records[0]['accuracy']:.2f}% on {record['n_eval']} {record['split']} images"
    plot_confusion(data["labels"], records[0]["predictions"], data["classes"], paths["confusion"], title)
    record["timings"] = {**timings, "figures": time.perf_counter() - started}
    write_json(paths["record"], record)
    if target is not None:
        verdict = "reached" if record["target_met"] else "NOT reached"
        print(f"target {100 * target:.2f}% {verdict} (final model {100 * record['accuracy']:.2f}%)")


def resume_file(config: dict, index: int):
    """The checkpoint a --resume continues: the run's progress, else its final checkpoint, else None."""
    final_path, progress_path = checkpoint_files(config, index)
    return next((p for p in (progress_path, final_path) if is_regular(p, "checkpoint")), None)


def resumed_config(config: dict) -> dict:
    """The checkpoint's settings (checked like flags) with this invocation's runtime ones."""
    path = resume_file(config, 0) or checkpoint_files(config, 0)[0]
    saved = read_checkpoint(path, need_training_state=True)["config"]
    if saved.get("model") != config["model"]:
        raise ProjectError(f"{path} holds no {config['model']} run; start afresh without --resume")
    try:
        check_config({**PAPER, **saved})
    except (KeyError, TypeError) as exc:
        raise ProjectError(
            f"{path}: its saved settings are incomplete ({exc}); start afresh without --resume"
        ) from None
    # --seeds given again may extend the run; left out, it is the checkpoint's, so no seed is dropped.
    seeds = max(config["seeds"], saved.get("seeds", 1))
    return {**saved, **{k: config[k] for k in RUNTIME if k in config}, "seeds": seeds}


# ---------------------------------------------------------------- settings
# Beyond these a typo (or a hostile checkpoint), not an experiment.
LIMITS = {"hidden_size": MAX_HIDDEN, "width": MAX_WIDTH, "epochs": 10000, "batch_size": 65536}


def distortion_kinds(text: str) -> str:
    """An argparse type: the --distort list, checked and in augment.KINDS order ("" for none)."""
    try:
        return ",".join(parse_kinds(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI. Settings a recipe may change default to None here, so that given ones can be told apart."""
    positive, non_negative = flags.positive, flags.non_negative
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "cnn"], default="cnn", help="network to train (default: cnn)")
    p.add_argument(
        "--recipe",
        choices=NETWORK_RECIPES,
        default="paper",
        help="; ".join(f"{r}: {RECIPE_HELP[r]}" for r in NETWORK_RECIPES).replace("%", "%%") + " (default: paper)",
    )
    r = p.add_argument_group("training settings (default: the recipe's; paper values shown)")
    r.add_argument("--epochs", type=positive(int), help="passes over the training set (paper: 20)")
    r.add_argument("--batch-size", type=positive(int), help="images per step (paper: 30)")
    r.add_argument("--lr", type=positive(float), help="learning rate, the peak one for onecycle (paper: 0.01)")
    r.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], help="(paper: sgd)")
    r.add_argument("--momentum", type=non_negative(float), help="SGD momentum (paper: 0)")
    r.add_argument("--weight-decay", type=non_negative(float), help="(paper: 0)")
    r.add_argument("--schedule", choices=["constant", "onecycle"], help="learning-rate schedule (paper: constant)")
    r.add_argument("--hidden-size", type=positive(int), help="hidden units (paper: 196)")
    r.add_argument(
        "--width", type=positive(int), help="cnn: channels of the first conv, twice that in the second (paper: 32)"
    )
    r.add_argument(
        "--stem",
        choices=STEMS,
        help="cnn: pool (3x3 conv, then 2x2 max-pool) or stride (one 4x4 conv with stride 2: less work) (paper: pool)",
    )
    r.add_argument("--dropout", type=non_negative(float), help="dropout probability, below 1 (paper: 0.5)")
    r.add_argument("--label-smoothing", type=non_negative(float), help="below 1 (paper: 0)")
    r.add_argument(
        "--augment",
        type=non_negative(float),
        help="random shift/rotate/scale strength, 0 = off; also scales the --distort kinds",
    )
    r.add_argument(
        "--distort",
        type=distortion_kinds,
        help="distortions besides shift/rotate/scale, applied when "
        f"--augment > 0: comma-separated from {', '.join(KINDS)}, or all (paper: none)",
    )
    r.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        help="bfloat16 autocast (paper: off; fast, best: on where the device has native bfloat16)",
    )
    r.add_argument("--eval-every", type=non_negative(int), help="test every N steps, 0: at the end (paper: 1000)")
    flags.add_data_flags(p)
    flags.add_run_flags(p)
    flags.add_device_flag(p)
    g = p.add_argument_group("logging and interruption")
    g.add_argument("--log-every", type=positive(int), default=20, help="record a train point every N steps (20)")
    g.add_argument("--print-every", type=positive(int), default=500, help="print a train line every N steps (500)")
    g.add_argument("--resume", action="store_true", help="continue this run from its checkpoint, with its settings")
    g.add_argument("--stop-after", type=positive(int), help="stop after N steps, saving its progress to resume from")
    return p


def make_config(argv=None, **overrides) -> dict:
    """The run's one config: the published settings, then the recipe's, then the flags given explicitly.
    experiment.py passes keywords instead of argv: the same defaults and the same checks."""
    parser = build_parser()
    args = parser.parse_args([] if argv is None and overrides else argv)
    if set(overrides) - set(vars(args)):
        raise ProjectError(f"unknown dl_main setting(s): {', '.join(sorted(set(overrides) - set(vars(args))))}")
    vars(args).update(overrides)
    explicit = flags.explicit_flags(parser, args)
    try:
        config = network_settings(args.model, args.recipe, args.dataset)
    except ValueError as exc:
        raise ProjectError(str(exc)) from None
    config.update({k: v for k, v in vars(args).items() if v is not None or k not in config})
    config["name"] = run_name(config, explicit)
    check_config(config)
    return {k: str(v) if hasattr(v, "as_posix") else v for k, v in config.items()}


def check_config(config: dict) -> None:
    """Limits that argparse types cannot say; also applied to a checkpoint's saved config before it is used."""
    flags.check_common(config)
    for key in ("dropout", "label_smoothing"):
        if not 0 <= config[key] < 1:
            raise ProjectError(f"--{key.replace('_', '-')} must be in [0, 1), got {config[key]}")
    if config["stem"] not in STEMS:  # a checkpoint's saved config; a flag is checked by argparse
        raise ProjectError(f"--stem must be one of {', '.join(STEMS)}, got {config['stem']!r}")
    for key, limit in LIMITS.items():
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise ProjectError(f"--{key.replace('_', '-')} must be a whole number from 1 to {limit}, got {value!r}")


def _main(argv=None) -> int:
    config = make_config(argv)
    with StopFlag(config["stop_after"]) as stop:  # from the start: a Ctrl-C during set-up also ends cleanly
        return run(config, stop)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    hard_exit(main())  # not sys.exit: the interpreter's teardown of torch took a second of a fast run
