"""LoRA training of one TRELLIS.2 denoiser per run (spec models §9, §10.4).

`train(TrainRequest(...)) -> report` runs it; `load_adapter(model, path, denoiser, resolution)` puts a saved
adapter on a flow model (refusing one made for another stage); `read_adapter_metadata(path)` reads its header.
"""

from trellis2_worker.train.lora import TARGET_REGEX, attach_lora, load_adapter, read_adapter_metadata, save_adapter
from trellis2_worker.train.recipe import STAGES, TARGET_MODULES
from trellis2_worker.train.trainer import TrainingDiverged, TrainingInterrupted, TrainRequest, evaluate_adapter, train

__all__ = [
    "STAGES",
    "TARGET_MODULES",
    "TARGET_REGEX",
    "TrainRequest",
    "TrainingDiverged",
    "TrainingInterrupted",
    "attach_lora",
    "evaluate_adapter",
    "load_adapter",
    "read_adapter_metadata",
    "save_adapter",
    "train",
]
