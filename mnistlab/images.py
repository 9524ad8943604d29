"""Users' images in, MNIST-like 28x28 inputs out; and MNIST digits written out as ordinary photos (tests, benchmarks).

Any file Pillow opens, or its bytes, becomes grey levels in [0, 1] (16-bit, 32-bit and float images scaled by
their range, never clipped; transparent parts as white paper; EXIF orientation applied), then an MNIST-like
28x28 input. Every bad input, from a text file to a decompression bomb, a named pipe or a file too large, is a
one-line ProjectError that starts with the file's name.

What one image may cost is bounded before anything is decoded: a file is a regular file of at most
MAX_FILE_MB (checked before it is opened, and again on the opened file), and its header's size at most
MAX_SIDE pixels a side and MAX_PIXELS in all (after a JPEG's reduced decoding, see DRAFT_SIDE), checked
before its pixels are decoded. Memory grows with the pixels, not with the compressed bytes: a 111 KB PNG can
declare 88 million pixels.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from mnistlab.datasets import INK_THRESHOLD, SIDE
from mnistlab.errors import ProjectError

MAX_SIDE = 20_000  # pixels; a 200-megapixel camera sensor is 16320 wide. Pillow's pixel-count guard applies too.
MAX_PIXELS = 40_000_000  # pixels in all, from the header, before decoding: about 1 GB at the peak for a float image
MAX_FILE_MB = 10  # the largest image file read (and demo.py's default upload cap): read whole, so bounded
DRAFT_SIDE = 2048  # a JPEG larger than this both ways is decoded at 1/2, 1/4 or 1/8 scale, no side below it
FILE_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISFIFO: "a named pipe",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def source_name(source, name: str | None = None) -> str:
    """How an image is named in messages: on one line, whatever characters its file name has."""
    name = name or ("image" if isinstance(source, bytes | bytearray) else str(source))
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)


def read_image_file(path, name: str | None = None, max_bytes: int = MAX_FILE_MB << 20) -> bytes:
    """The one way a user's image file is read: a regular file (a pipe, device or folder is refused before it is
    opened, so nothing blocks) of at most ``max_bytes`` (refused before reading), read whole; ProjectError naming it."""
    name = source_name(path, name)
    try:
        _check_file(os.stat(path), name, max_bytes)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as file:
            _check_file(os.fstat(fd), name, max_bytes)  # it may have been swapped for a pipe since the stat
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise ProjectError(f"{name}: no such file") from None
    except OSError as exc:  # permission denied, a name too long (ENAMETOOLONG), a symlink loop, an I/O error
        reason = "file name too long" if exc.errno == errno.ENAMETOOLONG else exc.strerror or type(exc).__name__
        raise ProjectError(f"{name}: cannot be read: {reason[0].lower()}{reason[1:]}") from None
    if len(data) > max_bytes:  # it grew since the stat
        raise ProjectError(f"{name}: file is over the {max_bytes / (1 << 20):g} MB limit for an image")
    return data


def _check_file(info: os.stat_result, name: str, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((kind for test, kind in FILE_KINDS.items() if test(info.st_mode)), "not a file")
        raise ProjectError(f"{name}: not a regular file ({kind}); give an image file (PNG, JPEG...)")
    if info.st_size > max_bytes:
        raise ProjectError(
            f"{name}: file is {info.st_size / (1 << 20):,.1f} MB, over the {max_bytes / (1 << 20):g} MB limit "
            "for an image; scale it down or save it as JPEG"
        )
    if info.st_size == 0:
        raise ProjectError(f"{name}: empty file, not an image")


def read_grey(source, name: str | None = None) -> np.ndarray:
    """A path's or raw bytes' image as float32 grey levels in [0, 1] (transparent parts as white paper); a path is
    read by read_image_file, raw bytes (an upload) are bounded by their caller."""
    name = source_name(source, name)
    data = source if isinstance(source, bytes | bytearray) else read_image_file(source, name)
    if not data:
        raise ProjectError(f"{name}: empty file, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit at all: refused
            with Image.open(io.BytesIO(data)) as img:
                if max(img.size) > MAX_SIDE:
                    raise ProjectError(
                        f"{name}: image is {img.width}x{img.height} pixels, over the "
                        f"{MAX_SIDE}-pixel side limit; scale it down"
                    )
                img.draft(None, (DRAFT_SIDE, DRAFT_SIDE))  # JPEG: decode at a reduced scale; others: no change
                check_pixels(img, name)  # before any pixel is decoded
                return grey_levels(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ProjectError(too_large(name, exc)) from None
    except UnidentifiedImageError:
        raise ProjectError(f"{name}: not an image Pillow can read; use PNG or JPEG") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's ways of saying truncated or damaged
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "damaged or truncated image"
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise ProjectError(f"{name}: cannot be read: {reason} ({detail})") from None


def check_pixels(img: Image.Image, name: str) -> None:
    """Refuse an image whose header declares more than MAX_PIXELS: decoding it would cost memory by the pixel."""
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ProjectError(
            f"{name}: image is {width}x{height} pixels ({width * height / 1e6:,.0f} million), over the "
            f"{MAX_PIXELS / 1e6:g} million-pixel limit; scale it down"
        )


def too_large(name: str, exc: Exception) -> str:
    """Pillow's decompression-bomb refusal, in one line with the sizes."""
    limit = Image.MAX_IMAGE_PIXELS or 0
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found[1]) / 1e6:,.0f} million pixels" if found else "too many pixels"
    return (
        f"{name}: image has {size}, over the {limit / 1e6:.0f} million-pixel limit that guards against "
        f"decompression bombs; scale it down"
    )


