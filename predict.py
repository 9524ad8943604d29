"""Classify your own digit images with a trained network.

    python predict.py my_seven.png photo_of_a_3.jpg                 # uses checkpoints/cnn.pt
    python predict.py --model checkpoints/mlp.pt --top 3 digits/*.png

Each image (PNG/JPEG/..., any size, colour or grey, dark ink on light paper or the
reverse) is turned into an MNIST-like 28x28 input the way MNIST itself was made: grey,
light ink on a dark background, cropped to the ink, scaled to fit 20x20 keeping its
aspect ratio, then placed in 28x28 with its centre of mass in the middle.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from data_prep import N_CLASSES
from utils import ProjectError, run_cli

INK_THRESHOLD = 0.25  # of the brightest ink: fainter pixels (paper texture, JPEG noise) do not set the crop box


def load_grey(path: Path) -> np.ndarray:
    """Read any image as grey levels in [0, 1], with transparent parts shown as white paper."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA", "P"):
                rgba = img.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, "white")
                img = Image.alpha_composite(paper, rgba)
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise ProjectError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ProjectError(f"{path}: not an image that can be read ({type(exc).__name__}); use PNG or JPEG") from None


def to_mnist(grey: np.ndarray) -> np.ndarray:
    """Turn a grey image into a 28x28 float array in [0, 1] laid out like an MNIST digit."""
    from PIL import Image
    from scipy import ndimage

    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: MNIST is light on dark
        grey, border = 1.0 - grey, 1.0 - border
    ink = np.clip(grey - np.median(border), 0.0, None)  # remove the paper's grey level
    if ink.max() < 0.05:
        raise ValueError("no ink found: the image is blank or has no contrast")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]

    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    small = np.asarray(small, dtype=np.float32) / 255.0

    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    cy, cx = ndimage.center_of_mass(canvas)
    shifted = ndimage.shift(canvas, (round(14 - cy), round(14 - cx)), order=0, mode="constant")
    return np.clip(shifted, 0.0, 1.0)


def classify(model, images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class probabilities for a batch of 28x28 images in [0, 1]."""
    import torch

    x = torch.as_tensor(images, dtype=torch.float32, device=device).unsqueeze(1)
    with torch.inference_mode():
        return torch.softmax(model(x), dim=1).cpu().numpy()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", type=Path, help="image files to classify")
    p.add_argument(
        "--model",
        type=Path,
        default=Path("checkpoints") / "cnn.pt",
        help="checkpoint from dl_main.py (default: checkpoints/cnn.pt, where dl_main.py saves it)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="cpu", help="(default: cpu)")
    p.add_argument("--top", type=int, default=1, help="how many of the most likely classes to print (default: 1)")
    p.add_argument("--save-inputs", type=Path, help="folder to save each 28x28 model input as PNG, to inspect")
    args = p.parse_args(argv)
    if args.top < 1:
        p.error("--top must be at least 1")
    return args


def _main(argv=None) -> int:
    args = parse_args(argv)
    from checkpoint import load_model  # torch is imported only once the arguments are known to be fine

    model, config = load_model(args.model, args.device)
    classes = config.get("classes") or [str(i) for i in range(N_CLASSES)]
    inputs, names, failed = [], [], 0
    for path in args.images:
        try:
            inputs.append(to_mnist(load_grey(path)))
            names.append(path)
        except (ProjectError, ValueError) as exc:
            print(
                f"predict.py: error: {exc}" if isinstance(exc, ProjectError) else f"predict.py: error: {path}: {exc}",
                file=sys.stderr,
            )
            failed += 1
    if inputs:
        probs = classify(model, np.stack(inputs), next(model.parameters()).device)  # as resolved by load_model
        for path, p, img in zip(names, probs, inputs, strict=True):
            best = np.argsort(p)[::-1][: args.top]
            print(f"{path}: " + ", ".join(f"{classes[k]} ({100 * p[k]:.1f}%)" for k in best))
            if args.save_inputs:
                save_input(img, args.save_inputs / f"{path.stem}_28x28.png")
    return 1 if failed else 0


def save_input(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    from utils import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray((img * 255).astype(np.uint8)).save(tmp, format="PNG")


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
