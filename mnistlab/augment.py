"""Random distortions of a training batch on its own device, so that a network sees handwriting unlike MNIST's.

Every distortion takes float images (N, 1, H, W) in [0, 1] (light ink on black, as MNIST) and returns the same
shape, dtype and device; each sample gets its own random parameters, drawn with batched torch ops (no loop
over images). Random numbers come from ``generator`` when one is given (it must live on the batch's device),
otherwise from torch's global generator, the one dl_main.py seeds and its checkpoints save: a run resumed from a
checkpoint then replays the same distortions.

Kinds (``distort(..., kinds=...)``), each on top of the random affine map that is always applied:

- ``shear``: slant and anisotropic scale (a narrow or a wide writer), on top of rotation/scale/shift;
- ``elastic``: a smooth random displacement field (noise on a 4x4 grid, upsampled), the wobble of a hand;
- ``width``: thicker (grey dilation) or thinner (grey erosion) strokes, partly blended per sample;
- ``blocky``: down-sampled to 8-14 px and scaled back up (nearest or bilinear): an upscaled low-resolution scan;
- ``blur``: gaussian blur of a per-sample width;
- ``gamma``: a per-sample gamma on the ink, softer or harder stroke edges;
- ``flip``: a left-right mirror image of half the batch: for clothes (a shoe pointing left or right is the same
  class), not for digits (a mirrored 2 is not a 2); ``--dataset fashion-mnist``'s best recipe uses it;
- ``refit``: last, what mnistlab.images.to_mnist does to a user's image: the ink's box scaled to fit 20x20
  (keeping its aspect) and the centre of mass moved to the middle, so no distorted digit has a size or place that
  to_mnist would never produce. It did not help on validation (docs/handwriting_tuning.md), so ``--recipe best``
  leaves it out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistlab.datasets import INK_THRESHOLD

KINDS = ("flip", "shear", "elastic", "width", "blocky", "blur", "gamma", "refit")
# How often each kind is applied (fraction of the batch): the rest stays as MNIST drew it, which keeps the
# MNIST accuracy up; strength scales the size of each change, not how often it happens.
P_WIDTH, P_BLOCKY, P_BLUR, P_GAMMA = 0.6, 0.3, 0.3, 0.5


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """ "elastic,width" -> ("elastic", "width"); "all" -> every kind; "" or None -> none. Unknown names raise."""
    names = [k.strip() for k in (text or "").split(",") if k.strip()]
    if names == ["all"]:
        return KINDS
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown distortion {', '.join(unknown)}; choose from all, {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in names)


def _uniform(shape, x, generator, low=-1.0, high=1.0):
    """U(low, high) of ``shape`` on x's device from ``generator`` (None: torch's global one)."""
    return torch.rand(shape, device=x.device, generator=generator) * (high - low) + low


def affine_grid(x, strength: float, shear: bool, generator=None):
    """Sampling grid (N, H, W, 2) of a random affine map per sample: rotation up to 10 degrees, scale 10% and shift
    2 px, with ``shear`` also slant up to 0.3 and x/y aspect up to x1.35 either way (all times strength). Keep the
    order of the draws: with ``shear`` off, a seed gives the batches it always gave."""
    n = len(x)
    angle = _uniform(n, x, generator) * math.radians(10) * strength
    scale = 1 + _uniform(n, x, generator) * 0.1 * strength
    shift = _uniform((n, 2), x, generator) * (2 / 14) * strength  # grid units: 14 px = 1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    rows = [torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)]  # (N, 2) each: output -> input coordinates
    linear = torch.stack(rows, 1)  # (N, 2, 2)
    if shear:
        slant = _uniform(n, x, generator) * 0.3 * strength
        aspect = torch.exp(_uniform(n, x, generator) * math.log(1.35) * strength)
        zero, one = torch.zeros_like(slant), torch.ones_like(slant)
        # x_in = (x_out + slant * y_out) / aspect: a wider (aspect > 1) digit, leaning right for slant < 0.
        warp = torch.stack([torch.stack([1 / aspect, slant / aspect], 1), torch.stack([zero, one], 1)], 1)
        linear = linear @ warp
    theta = torch.cat([linear, shift.unsqueeze(2)], 2)  # (N, 2, 3)
    return F.affine_grid(theta, list(x.shape), align_corners=False)


def elastic_field(x, strength: float, generator=None, cells: int = 4, pixels: float = 1.5):
    """A smooth displacement (N, H, W, 2) in grid units: uniform noise on a cells x cells grid, upsampled
    bicubically; at most about ``pixels`` px (times strength) at any point."""
    n, _, h, w = x.shape
    noise = _uniform((n, 2, cells, cells), x, generator) * (pixels * 2 / h) * strength
    field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True)  # (N, 2, H, W)
    return field.permute(0, 2, 3, 1)


def dilate(x):
    """Grey dilation by a 3x3 square: every stroke about 2 px thicker. (N, 1, H, W) -> same."""
    return F.max_pool2d(x, 3, stride=1, padding=1)


def erode(x):
    """Grey erosion by a 3x3 square (a min-pool): every stroke about 2 px thinner. (N, 1, H, W) -> same."""
    return -F.max_pool2d(-x, 3, stride=1, padding=1)


def stroke_width(x, strength: float, generator=None):
    """Thicker or thinner strokes on P_WIDTH of the batch (thicker twice as often): dilation or erosion,
    blended in by a random amount, the full change for the larger draws at strength 1. 2 px either way is a
    lot on a 28 px digit whose strokes are 2-4 px wide, hence the partial blend."""
    n = len(x)
    choice = _uniform(n, x, generator, 0.0, 1.0).view(n, 1, 1, 1)  # < P_WIDTH/3: thinner; < P_WIDTH: thicker
    amount = (_uniform(n, x, generator, 0.0, 1.0) * 1.5 * strength).clamp(max=1.0).view(n, 1, 1, 1)
    target = torch.where(choice < P_WIDTH / 3, erode(x), dilate(x))
    return x + amount * (choice < P_WIDTH) * (target - x)


def blocky(x, strength: float, generator=None, sizes=(8, 9, 10, 11, 12, 13, 14)):
    """An upscaled low-resolution scan: area-averaged down to s x s (s from ``sizes``), back up by nearest or
    bilinear interpolation; P_BLOCKY x strength of the batch. One batched op per size, not per image."""
    n, _, h, w = x.shape
    apply = _uniform(n, x, generator, 0.0, 1.0) < min(1.0, P_BLOCKY * strength)
    size_index = (_uniform(n, x, generator, 0.0, 1.0) * len(sizes)).long().clamp(max=len(sizes) - 1)
    nearest = _uniform(n, x, generator, 0.0, 1.0) < 0.5
    out = x.clone()
    for i, s in enumerate(sizes):
        for mode, which, corners in (("nearest", nearest, None), ("bilinear", ~nearest, False)):
            idx = torch.nonzero(apply & (size_index == i) & which).flatten()
            if len(idx):
                small = F.interpolate(x[idx], size=(s, s), mode="area")  # (k, 1, s, s)
                out[idx] = F.interpolate(small, size=(h, w), mode=mode, align_corners=corners)
    return out


def blur(x, strength: float, generator=None, radius: int = 3):
    """Gaussian blur with a per-sample sigma up to 1.2 px (times strength) on P_BLUR of the batch: separable
    depthwise convolutions, one kernel per sample (the batch folded into channels)."""
    n, _, h, w = x.shape
    apply = _uniform(n, x, generator, 0.0, 1.0) < P_BLUR
    sigma = _uniform(n, x, generator, 0.3, 1.2) * strength * apply  # 0: the identity kernel below
    d = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)  # (K,)
    k = torch.exp(-(d**2) / (2 * sigma.clamp(min=1e-3).view(n, 1) ** 2))  # (N, K)
    k = k / k.sum(1, keepdim=True)
    y = x.reshape(1, n, h, w)  # each sample a channel: groups=n convolves each with its own kernel
    y = F.conv2d(y, k.view(n, 1, 1, -1), padding=(0, radius), groups=n)
    y = F.conv2d(y, k.view(n, 1, -1, 1), padding=(radius, 0), groups=n)
    return y.reshape(n, 1, h, w)


def gamma(x, strength: float, generator=None):
    """ink ** g, g in [1/1.8, 1.8] (log-uniform at strength 1) on P_GAMMA of the batch: g < 1 fattens the soft
    edge of a stroke, g > 1 sharpens it."""
    n = len(x)
    g = _uniform(n, x, generator) * math.log(1.8) * strength * (_uniform(n, x, generator, 0.0, 1.0) < P_GAMMA)
    return x.clamp(min=0).pow(g.exp().view(n, 1, 1, 1))


def ink_box(x, threshold: float):
    """Per sample (top, bottom, left, right) pixel indices (N,) of the ink above threshold x its peak, and a
    has-ink mask (N,); x is (N, 1, H, W)."""
    n, _, h, w = x.shape
    ink = x[:, 0] > threshold * x.amax(dim=(1, 2, 3)).view(n, 1, 1)  # (N, H, W)
    rows, cols = ink.any(2), ink.any(1)  # (N, H), (N, W)
    iy, ix = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    top, bottom = torch.where(rows, iy, h).amin(1), torch.where(rows, iy, -1).amax(1)
    left, right = torch.where(cols, ix, w).amin(1), torch.where(cols, ix, -1).amax(1)
    return top, bottom, left, right, rows.any(1)


def refit(x, box: int = 20):
    """As images.to_mnist: scale each sample so that its ink's box fits box x box keeping the aspect, and
    put its centre of mass at pixel (14, 14) of 28 (the middle, as scaled). One affine resampling.
    (N, 1, H, W) -> (N, 1, H, W); a sample without ink is left as it is."""
    n, _, h, w = x.shape
    top, bottom, left, right, has_ink = ink_box(x, INK_THRESHOLD)
    extent = torch.maximum(bottom - top, right - left).clamp(min=0).float() + 1
    scale = torch.where(has_ink, box / extent, 1.0)  # output px per input px
    mass = x[:, 0].sum((1, 2)).clamp(min=1e-6)  # (N,)
    iy, ix = torch.arange(h, device=x.device, dtype=x.dtype), torch.arange(w, device=x.device, dtype=x.dtype)
    cy, cx = (x[:, 0].sum(2) * iy).sum(1) / mass, (x[:, 0].sum(1) * ix).sum(1) / mass  # (N,) pixel indices
    cy, cx = torch.where(has_ink, cy, h / 2), torch.where(has_ink, cx, w / 2)
    # Output pixel i reads input pixel c + (i - size / 2) / scale. In grid units u = (2 i + 1) / size - 1 this is
    # u_in = u_out / scale + (2 c + 1) / size - 1 - 1 / (size * scale).
    bx = (2 * cx + 1) / w - 1 - 1 / (w * scale)
    by = (2 * cy + 1) / h - 1 - 1 / (h * scale)
    zero = torch.zeros_like(scale)
    theta = torch.stack([torch.stack([1 / scale, zero, bx], 1), torch.stack([zero, 1 / scale, by], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def distort(x, strength: float = 1.0, kinds=(), generator=None):
    """(N, 1, H, W) in [0, 1] -> (N, 1, H, W) in [0, 1]: a random affine map (always), then ``kinds``.

    Geometry first (affine and elastic share one resampling), then stroke width, blockiness, blur and
    gamma, then the refit to the 20x20 box; finally each sample's brightest ink is brought back to 1, as
    images.to_mnist does for users' images. With ``kinds`` empty this is the plain affine augmentation
    that the best recipe was chosen with (same draws, same batches).
    """
    kinds = parse_kinds(kinds) if isinstance(kinds, str) else tuple(kinds)
    if not strength:
        return x
    if "flip" in kinds:
        mirror = _uniform(len(x), x, generator, 0.0, 1.0).view(-1, 1, 1, 1) < 0.5
        x = torch.where(mirror, x.flip(-1), x)
    grid = affine_grid(x, strength, "shear" in kinds, generator)  # (N, H, W, 2)
    if "elastic" in kinds:
        grid = grid + elastic_field(x, strength, generator)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if not set(kinds) - {"flip", "shear", "elastic"}:
        return x  # geometry only: no renormalisation, as before
    steps = {"width": stroke_width, "blocky": blocky, "blur": blur, "gamma": gamma}
    for kind, step in steps.items():
        if kind in kinds:
            x = step(x, strength, generator)
    if "refit" in kinds:
        x = refit(x)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    return (x / peak.clamp(min=0.2)).clamp(0.0, 1.0)  # an almost empty image is not blown up into noise
