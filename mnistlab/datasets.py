"""What each known dataset is: image size, class names and the checksums of its original files."""

from __future__ import annotations

import hashlib
from pathlib import Path

SIDE = 28  # images are SIDE x SIDE pixels
N_CLASSES = 10

# Of the brightest ink: fainter pixels (paper texture, JPEG noise) do not set a digit's crop box. Shared by
# images.to_mnist (users' images) and augment.refit (training batches), which must lay digits out alike.
INK_THRESHOLD = 0.25

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# Known datasets: torchvision's class (for --download), class names, and the SHA-256 of each uncompressed IDX
# file (the content, whatever the compression), so a known dataset is verified from whichever folder it comes.
DATASETS = {
    "mnist": {
        "torchvision": "MNIST",
        "classes": [str(i) for i in range(10)],
        "sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    },
    "fashion-mnist": {
        "torchvision": "FashionMNIST",
        "classes": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
    "kmnist": {"torchvision": "KMNIST", "classes": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]},
}

CACHE_KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def known_classes(dataset: str) -> list[str]:
    return DATASETS.get(dataset, {}).get("classes") or [str(i) for i in range(N_CLASSES)]