def grey_levels(img: Image.Image) -> np.ndarray:
    """float32 grey in [0, 1] for any mode: 16-bit by 65535, 32-bit int and float by their own range."""
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / 65535
    if img.mode in ("I", "F"):  # in place: a 40-megapixel float image costs one copy, not five
        values = np.array(img, dtype=np.float32 if img.mode == "F" else np.float64)
        np.nan_to_num(values, copy=False, posinf=0, neginf=0)
        low, high = values.min(), values.max()
        values -= low
        values /= high - low if high > low else 1.0  # a flat image stays flat (and is then blank)
        return values.astype(np.float32, copy=False)
    if "A" in img.mode or "a" in img.mode or "transparency" in img.info:
        paper = Image.new("RGBA", img.size, "white")
        img = Image.alpha_composite(paper, img.convert("RGBA"))
    if img.mode not in ("1", "L"):
        img = img.convert("RGB")  # CMYK, YCbCr, P, ... through RGB to Pillow's luma
    return np.asarray(img.convert("L"), dtype=np.float32) / 255


def to_mnist(grey: np.ndarray) -> np.ndarray:
    """A grey image as a 28x28 float array in [0, 1] laid out the way MNIST was made: light ink on a dark background
    (dark-on-light paper is inverted), cropped to the ink, scaled to fit 20x20 keeping its aspect ratio, and placed
    with its centre of mass in the middle."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: MNIST is light on dark
        grey, border = 1.0 - grey, 1.0 - border
    ink = np.clip(grey - np.median(border), 0.0, None)  # remove the paper's grey level
    if ink.max() < 0.05:
        raise ValueError("no ink found: the image is blank or has no contrast")
    ink /= ink.max()
    inked = ink > INK_THRESHOLD
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))  # not every inked pixel's
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    scale = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    small = np.asarray(small, dtype=np.float32) / 255.0

    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    top, left = (SIDE - small.shape[0]) // 2, (SIDE - small.shape[1]) // 2
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    cy, cx = ndimage.center_of_mass(canvas)
    shifted = ndimage.shift(canvas, (round(SIDE / 2 - cy), round(SIDE / 2 - cx)), order=0, mode="constant")
    return np.clip(shifted, 0.0, 1.0)


def read_digit(source, name: str | None = None) -> np.ndarray:
    """A path's or bytes' image as a (28, 28) float32 model input; ProjectError naming it if it cannot be."""
    return read_as(to_mnist, source, name)


def read_as(convert, source, name: str | None = None, errors=ValueError):
    """``convert`` of a path's or bytes' grey image (read_grey); its errors as one ProjectError naming the image."""
    name = source_name(source, name)
    grey = read_grey(source, name)
    try:
        return convert(grey)
    except errors as exc:
        raise ProjectError(f"{name}: {exc}") from None


def write_as_photo(digit: np.ndarray, path: Path, rng: np.random.Generator, colour: bool = False) -> None:
    """Save an MNIST digit as an ordinary image file: enlarged, dark on light, shifted on a bigger page."""
    side = int(rng.integers(60, 240))
    ink = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BILINEAR)
    page = Image.new("L", (side + int(rng.integers(0, 150)), side + int(rng.integers(0, 150))), 235)
    offset = (int(rng.integers(0, page.width - side + 1)), int(rng.integers(0, page.height - side + 1)))
    page.paste(ink.point(lambda v: min(v, 235)), offset)
    if colour:
        page = Image.merge("RGB", (page, page.point(lambda v: v * 0.95), page.point(lambda v: v * 0.8)))
    page.save(path, quality=92) if path.suffix == ".jpg" else page.save(path)


def write_photos(x: np.ndarray, folder: Path, seed: int = 0) -> list[Path]:
    """Every digit of ``x`` (uint8, (N, 28, 28)) as digit<i>.png or .jpg in ``folder``."""
    rng = np.random.default_rng(seed)
    paths = [folder / f"digit{i:03d}.{'jpg' if i % 2 else 'png'}" for i in range(len(x))]
    for i, (digit, path) in enumerate(zip(x, paths, strict=True)):
        write_as_photo(digit, path, rng, colour=i % 3 == 0)
    return paths
