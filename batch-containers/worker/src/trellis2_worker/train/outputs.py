"""What a finished run leaves beside `--output`: the adapter, its record (`<denoiser>.json`, the adapter entry of the
result contract with `metrics`), the loss log (`.loss.jsonl`) and the loss curve (`.loss.png`).

`write_outputs` writes them all locally, then uploads them; a new output file is one more step there.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from trellis2_worker.train import lora as lora_io
from trellis2_worker.train.request import TrainRequest, sibling


def adapter_metadata(req: TrainRequest, model_key: str, base_model: str, base_sha: str, dataset_sha: str) -> dict:
    """The adapter file's self-describing header: what it was trained for, on what, and how."""
    return {"denoiser": req.denoiser, "resolution": req.resolution, "model_key": model_key, "rank": req.rank,
            "alpha": req.rank, "training_steps": req.training_steps, "learning_rate": req.learning_rate,
            "batch_size": req.batch_size, "seed": req.seed, "base_model": base_model,
            "base_checkpoint_sha256": base_sha, "dataset_sha256": dataset_sha,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def training_metrics(log: list[dict], objects_trained: int, objects_skipped: int) -> dict:
    """The training part of the record's `metrics`: first loss, mean of the last tenth, objects used."""
    last = [r["loss"] for r in log[-max(1, len(log) // 10):]]
    return {"train_loss_first": log[0]["loss"], "train_loss_last": float(np.mean(last)),
            "objects_trained": objects_trained, "objects_skipped": objects_skipped}


def plot_losses(log: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in log]
    losses = [r["loss"] for r in log]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss per step")
    window = max(1, len(losses) // 20)
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, lw=1.8, label=f"mean of {window} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss (MSE)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(req: TrainRequest, peft_model, metadata: dict, log: list[dict], metrics: dict, out_dir: Path) -> dict:
    """Writes the adapter, record, loss log and curve under `out_dir`, uploads each beside `req.output`, and returns
    the record plus where each file went."""
    from trellis2_worker import storage

    out_dir.mkdir()
    name = Path(req.output).name
    adapter_path = out_dir / name
    lora_io.save_adapter(peft_model, adapter_path, metadata)
    (out_dir / "loss.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    plot_losses(log, out_dir / "loss.png", f"{req.denoiser} LoRA r{req.rank}, lr {req.learning_rate:g}, "
                                            f"{req.resolution}")
    record = {
        "denoiser": req.denoiser,
        "resolution": req.resolution,
        "lora_file": {"url": req.output, "content_type": "application/octet-stream", "file_name": name,
                      "file_size": adapter_path.stat().st_size},
        "rank": req.rank,
        "training_steps": req.training_steps,
        "learning_rate": req.learning_rate,
        "metrics": metrics,
    }
    storage.upload_file(adapter_path, req.output)
    record_path = out_dir / "record.json"
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    storage.upload_file(record_path, sibling(req.output, ".json"))
    storage.upload_file(out_dir / "loss.jsonl", sibling(req.output, ".loss.jsonl"))
    storage.upload_file(out_dir / "loss.png", sibling(req.output, ".loss.png"))
    return {**record, "adapter_record": sibling(req.output, ".json"),
            "loss_log": sibling(req.output, ".loss.jsonl"), "loss_curve": sibling(req.output, ".loss.png")}
