"""The two published networks; the recipes of dl_main.py train these same layers (the fast one narrower, with a
strided first convolution: CNN's ``stem``).

Every model takes float images in [0, 1] shaped (N, 1, 28, 28) and returns logits (N, classes);
softmax belongs to the loss (cross-entropy) in training and to the caller at prediction time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Imports only torch: the package (mnistlab/checkpoints.py) rebuilds saved networks from here.
SIDE, N_CLASSES = 28, 10  # MNIST-format images: 28x28 grey, ten classes

STEMS = ("pool", "stride")  # how the CNN's first block halves the image (see CNN)


class MLP(nn.Module):
    """Published one-hidden-layer network: 784 -> hidden -> classes, dropout before the ReLU as in the original."""

    def __init__(self, hidden_size: int = 196, dropout: float = 0.5, n_classes: int = N_CLASSES):
        super().__init__()
        self.fc1 = nn.Linear(SIDE * SIDE, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (N, 784)
        x = F.relu(self.drop(self.fc1(x)))  # (N, hidden)
        return self.fc2(x)  # (N, classes)


def conv_block(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """conv -> batch norm -> ReLU -> 2x2 max-pool.

    The pool runs before the ReLU: max and ReLU commute (ReLU is monotonic), so the output is identical,
    and the ReLU then touches a quarter of the values; measured 10% faster per step on the CPU.
    """
    return F.relu(F.max_pool2d(bn(conv(x)), 2))


class CNN(nn.Module):
    """Published CNN: two conv/batch-norm/ReLU/max-pool blocks, then 3136 -> hidden -> classes.

    ``width`` is the first block's channels (the second has twice as many): 32 as published. ``stem`` is how the
    first block halves the image: "pool" as published (3x3 conv at 28x28, then a 2x2 max-pool), or "stride" (one
    4x4 conv with stride 2, no pool): a quarter of the first block's positions, so a third less work per step at
    width 16 on the CPU, for the fast recipe. Both give (N, width, 14, 14), so the rest is the same.
    """

    def __init__(
        self,
        hidden_size: int = 196,
        dropout: float = 0.5,
        n_classes: int = N_CLASSES,
        width: int = 32,
        stem: str = "pool",
    ):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose from {', '.join(STEMS)}")
        self.stem = stem
        first = {"kernel_size": 4, "stride": 2, "padding": 1} if stem == "stride" else {"kernel_size": 3, "padding": 1}
        self.conv1 = nn.Conv2d(1, width, **first)
        self.bn1 = nn.BatchNorm2d(width)
        # 2x2 kernel with padding 1 turns 14x14 into 15x15; the pool floors that to 7x7, as published.
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size=2, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem == "pool":
            x = conv_block(x, self.conv1, self.bn1)  # (N, width, 14, 14)
        else:
            x = F.relu(self.bn1(self.conv1(x)))  # (N, width, 14, 14)
        x = conv_block(x, self.conv2, self.bn2)  # (N, 2 width, 7, 7)
        x = F.relu(self.drop(self.fc1(x.flatten(1))))  # (N, hidden)
        return self.fc2(x)  # (N, classes)


MODELS = {"mlp": MLP, "cnn": CNN}
MAX_HIDDEN, MAX_WIDTH = 65536, 1024  # larger layers are a typo or a hostile file, not a network of this repo


def build_model(
    name: str,
    hidden_size: int = 196,
    dropout: float = 0.5,
    n_classes: int = N_CLASSES,
    width: int = 32,
    stem: str = "pool",
) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    shape = {"width": width, "stem": stem} if name == "cnn" else {}  # the MLP has no convolutions
    return MODELS[name](hidden_size=hidden_size, dropout=dropout, n_classes=n_classes, **shape)


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
