"""DINOv3 image conditioner (docs/models.md#dinov3-conditioner) on transformers' DINOv3ViTModel.

Images: premultiplied RGB on black, LANCZOS-resized to image_size², [0, 1], ImageNet-normalised. Features: all tokens
(CLS, 4 registers, patches row-major) after every layer, then a LayerNorm without affine (eps 1e-5) in place of the
model's own final norm.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def prepare_images(images: Sequence[Image.Image], image_size: int) -> torch.Tensor:
    """PIL images -> [B, 3, S, S] in [0, 1] (LANCZOS resize when the size differs)."""
    arrs = []
    for im in images:
        if im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.LANCZOS)
        arrs.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


class ImageConditioner(nn.Module):
    """`cond = conditioner(images)` -> [B, 1 + registers + (S/16)², hidden]."""

    def __init__(self, model: nn.Module, image_size: int = 512):
        super().__init__()
        self.model = model.eval()
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def extract_features(self, image: torch.Tensor) -> torch.Tensor:
        """image: [B, 3, S, S] already normalised."""
        m = self.model
        image = image.to(m.embeddings.patch_embeddings.weight.dtype)
        hidden = m.embeddings(image, bool_masked_pos=None)
        position_embeddings = m.rope_embeddings(image)
        # transformers >= 5 keeps the layers under .model (an encoder module); 4.56+ had them on the model itself
        layers = m.layer if hasattr(m, "layer") else m.model.layer
        for layer in layers:
            hidden = layer(hidden, position_embeddings=position_embeddings)
            if isinstance(hidden, tuple):  # older transformers return tuples from layers
                hidden = hidden[0]
        return F.layer_norm(hidden, hidden.shape[-1:])

    @torch.no_grad()
    def forward(self, images, image_size: int | None = None) -> torch.Tensor:
        """images: list of PIL RGB images (prepared as in training: cropped, premultiplied on black) or a
        [B, 3, S, S] tensor in [0, 1]."""
        size = image_size or self.image_size
        if isinstance(images, torch.Tensor):
            x = images
            if x.dim() != 4 or x.shape[1] != 3:
                raise ValueError("image tensor must be [B, 3, S, S]")
        else:
            x = prepare_images(list(images), size)
        x = (x.to(self.device, torch.float32) - self.mean) / self.std
        return self.extract_features(x).float()


def tiny_dinov3_config(hidden_size: int = 64):
    from transformers import DINOv3ViTConfig

    # Same structure as ViT-L/16 (16-px patches, 4 registers, RoPE θ=100, LayerScale), tiny widths.
    return DINOv3ViTConfig(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=hidden_size * 4, num_register_tokens=4, patch_size=16, image_size=512,
                           rope_theta=100.0, layer_norm_eps=1e-5, query_bias=True, key_bias=False, value_bias=True,
                           use_gated_mlp=False, hidden_act="gelu")
