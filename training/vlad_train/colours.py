"""Colour masks of the simulator's objects in camera images (training-only supervision).

The bundled tasks colour their balls, blocks and goal circles pure red, green, blue or yellow
(sim/tasks.c) on a grey table under a grey arm, so a pixel's colour class is a threshold
away. vlad_train uses the masks for the auxiliary binding loss: per image patch, is the
instruction's (first-named) colour there?
"""
from __future__ import annotations

import numpy as np

COLOURS = ("red", "green", "blue", "yellow")


def colour_masks(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> bool [..., 4, H, W]: red, green, blue, yellow pixels."""
    x = images.astype(np.int16)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    red = (r > g + 60) & (r > b + 60) & (g < 110)
    yellow = (r > b + 60) & (g > b + 60) & (np.abs(r - g) < 70)
    green = (g > r + 50) & (g > b + 50)
    blue = (b > r + 50) & (b > g + 40)
    return np.stack([red, green, blue, yellow], axis=-3)


def first_colour(prompt: bytes) -> int:
    """Index into COLOURS of the first colour word of an instruction, -1 if none."""
    text = prompt.decode(errors="replace").lower()
    best, where = -1, len(text) + 1
    for i, c in enumerate(COLOURS):
        k = text.find(c)
        if 0 <= k < where:
            best, where = i, k
    return best


def patch_fraction(mask: np.ndarray, patch: int) -> np.ndarray:
    """bool [..., H, W] -> float32 [..., (H/patch)*(W/patch)]: the fraction of each patch's
    pixels set, patches in row-major order (MODEL.md's patch order)."""
    *lead, H, W = mask.shape
    m = mask.reshape(*lead, H // patch, patch, W // patch, patch).astype(np.float32)
    return m.mean(axis=(-1, -3)).reshape(*lead, (H // patch) * (W // patch))
