"""Networks suite: the CNN epoch at the published batch size, this repo's loop against the tutorial loop,
the published settings' seconds per epoch, and the fast recipe's wall time, process start to exit.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataset import REPO

BATCH, STEPS_PER_EPOCH, TIMED = 30, 2000, 400  # the published epoch: 60000 images in batches of 30
ROUNDS = 3


def tutorial_epoch(raw_dir: Path, channels_last: bool = False, train: bool = True) -> float:
    """Seconds per epoch of the common tutorial loop: torchvision's MNIST with per-sample ToTensor through a
    DataLoader, plain SGD; TIMED batches after a warm-up, scaled to the epoch. train=False: the data alone."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import MNIST

    from Network import CNN

    class IDXFolder(MNIST):  # torchvision's MNIST dataset, reading the IDX files data_prep.py staged in raw_dir
        @property
        def raw_folder(self) -> str:
            return str(raw_dir)

    def idx_dataset(raw_dir, train, transform):
        return IDXFolder(root=str(raw_dir), train=train, transform=transform, download=False)

    torch.manual_seed(0)
    loader = DataLoader(idx_dataset(raw_dir, train=True, transform=transforms.ToTensor()), BATCH, shuffle=True)
    model = CNN().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    start = None
    for i, (x, y) in enumerate(loader):
        if i == 10:
            start = time.perf_counter()
        if i == 10 + TIMED:
            break
        if train:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return (time.perf_counter() - start) * STEPS_PER_EPOCH / TIMED


def dl_main(tmp: Path, args, *flags) -> tuple[dict, float]:
    """Run dl_main.py in a fresh process; return its results record and the process wall time."""
    out = ["--results-dir", tmp, "--plots-dir", tmp, "--checkpoint-dir", tmp, "--data-dir", args.data_dir]
    cmd = [sys.executable, str(REPO / "dl_main.py"), *map(str, flags), *map(str, out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    model = flags[flags.index("--model") + 1]
    return json.loads((tmp / f"{model}.json").read_text()), wall


def loop_epoch(tmp: Path, args, amp: str) -> float:
    """Seconds of one whole epoch of dl_main.py's own loop at the published settings, its first steps included
    (the tutorial's warm-up batches are not timed), the final test evaluation left out."""
    rec, _ = dl_main(tmp, args, "--model", "cnn", "--epochs", 1, "--eval-every", 0, amp)
    return rec["seconds_train"] - rec["seconds_eval_during_training"]


def run(args) -> list[dict]:
    from dataset import load_split

    load_split("train", data_dir=args.data_dir)  # makes sure the raw IDX files exist
    raw = Path(args.data_dir) / "mnist" / "raw"
    tutorial = "cnn epoch, batch 30: tutorial loop (DataLoader + ToTensor)"
    scaled = f"{TIMED} batches of {BATCH} timed, scaled to the {STEPS_PER_EPOCH}-batch epoch"
    # The loops take turns, ROUNDS times, and each row is the median of its rounds: this machine's speed drifts
    # by 10-20% over minutes, which a single back-to-back pair would book as a speed-up or a slow-down.
    times = {"tutorial": [], "--no-amp": [], "--amp": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ROUNDS):
            times["tutorial"].append(tutorial_epoch(raw))
            for amp in ("--no-amp", "--amp"):
                times[amp].append(loop_epoch(Path(tmp), args, amp))
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        {"name": tutorial, "seconds": median["tutorial"], "note": f"median of {ROUNDS} rounds; {scaled}; fp32"},
        {"name": "tutorial loop: its data pipeline alone", "seconds": tutorial_epoch(raw, train=False)},
        {"name": "tutorial loop, channels-last model", "seconds": tutorial_epoch(raw, True), "baseline": tutorial},
    ]
    for amp, precision in (("--no-amp", "fp32"), ("--amp", "bfloat16 autocast")):
        ratios = [t / o for t, o in zip(times["tutorial"], times[amp], strict=True)]
        rounds = "/".join(f"{r:.2f}" for r in ratios)
        rows.append(
            {
                "name": f"cnn epoch, batch 30: dl_main.py loop ({precision})",
                "seconds": median[amp],
                "baseline": tutorial,
                "speedup": statistics.median(ratios),  # of each round's pair, not of the two medians
                "note": f"median of {ROUNDS} rounds, speed-up per round {rounds}; a whole epoch, same model, "
                "batch, optimizer; goal >= 3x",
            }
        )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for model in ("mlp", "cnn"):
            rec, wall = dl_main(tmp, args, "--model", model, "--epochs", 1)
            rows.append(
                {
                    "name": f"{model} paper settings: seconds per epoch",
                    "accuracy": rec["test_accuracy"],
                    "seconds": rec["seconds_per_epoch"],
                    "note": f"1 of 20 epochs, incl. the 2 published test evaluations; process {wall:.1f} s",
                }
            )
        rec, wall = dl_main(tmp, args, "--model", "cnn", "--recipe", "fast")
        rows.append(
            {
                "name": "cnn fast recipe: process wall time",
                "accuracy": rec["test_accuracy"],
                "seconds": wall,
                "note": f"goal >= 99.0% in <= 20 s, process start to exit; training {rec['seconds_train']:.1f} s",
            }
        )
    return rows
