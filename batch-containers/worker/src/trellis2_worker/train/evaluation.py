"""How an adapter is judged at the end of a run: the flow-matching loss with the adapter on and off, on fixed noise
and a fixed t grid (so the base and the adapted model see the same numbers), on two sets of objects: those it trained
on (`train_objects_flow_loss`: fitting) and those the run held out of training (`held_out`: generalisation,
split.py). With an EMA of the LoRA weights (ema.py) its adapted loss is measured on the same draws.

`evaluation_metrics` is what a run records (the `metrics` of the adapter record, beside the training losses);
`evaluate_adapter` recomputes them from a saved adapter file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trellis2_worker.progress import counter
from trellis2_worker.train import lora as lora_io
from trellis2_worker.train.condition import Conditioner
from trellis2_worker.train.data import TrainObject, load_objects
from trellis2_worker.train.denoise import Denoise, pick_device
from trellis2_worker.train.recipe import STAGES
from trellis2_worker.train.request import EVAL_OBJECTS
from trellis2_worker.train.split import HELD_OUT_FRACTION, held_out_split

EVAL_T_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)
EVAL_SEED = 20250101
TRAIN_SET, HELD_OUT_SET = "train_objects", "held_out"


@torch.no_grad()
def fixed_noise_flow_loss(denoise: Denoise, objs: list[TrainObject], conds: list[torch.Tensor]) -> float:
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


def flow_losses(denoise: Denoise, peft_model, conditioner: Conditioner, sets: dict[str, list[TrainObject]],
                count: int, ema=None, progress: bool = False) -> dict:
    """{set name: {"base", "adapted", "objects"} (+ "ema_adapted")} on the first `count` objects of each non-empty
    set: the adapter off, on, and replaced by its EMA. `progress`: a counter of the passes on stderr."""
    variants = 3 if ema is not None else 2
    bar = counter(sum(variants * len(objs[:count]) for objs in sets.values()), "evaluate flow loss", "object-pass",
                  progress)

    def measure(objs, conds) -> float:
        loss = fixed_noise_flow_loss(denoise, objs, conds)
        bar.update(len(objs))
        return loss

    was_training = peft_model.training
    peft_model.eval()
    out = {}
    try:
        for name, objects in sets.items():
            objs = objects[:count]
            if not objs:
                continue
            bar.set_postfix_str(name)
            conds = [conditioner([o], [0]) for o in objs]
            entry = {"adapted": measure(objs, conds)}
            if ema is not None:
                with ema.applied():
                    entry["ema_adapted"] = measure(objs, conds)
            with peft_model.disable_adapter():
                entry["base"] = measure(objs, conds)
            entry["objects"] = len(objs)
            out[name] = entry
    finally:
        bar.close()
        peft_model.train(was_training)
    return out


def _pair(entry: dict, adapted: str = "adapted") -> dict:
    return {"base": entry["base"], "adapted": entry[adapted], "objects": entry["objects"]}


def evaluation_metrics(losses: dict, ema_decay: float = 0.0) -> dict:
    """The evaluation part of the record's `metrics`: base → adapted on the training objects and on the held-out
    ones (absent when none were held out), and the same for the EMA weights under `ema`."""
    if not losses:
        return {}
    def of(adapted: str) -> dict:
        part = {}
        if TRAIN_SET in losses:
            part["train_objects_flow_loss"] = _pair(losses[TRAIN_SET], adapted)
        if HELD_OUT_SET in losses:
            part["held_out"] = {"flow_loss": _pair(losses[HELD_OUT_SET], adapted)}
        return part

    m = {"flow_loss_t_grid": list(EVAL_T_GRID), **of("adapted")}
    if ema_decay:
        m["ema"] = {"decay": ema_decay, **of("ema_adapted")}
    return m


def evaluate_adapter(adapter: str | Path, dataset: str | Path, base, device: str | None = None,
                     eval_objects: int = EVAL_OBJECTS, held_out_fraction: float = HELD_OUT_FRACTION) -> dict:
    """Recomputes an adapter's flow-loss metrics from the saved file (and the run's split of the dataset): what the
    record says they should be, `train_objects_flow_loss` and `held_out`."""
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
            split = held_out_split([e["sha256"] for e in ds.info["objects"]], held_out_fraction)
            objects, _ = load_objects(ds, stage, resolution, base)
            trained, held = split.partition(objects)
            conditioner = Conditioner(base, ds, stage.image_size(resolution), dev,
                                      dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
            denoise = Denoise(stage, peft_model, dev, dev.type == "cuda")
            losses = flow_losses(denoise, peft_model, conditioner, {TRAIN_SET: trained, HELD_OUT_SET: held},
                                 eval_objects)
    finally:
        peft_model.unload()
        if loaded_dtype != torch.float32:
            model.convert_to(loaded_dtype)
    return evaluation_metrics(losses)
