"""The image condition of a training object (docs/training.md#image-condition): a random view, cropped square around
its alpha bbox, LANCZOS-resized and premultiplied on black; then its DINOv3 features (`Conditioner`, cached)."""

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


class Conditioner:
    """DINOv3 features of prepared views (frozen, no grad), read from the dataset on demand and kept up to
    `cache_bytes`: a run draws the same few views of each object many times. Kept in the dtype the denoiser's
    `to_kv` consumes them in (bf16 under CUDA autocast, fp32 on CPU), so caching changes no number."""

    def __init__(self, base, ds, image_size: int, device: torch.device, cache_bytes: int = 0,
                 dtype: torch.dtype = torch.float32):
        self.encoder = base.image_conditioner(device=str(device), image_size=image_size)
        self.ds, self.size, self.dtype = ds, image_size, dtype
        self.cache: dict[tuple[str, int], torch.Tensor] = {}
        self.cache_bytes, self.cached_bytes = cache_bytes, 0

    @torch.no_grad()
    def __call__(self, objs: list, views: list[int]) -> torch.Tensor:
        """Features of view `views[i]` of `objs[i]` (TrainObjects), stacked."""
        keys = [(o.sha256, v) for o, v in zip(objs, views)]
        missing = [k for k in dict.fromkeys(keys) if k not in self.cache]
        fresh = {}
        if missing:
            images = torch.stack([prepare_view(self.ds.render(sha, v), self.size) for sha, v in missing])
            feats = self.encoder(images, image_size=self.size).to(self.dtype)
            for k, f in zip(missing, feats):
                fresh[k] = f
                size = f.numel() * f.element_size()
                if self.cached_bytes + size <= self.cache_bytes:
                    self.cache[k] = f.clone()  # not a view that would keep the whole batch alive
                    self.cached_bytes += size
        return torch.stack([self.cache[k] if k in self.cache else fresh[k] for k in keys])
