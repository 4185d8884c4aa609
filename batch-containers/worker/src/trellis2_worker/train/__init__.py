"""LoRA training of one TRELLIS.2 denoiser per run (docs/training.md).

`train(TrainRequest(...)) -> report` runs it; `evaluate_adapter(adapter, dataset, base)` recomputes a saved adapter's
flow-loss metrics; `held_out_split(shas)` says which objects a run holds out of training; `load_adapter(model, path,
denoiser, resolution)` puts a saved adapter on a flow model (refusing one made for another stage);
`read_adapter_metadata(path)` reads its header; `train_data_parallel(req, world_size)` runs `train` over one process per
GPU (or CPU processes over gloo) with the one-process result.

Modules along the run's seams: `request` (TrainRequest, the early stops), `data` (objects, per-step draws), `split`
(held-out objects), `condition` (views and their DINOv3 features), `denoise` (the loss), `ema`, `checkpoint`,
`evaluation` (flow loss on training and held-out objects), `outputs` (adapter, record, loss log, curve), `trainer`
(the `Run` and its loop), `parallel` (data-parallel ranks); `recipe`, `batching`, `lora`.
"""

# Imported on first use (PEP 562): peft and torch take seconds to import, and every `trellis2-worker` command
# loads this package's CLI, which needs only the recipe's constants.
_EXPORTS = {
    "TARGET_REGEX": "lora", "attach_lora": "lora", "load_adapter": "lora", "read_adapter_metadata": "lora",
    "save_adapter": "lora", "STAGES": "recipe", "TARGET_MODULES": "recipe", "TrainingDiverged": "request",
    "TrainingInterrupted": "request", "TrainRequest": "request", "evaluate_adapter": "evaluation", "train": "trainer",
    "held_out_split": "split", "train_data_parallel": "parallel",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = [
    "STAGES",
    "TARGET_MODULES",
    "TARGET_REGEX",
    "TrainRequest",
    "TrainingDiverged",
    "TrainingInterrupted",
    "attach_lora",
    "evaluate_adapter",
    "held_out_split",
    "load_adapter",
    "read_adapter_metadata",
    "save_adapter",
    "train",
    "train_data_parallel",
]
