"""The adapter's held-out metric: the flow-matching loss with the adapter on and off, on fixed noise and a fixed t
grid, so the base and the adapted model see the same numbers and can be compared.

`heldout_metrics` is what a run records (the `metrics` of the adapter record, beside the training losses);
`evaluate_adapter` recomputes it from a saved adapter file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trellis2_worker.train import lora as lora_io
from trellis2_worker.train.condition import Conditioner
from trellis2_worker.train.data import TrainObject, load_objects
from trellis2_worker.train.denoise import Denoise, pick_device
from trellis2_worker.train.recipe import STAGES

EVAL_T_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)
EVAL_SEED = 20250101


@torch.no_grad()
def heldout_flow_loss(denoise: Denoise, objs: list[TrainObject], conds: list[torch.Tensor]) -> float:
    """Mean flow-matching loss over the objects × a fixed t grid, with fixed noise and each object's view 0:
    the same numbers for the base and the adapted model, so they can be compared."""
    total, count = 0.0, 0
    for i, (o, c) in enumerate(zip(objs, conds)):
        g = torch.Generator().manual_seed(EVAL_SEED + i)
        eps = torch.randn(o.x0.shape, generator=g)
        for t in EVAL_T_GRID:
            total += float(denoise.loss([o], torch.tensor([t]), [eps], c))
            count += 1
    return total / count


def compare_heldout(denoise: Denoise, peft_model, conditioner: Conditioner, objects: list[TrainObject],
                    count: int) -> tuple[float, float, int]:
    """(adapted, base, objects used): the held-out loss with the adapter on and off, on the first `count` objects."""
    was_training = peft_model.training
    peft_model.eval()
    objs = objects[:count]
    conds = [conditioner([o], [0]) for o in objs]
    adapted = heldout_flow_loss(denoise, objs, conds)
    with peft_model.disable_adapter():
        base_loss = heldout_flow_loss(denoise, objs, conds)
    peft_model.train(was_training)
    return adapted, base_loss, len(objs)


def heldout_metrics(denoise: Denoise, peft_model, conditioner: Conditioner, objects: list[TrainObject],
                    count: int) -> dict:
    """The held-out part of the adapter record's `metrics`, measured at the end of a run (on its training objects:
    base with the adapter off against base + LoRA)."""
    adapted, base_loss, n = compare_heldout(denoise, peft_model, conditioner, objects, count)
    return {"heldout_flow_loss_base": base_loss, "heldout_flow_loss_adapted": adapted, "heldout_objects": n,
            "heldout_t_grid": list(EVAL_T_GRID)}


def evaluate_adapter(adapter: str | Path, dataset: str | Path, base, device: str | None = None,
                     eval_objects: int = 16) -> dict:
    """Recomputes an adapter's held-out metric from the saved file: what the record says it should be."""
    from trellis2_worker.dataset import open_dataset

    meta = lora_io.read_adapter_metadata(adapter)
    stage = STAGES[meta["denoiser"]]
    resolution = int(meta["resolution"])
    dev = pick_device(device)
    model = base.load(stage.model_key(resolution), device=str(dev))
    loaded_dtype = getattr(model, "dtype", torch.float32)
    if dev.type != "cuda" and loaded_dtype != torch.float32:
        model.convert_to(torch.float32)
    peft_model = lora_io.load_adapter(model, adapter, meta["denoiser"], resolution)
    try:
        with open_dataset(Path(dataset)) as ds:
            objects, _ = load_objects(ds, stage, resolution, base)
            conditioner = Conditioner(base, ds, stage.image_size(resolution), dev,
                                      dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
            denoise = Denoise(stage, peft_model, dev, dev.type == "cuda")
            adapted, base_loss, n = compare_heldout(denoise, peft_model, conditioner, objects, eval_objects)
    finally:
        peft_model.unload()
        if loaded_dtype != torch.float32:
            model.convert_to(loaded_dtype)
    return {"heldout_flow_loss_adapted": adapted, "heldout_flow_loss_base": base_loss, "heldout_objects": n}
