"""The peer that `bench.py --suite dl` times this repo against: the common tutorial recipe, pytorch/examples
mnist/main.py (its network, Adadelta lr 1.0 with StepLR gamma 0.7, batch 64, torchvision's MNIST dataset
through a DataLoader with per-sample ToTensor and Normalize), trained until its test accuracy, checked after
every epoch as the example does, reaches the target.

    python benchmarks/tutorial.py --raw-dir data/mnist/raw --target 0.99

Prints one JSON line: the epoch that reached the target, its accuracy, and the seconds from process start
(interpreter and imports included, as for dl_main.py) to that moment. Run in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


class Net(nn.Module):  # pytorch/examples mnist/main.py, unchanged
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


class RawMNIST(datasets.MNIST):
    """torchvision's MNIST dataset reading the IDX files that data_prep.py staged (no download here)."""

    def __init__(self, raw_dir: Path, **kwargs):
        self._raw = str(raw_dir)
        super().__init__(root=str(raw_dir), download=False, **kwargs)

    @property
    def raw_folder(self) -> str:
        return self._raw


def accuracy(model, loader) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(loader.dataset)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-dir", type=Path, required=True, help="folder with the four uncompressed IDX files")
    p.add_argument("--target", type=float, default=0.99, help="test accuracy to reach (default: 0.99)")
    p.add_argument("--max-epochs", type=int, default=14, help="the example's default epoch count")
    p.add_argument("--seed", type=int, default=1, help="the example's default seed")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = DataLoader(RawMNIST(args.raw_dir, train=True, transform=transform), batch_size=64, shuffle=True)
    test = DataLoader(RawMNIST(args.raw_dir, train=False, transform=transform), batch_size=1000)
    model = Net()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    acc, epoch = 0.0, 0
    while epoch < args.max_epochs and acc < args.target:
        epoch += 1
        model.train()
        for x, y in train:
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
        sched.step()
        acc = accuracy(model, test)
    print(json.dumps({"epoch": epoch, "accuracy": acc, "reached": acc >= args.target, "clock": time.time()}))


if __name__ == "__main__":
    main()
