"""The run's checkpoint beside its output (`<denoiser>.checkpoint.safetensors`): LoRA weights, AdamW state, clipper
history, loss log and (when on) the EMA of the LoRA weights, with a fingerprint of the run so that a rerun resumes
only its own checkpoint.

A run resumed from it ends with the same adapter as a run that was never stopped (the per-step draws are seeded by
step, data.py). It is removed once the adapter is written, and when the run diverges (a resume would only diverge
again).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

from trellis2_worker.errors import InputError
from trellis2_worker.train import lora as lora_io
from trellis2_worker.train.request import TrainRequest, sibling

CHECKPOINT_KIND = "trellis2-lora-checkpoint"


def fingerprint(req: TrainRequest, dataset_sha: str, base_sha: str) -> dict:
    return {"dataset_sha256": dataset_sha, "denoiser": req.denoiser, "resolution": req.resolution, "rank": req.rank,
            "learning_rate": req.learning_rate, "training_steps": req.training_steps, "batch_size": req.batch_size,
            "seed": req.seed, "base_checkpoint_sha256": base_sha, "held_out_fraction": req.held_out_fraction,
            "ema_decay": req.ema_decay}


def save_checkpoint(path: Path, peft_model, optimizer, clipper, step: int, log: list[dict], fingerprint: dict,
                    ema=None) -> None:
    from safetensors.torch import save_file

    tensors = {f"lora/{k}": v for k, v in lora_io.adapter_state(peft_model).items()}
    if ema is not None:
        tensors.update({f"ema/{k}": v for k, v in ema.state().items()})
    opt = optimizer.state_dict()
    names = {}
    for idx, state in opt["state"].items():
        names[str(idx)] = sorted(state)
        for name, value in state.items():
            tensors[f"optim/{idx}/{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    header = {"kind": CHECKPOINT_KIND, "fingerprint": json.dumps(fingerprint, sort_keys=True), "step": str(step),
              "log": json.dumps(log), "clip_norms": json.dumps(clipper.norms),
              "optim_groups": json.dumps(opt["param_groups"]), "optim_names": json.dumps(names)}
    save_file(tensors, str(path), metadata=header)


def load_checkpoint(path: Path, peft_model, optimizer, clipper, fingerprint: dict,
                    ema=None) -> tuple[int, list[dict]] | None:
    """Restores the state and returns (step, log), or None when the checkpoint belongs to another run."""
    from peft import set_peft_model_state_dict
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("kind") != CHECKPOINT_KIND or json.loads(meta.get("fingerprint", "{}")) != fingerprint:
            return None
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    lora = {k[len("lora/"):]: v for k, v in tensors.items() if k.startswith("lora/")}
    set_peft_model_state_dict(peft_model, lora)
    state = {int(idx): {n: tensors[f"optim/{idx}/{n}"] for n in names}
             for idx, names in json.loads(meta["optim_names"]).items()}
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["optim_groups"])})
    clipper.norms = [float(x) for x in json.loads(meta["clip_norms"])]
    if ema is not None:  # the fingerprint's ema_decay says the checkpoint holds one
        ema.load_state({k[len("ema/"):]: v for k, v in tensors.items() if k.startswith("ema/")})
    return int(meta["step"]), json.loads(meta["log"])


class Checkpoints:
    """Where this run's checkpoint lives (`uri`, local or s3://) and the three things done with it."""

    def __init__(self, req: TrainRequest, workdir: Path, fingerprint: dict):
        self.uri = sibling(req.output, ".checkpoint.safetensors")
        self.dir = workdir / "ckpt"
        self.fingerprint = fingerprint

    def resume(self, peft_model, optimizer, clipper, ema=None) -> tuple[int, list[dict]]:
        """(step, log) to go on from: the saved state when this run left one, else (0, [])."""
        found = _fetch_if_exists(self.uri, self.dir / "resume.safetensors")
        if found is not None:
            restored = load_checkpoint(found, peft_model, optimizer, clipper, self.fingerprint, ema)
            if restored is None:
                print(f"train: {self.uri} belongs to another run; starting afresh", file=sys.stderr)
            else:
                print(f"train: resuming from step {restored[0]} ({self.uri})", file=sys.stderr)
                return restored
        return 0, []

    def save(self, step: int, peft_model, optimizer, clipper, log: list[dict], ema=None) -> None:
        from trellis2_worker import storage

        path = self.dir / "out.safetensors"
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, peft_model, optimizer, clipper, step, log, self.fingerprint, ema)
        storage.upload_file(path, self.uri)

    def remove(self) -> None:
        from trellis2_worker import storage

        if storage.is_s3(self.uri):
            import boto3

            bucket, key = storage.split_s3(self.uri)
            with contextlib.suppress(Exception):
                boto3.client("s3").delete_object(Bucket=bucket, Key=key)
        else:
            Path(self.uri).unlink(missing_ok=True)


def _fetch_if_exists(uri: str, dest: Path) -> Path | None:
    from trellis2_worker import storage

    if not storage.is_s3(uri):
        return Path(uri) if Path(uri).is_file() else None
    try:
        return storage.download(uri, dest)
    except InputError:
        return None
