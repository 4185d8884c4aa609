"""The input image as the reference pipeline prepares it (docs/pipeline.md, "Image"): an image with transparency is
used as is, an opaque one goes through the base's background-removal model; then the square crop around the alpha
bounding box and the premultiplication onto black."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from trellis2_worker.errors import InputError

MAX_INPUT_SIDE = 1024      # the reference downscales larger inputs to this longest side first
MAX_IMAGE_PIXELS = 8192 * 8192  # anything larger is refused before decoding
ALPHA_CROP_THRESHOLD = 0.8  # the bounding box is of alpha > 0.8·255
REMBG_SIZE = 1024           # BiRefNet's input size
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: str | Path) -> Image.Image:
    """Decode an image file (PNG, JPEG, WebP, ...), refusing what is not one or is implausibly large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(f"the image is {img.width}x{img.height}; at most {MAX_IMAGE_PIXELS:,} pixels")
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"the image is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:  # its message names the local (downloaded) path: not shown
        raise InputError("the image is not in a format that can be read (PNG, JPEG, WebP, ...)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"the image is damaged or truncated ({type(exc).__name__})") from exc
    if img.width < 1 or img.height < 1:
        raise InputError("the image is empty")
    if img.mode in ("LA", "PA", "La") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return img


def has_transparency(img: Image.Image) -> bool:
    """The reference's test: an RGBA image whose alpha is not 255 everywhere."""
    return img.mode == "RGBA" and bool((np.asarray(img)[:, :, 3] < 255).any())


def preprocess(img: Image.Image, remove_background: Callable[[Image.Image], Image.Image] | None = None) -> Image.Image:
    """RGB premultiplied on black, cropped to the square around the object. An opaque image needs
    `remove_background` (RGB in, RGBA out); without it the image is refused."""
    transparent = has_transparency(img)
    scale = min(1.0, MAX_INPUT_SIDE / max(img.size))
    if scale < 1:
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS)
    if transparent:
        out = img
    elif remove_background is None:
        raise InputError("the image has no transparent background and this base has no background-removal model: "
                         "give a PNG with the object on a transparent background (RGBA)")
    else:
        out = remove_background(img.convert("RGB"))
    alpha = np.asarray(out)[:, :, 3]
    ys, xs = np.nonzero(alpha > ALPHA_CROP_THRESHOLD * 255)
    if len(xs) == 0:
        raise InputError("the image has no opaque object (every pixel is at least 20% transparent)")
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    size = int(max(x1 - x0, y1 - y0))
    if size < 1:
        raise InputError("the object in the image is a single pixel wide")
    out = out.crop((cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2))  # PIL pads outside with 0
    arr = np.asarray(out).astype(np.float32) / 255
    arr = arr[:, :, :3] * arr[:, :, 3:4]
    return Image.fromarray((arr * 255).astype(np.uint8))


class BackgroundRemover:
    """BiRefNet-style segmentation (transformers' AutoModelForImageSegmentation with the model's own code), as the
    reference's `rembg.BiRefNet`: 1024² ImageNet-normalised input, the last output's sigmoid as alpha. Its
    torchvision transforms are written out with PIL and numpy because torchvision is not a dependency here."""

    def __init__(self, source: str, device: str = "cpu", token: str | None = None):
        import torch
        from transformers import AutoModelForImageSegmentation

        self.torch = torch
        self.device = device
        self.model = AutoModelForImageSegmentation.from_pretrained(source, trust_remote_code=True, token=token)
        self.model.eval().to(device)

    def __call__(self, image: Image.Image) -> Image.Image:
        torch = self.torch
        x = np.asarray(image.resize((REMBG_SIZE, REMBG_SIZE), Image.Resampling.BILINEAR), np.float32) / 255
        x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        t = torch.from_numpy(x).permute(2, 0, 1)[None].to(self.device)
        with torch.no_grad():
            pred = self.model(t)[-1].sigmoid()[0].squeeze().float().cpu().numpy()
        mask = Image.fromarray((pred * 255).astype(np.uint8), "L").resize(image.size)
        out = image.copy()
        out.putalpha(mask)
        return out


def background_remover(base, device: str = "cpu") -> BackgroundRemover | None:
    """The base's background-removal model (pipeline.json `rembg_model`) when its weights are at hand: a folder of
    that name inside a local base, or the hub when the base itself comes from the hub. None otherwise."""
    name = base.pipeline.get("args", {}).get("rembg_model", {}).get("args", {}).get("model_name")
    if not name:
        return None
    local = Path(base.root) / name
    if local.is_dir():
        return BackgroundRemover(str(local), device)
    if getattr(base, "repo_id", None):
        return BackgroundRemover(name, device, token=getattr(base, "_token", None))
    return None
