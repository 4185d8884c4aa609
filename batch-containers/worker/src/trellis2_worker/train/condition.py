"""The image condition of one training object (spec data §9.3): a random view, cropped square around its alpha
bbox, LANCZOS-resized and premultiplied on black."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def prepare_view(image: Image.Image, size: int) -> torch.Tensor:
    """[3, size, size] RGB in [0, 1] premultiplied on black (not requantised), cropped to the tight square around the pixels with alpha ≠ 0 (no margin, no jitter;
    regions outside the picture come out transparent black)."""
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    ys, xs = np.nonzero(alpha)
    if len(xs):
        xmin, xmax, ymin, ymax = xs.min(), xs.max(), ys.min(), ys.max()
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        hs = max(max(xmax - xmin, ymax - ymin) / 2, 0.5)  # a one-pixel object still gets a non-empty crop
        rgba = rgba.crop((int(cx - hs), int(cy - hs), int(cx + hs), int(cy + hs)))
    rgba = rgba.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(rgba).astype(np.float32) / 255.0
    return torch.from_numpy(arr[..., :3] * arr[..., 3:4]).permute(2, 0, 1).contiguous()
