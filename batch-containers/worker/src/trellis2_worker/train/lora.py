"""LoRA on a flow model with PEFT, as training uses it: fresh adapters on the recipe's in-block Linears.
Loading a saved adapter and the adapter file itself (its keys and self-describing header) belong to the formats
package, which generation and evaluation use too."""

from __future__ import annotations

import torch

from trellis2_worker.formats.loading import attach
from trellis2_worker.formats.loading import load_adapter  # noqa: F401 - re-exported: train's public surface
from trellis2_worker.formats.loading import lora_config as _lora_config
from trellis2_worker.formats.native import (  # noqa: F401 - re-exported: the trainer and tests use them from here
    FORMAT,
    FORMAT_VERSION,
    adapter_state,
    read_adapter_metadata,
    save_adapter,
    target_regex,
)
from trellis2_worker.train.recipe import TARGET_MODULES

TARGET_REGEX = target_regex(TARGET_MODULES)


def lora_config(rank: int, alpha: float | None = None):
    """The recipe's LoRA: alpha = rank unless given, on every in-block Linear the recipe names."""
    return _lora_config(rank, rank if alpha is None else alpha, TARGET_MODULES)


def attach_lora(model: torch.nn.Module, rank: int, alpha: float | None = None):
    """Wraps `model` with fresh LoRA layers on every block Linear; only the LoRA weights require grad."""
    return attach(model, rank, rank if alpha is None else alpha, TARGET_MODULES)
