"""What a finished run leaves beside `--output`: the adapter (and, with an EMA, `<denoiser>.ema.safetensors`), the
same adapter as a ComfyUI LoRA file (`<denoiser>.comfyui.safetensors`, docs/adapter-formats.md), its
record (`<denoiser>.json`, the adapter entry of the result contract with `metrics`), the loss log (`.loss.jsonl`) and
the loss curve (`.loss.png`).

`write_adapters` writes and uploads the adapter files first, as soon as training ends, so nothing measured afterwards
can lose them; `write_record` then writes and uploads the rest. A new output file is one more step in one of them.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from trellis2_worker.formats.comfyui import write_comfyui
from trellis2_worker.formats.native import read_native
from trellis2_worker.train import lora as lora_io
from trellis2_worker.train.request import TrainRequest, sibling


def adapter_metadata(req: TrainRequest, model_key: str, base_model: str, base_sha: str, dataset_sha: str) -> dict:
    """The adapter file's self-describing header: what it was trained for, on what, and how; nothing about when
    (the record holds that), so the same training writes the same bytes."""
    return {"denoiser": req.denoiser, "resolution": req.resolution, "model_key": model_key, "rank": req.rank,
            "alpha": req.rank, "training_steps": req.training_steps, "learning_rate": req.learning_rate,
            "batch_size": req.batch_size, "seed": req.seed, "base_model": base_model,
            "base_checkpoint_sha256": base_sha, "dataset_sha256": dataset_sha}


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


def _file_ref(url: str, path: Path, content_type: str = "application/octet-stream") -> dict:
    return {"url": url, "content_type": content_type, "file_name": Path(url).name, "file_size": path.stat().st_size}


def write_adapters(req: TrainRequest, peft_model, metadata: dict, out_dir: Path, ema=None) -> dict:
    """Writes the adapter, its ComfyUI file (and the EMA adapter) under `out_dir`, uploads each beside `req.output`,
    and returns their file objects for the record: {"lora_file": ..., "comfyui_lora_file": ..., "ema_file": ...}."""
    from trellis2_worker import storage

    out_dir.mkdir(exist_ok=True)
    adapter_path = out_dir / Path(req.output).name
    lora_io.save_adapter(peft_model, adapter_path, metadata)
    storage.upload_file(adapter_path, req.output)
    files = {"lora_file": _file_ref(req.output, adapter_path)}
    comfyui_uri = sibling(req.output, ".comfyui.safetensors")  # what most users load: ComfyUI's LoRA loader
    comfyui_path = out_dir / Path(comfyui_uri).name
    write_comfyui(read_native(adapter_path), comfyui_path)
    storage.upload_file(comfyui_path, comfyui_uri)
    files["comfyui_lora_file"] = _file_ref(comfyui_uri, comfyui_path)
    if ema is not None:
        ema_uri = sibling(req.output, ".ema.safetensors")
        ema_path = out_dir / Path(ema_uri).name
        with ema.applied():
            lora_io.save_adapter(peft_model, ema_path, {**metadata, "ema_decay": ema.decay})
        storage.upload_file(ema_path, ema_uri)
        files["ema_file"] = _file_ref(ema_uri, ema_path)
    return files


def write_record(req: TrainRequest, files: dict, log: list[dict], metrics: dict, out_dir: Path) -> dict:
    """Writes the loss log, its curve and the record under `out_dir`, uploads each beside `req.output`, and returns
    the record: the adapter entry of result.json (`files`: what `write_adapters` returned; the loss log and curve
    join them as file objects, so the result hands them out like the adapter)."""
    from trellis2_worker import storage

    out_dir.mkdir(exist_ok=True)
    (out_dir / "loss.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    plot_losses(log, out_dir / "loss.png", f"{req.denoiser} LoRA r{req.rank}, lr {req.learning_rate:g}, "
                                            f"{req.resolution}")
    loss_files = {"loss_log_file": (".loss.jsonl", "loss.jsonl", "application/x-ndjson"),
                  "loss_curve_file": (".loss.png", "loss.png", "image/png")}
    for field, (suffix, local, content_type) in loss_files.items():
        uri = sibling(req.output, suffix)
        storage.upload_file(out_dir / local, uri)
        files = {**files, field: _file_ref(uri, out_dir / local, content_type)}
    record = {
        "denoiser": req.denoiser,
        "resolution": req.resolution,
        "lora_file": files["lora_file"],
        "rank": req.rank,
        "training_steps": req.training_steps,
        "learning_rate": req.learning_rate,
        "metrics": metrics,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **{k: v for k, v in files.items() if k != "lora_file"},
    }
    record_path = out_dir / "record.json"
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    storage.upload_file(record_path, sibling(req.output, ".json"))
    return record
