"""One LoRA adapter for one TRELLIS.2 denoiser, trained from a preprocessed dataset with the reference recipe.

Every random draw of step s comes from a generator seeded by (seed, s), so a run stopped at any step and resumed
from its checkpoint (LoRA weights, AdamW state, clipper history, loss log) ends with the same adapter as a run
that was never stopped.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trellis2_worker.errors import InputError, WorkerError
from trellis2_worker.train import lora as lora_io
from trellis2_worker.train.batching import default_token_budget, plan_micro_batches
from trellis2_worker.train.condition import prepare_view
from trellis2_worker.train.recipe import (
    ADAM_EPS,
    BATCH_SIZE,
    BETAS,
    P_UNCOND,
    RESOLUTIONS,
    SS_TOKENS,
    STAGES,
    TARGET_MODULES,
    WEIGHT_DECAY,
    AdaptiveGradClipper,
    Stage,
    noisy,
    sample_t,
    velocity,
)

DEFAULT_BASE = "microsoft/TRELLIS.2-4B"
EVAL_T_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)
EVAL_SEED = 20250101
CHECKPOINT_KIND = "trellis2-lora-checkpoint"


class TrainingDiverged(InputError):
    """The loss became NaN/inf: rerunning the same request would diverge the same way, so it is not retried."""


class TrainingInterrupted(WorkerError):
    """SIGTERM (Batch job stop, spot reclaim): the checkpoint is saved and a rerun of the same command resumes."""

    exit_code = 143


@dataclass
class TrainRequest:
    dataset: str
    denoiser: str
    resolution: int
    rank: int
    learning_rate: float
    training_steps: int
    output: str
    base: str = DEFAULT_BASE
    batch_size: int = BATCH_SIZE
    max_tokens_per_micro_batch: int | None = None
    checkpoint_every: int = 200
    seed: int = 0
    device: str | None = None
    gradient_checkpointing: bool = True
    eval_objects: int = 16
    condition_cache_gb: float = 4.0
    progress: bool = True
    hf_token: str | None = field(default=None, repr=False)

    def check(self) -> Stage:
        if self.denoiser not in STAGES:
            raise InputError(f"unknown denoiser {self.denoiser!r}; expected one of {sorted(STAGES)}")
        if self.resolution not in RESOLUTIONS:
            raise InputError(f"resolution must be one of {list(RESOLUTIONS)}, got {self.resolution}")
        for name in ("rank", "training_steps", "batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise InputError("learning-rate must be a positive number")
        if not self.output.endswith(".safetensors"):
            raise InputError(f"--output must name a .safetensors file, got {self.output}")
        return STAGES[self.denoiser]


def sibling(output: str, suffix: str) -> str:
    """`.../texture.safetensors` → `.../texture<suffix>` (the record, log, curve and checkpoint live beside it)."""
    return output[: -len(".safetensors")] + suffix


# ------------------------------------------------------------------------------------------------ the data


@dataclass
class TrainObject:
    sha256: str
    tokens: int
    x0: torch.Tensor  # dense [8,16,16,16] or sparse feats [T,C], normalised as the stage trains on it
    coords: torch.Tensor | None  # int32 [T,3] for the sparse stages
    concat: torch.Tensor | None  # normalised shape feats [T,32] (texture only)
    renders: int


def _stats(base, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    n = base.normalization(key)
    return torch.tensor(n["mean"], dtype=torch.float32), torch.tensor(n["std"], dtype=torch.float32)


def load_objects(ds, stage: Stage, resolution: int, base) -> tuple[list[TrainObject], list[dict]]:
    """The objects this stage trains on, latents normalised (§9.6), and those skipped for size."""
    cap = stage.max_object_tokens(resolution)
    shape_key = STAGES["geometry"].model_key(resolution)
    shape_stats = _stats(base, shape_key) if stage.sparse else None
    tex_stats = _stats(base, STAGES["texture"].model_key(resolution)) if stage.denoiser == "texture" else None
    objects, skipped = [], []
    for entry in ds.info["objects"]:
        sha = entry["sha256"]
        tokens = SS_TOKENS if not stage.sparse else int(entry["pbr_tokens" if stage.uses_shape_concat else "shape_tokens"])
        if cap is not None and tokens > cap:
            skipped.append({"sha256": sha, "tokens": tokens,
                            "reason": f"{tokens} latent tokens is more than the {cap} the reference trains on at {resolution}"})
            continue
        if tokens == 0:
            skipped.append({"sha256": sha, "tokens": 0, "reason": "empty latent"})
            continue
        renders = int(entry["renders"])
        if not stage.sparse:
            objects.append(TrainObject(sha, tokens, torch.from_numpy(np.array(ds.ss_latent(sha))), None, None, renders))
            continue
        shape = ds.shape_latent(sha)
        coords = torch.from_numpy(np.array(shape.coords, dtype=np.int32))
        shape_feats = (torch.from_numpy(np.array(shape.feats)) - shape_stats[0]) / shape_stats[1]
        if stage.denoiser == "geometry":
            objects.append(TrainObject(sha, tokens, shape_feats, coords, None, renders))
        else:
            pbr = ds.pbr_latent(sha)
            if not np.array_equal(pbr.coords, shape.coords):
                raise InputError(f"object {sha[:12]}: PBR latent coords differ from the shape latent's")
            feats = (torch.from_numpy(np.array(pbr.feats)) - tex_stats[0]) / tex_stats[1]
            objects.append(TrainObject(sha, tokens, feats, coords, shape_feats, renders))
    return objects, skipped


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Objects of step `step` (0-based): consecutive slices of an endless stream of per-epoch permutations."""
    out, cache = [], {}
    for j in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(j, n)
        if epoch not in cache:
            cache[epoch] = np.random.default_rng([seed, epoch, 1]).permutation(n)
        out.append(int(cache[epoch][pos]))
    return out


def step_generators(seed: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    seq = np.random.SeedSequence([seed, step, 2])
    return np.random.default_rng(seq), torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0]) >> 1)


# ------------------------------------------------------------------------------------------------ the model


def set_gradient_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Recompute each transformer block in backward (the flows' own per-block `use_checkpoint`): activation memory
    for compute, with no numerical effect (spec §9.5)."""
    if not hasattr(model, "use_checkpoint"):
        raise WorkerError(f"{type(model).__name__} has no gradient checkpointing switch")
    model.use_checkpoint = on


class Denoise:
    """Builds the model input of one (micro-)batch and computes the flow-matching loss on it."""

    def __init__(self, stage: Stage, model, device: torch.device, autocast: bool):
        self.stage, self.model, self.device, self.autocast = stage, model, device, autocast

    def loss(self, objs: list[TrainObject], t: torch.Tensor, eps: list[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        dev = self.device
        kwargs = {}
        if not self.stage.sparse:
            x0 = torch.stack([o.x0 for o in objs]).to(dev)
            e = torch.stack(eps).to(dev)
            t_rows = t.to(dev)
            x_in = noisy(x0, t_rows, e)
            target = velocity(x0, e)
        else:
            from trellis2_worker.models import SparseTensor

            x0 = torch.cat([o.x0 for o in objs]).to(dev)
            e = torch.cat(eps).to(dev)
            t_rows = torch.cat([t[i].expand(o.tokens) for i, o in enumerate(objs)]).to(dev)
            coords = torch.cat([torch.cat([torch.full((o.tokens, 1), i, dtype=torch.int32), o.coords], dim=1)
                                for i, o in enumerate(objs)]).to(dev)
            target = velocity(x0, e)
            x_in = SparseTensor(noisy(x0, t_rows, e), coords)
            if self.stage.uses_shape_concat:
                kwargs["concat_cond"] = SparseTensor(torch.cat([o.concat for o in objs]).to(dev), coords)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            pred = self.model(x_in, t.to(dev) * 1000.0, cond.to(dev), **kwargs)
        pred = pred.feats if self.stage.sparse else pred
        return F.mse_loss(pred.float(), target)


class Conditioner:
    """DINOv3 features of prepared views (frozen, no grad), read from the dataset on demand and kept up to
    `cache_bytes`: a run draws the same few views of each object many times. Kept in the dtype the denoiser's
    `to_kv` consumes them in (bf16 under CUDA autocast, fp32 on CPU), so caching changes no number."""

    def __init__(self, base, ds, image_size: int, device: torch.device, cache_bytes: int = 0,
                 dtype: torch.dtype = torch.float32):
        self.encoder = base.image_conditioner(device=str(device), image_size=image_size)
        self.ds, self.size, self.dtype = ds, image_size, dtype
        self.cache: dict[tuple[str, int], torch.Tensor] = {}
        self.cache_bytes, self.cached_bytes = cache_bytes, 0

    @torch.no_grad()
    def __call__(self, objs: list[TrainObject], views: list[int]) -> torch.Tensor:
        keys = [(o.sha256, v) for o, v in zip(objs, views)]
        missing = [k for k in dict.fromkeys(keys) if k not in self.cache]
        fresh = {}
        if missing:
            images = torch.stack([prepare_view(self.ds.render(sha, v), self.size) for sha, v in missing])
            feats = self.encoder(images, image_size=self.size).to(self.dtype)
            for k, f in zip(missing, feats):
                fresh[k] = f
                size = f.numel() * f.element_size()
                if self.cached_bytes + size <= self.cache_bytes:
                    self.cache[k] = f.clone()  # not a view that would keep the whole batch alive
                    self.cached_bytes += size
        return torch.stack([self.cache[k] if k in self.cache else fresh[k] for k in keys])


# ------------------------------------------------------------------------------------------------ checkpoint


def _fingerprint(req: TrainRequest, dataset_sha: str, base_sha: str) -> dict:
    return {"dataset_sha256": dataset_sha, "denoiser": req.denoiser, "resolution": req.resolution, "rank": req.rank,
            "learning_rate": req.learning_rate, "training_steps": req.training_steps, "batch_size": req.batch_size,
            "seed": req.seed, "base_checkpoint_sha256": base_sha}


def save_checkpoint(path: Path, peft_model, optimizer, clipper, step: int, log: list[dict], fingerprint: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"lora/{k}": v for k, v in lora_io.adapter_state(peft_model).items()}
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


def load_checkpoint(path: Path, peft_model, optimizer, clipper, fingerprint: dict) -> tuple[int, list[dict]] | None:
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
    return int(meta["step"]), json.loads(meta["log"])


# ------------------------------------------------------------------------------------------------ storage helpers


def _exists_fetch(uri: str, dest: Path) -> Path | None:
    from trellis2_worker import storage

    if not storage.is_s3(uri):
        return Path(uri) if Path(uri).is_file() else None
    try:
        return storage.download(uri, dest)
    except InputError:
        return None


def _remove(uri: str) -> None:
    from trellis2_worker import storage

    if storage.is_s3(uri):
        import boto3

        bucket, key = storage.split_s3(uri)
        with contextlib.suppress(Exception):
            boto3.client("s3").delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink(missing_ok=True)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
        return h.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ evaluation


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


def evaluate_adapter(adapter: str | Path, dataset: str | Path, base, device: str | None = None,
                     eval_objects: int = 16) -> dict:
    """Recomputes an adapter's held-out metric from the saved file: what the record says it should be."""
    from trellis2_worker.dataset import open_dataset

    meta = lora_io.read_adapter_metadata(adapter)
    stage = STAGES[meta["denoiser"]]
    resolution = int(meta["resolution"])
    dev = _device(device)
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


# ------------------------------------------------------------------------------------------------ plots and logs


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


# ------------------------------------------------------------------------------------------------ the run


def _device(name: str | None) -> torch.device:
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise WorkerError("--device cuda was asked for but no CUDA device is available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _check_encoders(ds, base, stage: Stage, resolution: int) -> None:
    """Latents only make sense with the encoder weights that made them; compare checkpoints where both say."""
    recorded = ds.info.get("checkpoints") or {}
    needed = ["sparse_structure_encoder"] if not stage.sparse else ["shape_slat_encoder"]
    if stage.denoiser == "texture":
        needed.append("tex_slat_encoder")
    for key in needed:
        if key in recorded:
            try:
                have = base.checkpoint_sha256(key)
            except Exception:  # noqa: BLE001 - a base without that encoder file cannot be compared, only trusted
                continue
            if have != recorded[key]:
                raise InputError(f"the dataset was encoded with other {key} weights than base {base.model_id!r} "
                                 f"has; preprocess it again with this base")


def train(req: TrainRequest, base=None, on_step=None) -> dict:
    """Runs the training and writes the adapter, its record, the loss log and curve; returns the report.
    `base` (a models.Base) may be passed in to reuse one already loaded; `on_step(step, record)` sees each step."""
    stage = req.check()
    device = _device(req.device)
    autocast = device.type == "cuda"
    workdir = Path(tempfile.mkdtemp(prefix="trellis2-train-"))
    peft_model = restore = None
    try:
        from trellis2_worker import storage
        from trellis2_worker.dataset import open_dataset, validate_dataset

        local = storage.open_input(req.dataset, workdir / "in")
        summary = validate_dataset(local, resolution=req.resolution if stage.sparse else None)
        dataset_sha = _file_sha256(local)
        if base is None:
            from trellis2_worker.models import load_base

            base = load_base(req.base, token=req.hf_token or os.environ.get("HF_TOKEN"))
        key = stage.model_key(req.resolution)
        base_sha = base.checkpoint_sha256(key)
        ds = open_dataset(local)
        with ds:
            _check_encoders(ds, base, stage, req.resolution)
            objects, skipped = load_objects(ds, stage, req.resolution, base)
            for s in skipped:
                print(f"train: skipping {s['sha256'][:12]}: {s['reason']}", file=sys.stderr)
            if not objects:
                raise InputError(f"no object of the dataset can train the {req.denoiser} denoiser "
                                 f"({len(skipped)} skipped: {skipped[0]['reason'] if skipped else 'none listed'})")
            budget = req.max_tokens_per_micro_batch or default_token_budget(stage.sparse, req.resolution)
            if max(o.tokens for o in objects) > budget:
                raise InputError(f"--max-tokens-per-micro-batch {budget} is below the largest object "
                                 f"({max(o.tokens for o in objects)} tokens)")

            model = base.load(key, device=str(device))
            loaded_dtype = getattr(model, "dtype", torch.float32)
            if not autocast and loaded_dtype != torch.float32:
                # fp32 on CPU (no bf16 autocast there); converted back below, losslessly, for the cached base.
                model.convert_to(torch.float32)
                restore = (model, loaded_dtype)
            torch.manual_seed(req.seed)  # PEFT's lora_A init draws from the global generator
            peft_model = lora_io.attach_lora(model, req.rank)
            set_gradient_checkpointing(peft_model.get_base_model(), req.gradient_checkpointing)
            peft_model.to(device)
            params = [p for p in peft_model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=req.learning_rate, betas=BETAS, eps=ADAM_EPS,
                                          weight_decay=WEIGHT_DECAY)
            clipper = AdaptiveGradClipper()
            conditioner = Conditioner(base, ds, stage.image_size(req.resolution), device,
                                      cache_bytes=int(req.condition_cache_gb * 2**30),
                                      dtype=torch.bfloat16 if autocast else torch.float32)
            denoise = Denoise(stage, peft_model, device, autocast)
            fingerprint = _fingerprint(req, dataset_sha, base_sha)

            ckpt_uri = sibling(req.output, ".checkpoint.safetensors")
            start, log = 0, []
            found = _exists_fetch(ckpt_uri, workdir / "ckpt" / "resume.safetensors")
            if found is not None:
                restored = load_checkpoint(found, peft_model, optimizer, clipper, fingerprint)
                if restored is None:
                    print(f"train: {ckpt_uri} belongs to another run; starting afresh", file=sys.stderr)
                else:
                    start, log = restored
                    print(f"train: resuming from step {start} ({ckpt_uri})", file=sys.stderr)

            def checkpoint(step: int) -> None:
                path = workdir / "ckpt" / "out.safetensors"
                path.parent.mkdir(exist_ok=True)
                save_checkpoint(path, peft_model, optimizer, clipper, step, log, fingerprint)
                storage.upload_file(path, ckpt_uri)

            stop = {}
            previous = None
            if threading.current_thread() is threading.main_thread():
                previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.setdefault("signal", signum))
            try:
                _loop(req, stage, objects, conditioner, denoise, optimizer, clipper, params, start, log, stop,
                      checkpoint, ckpt_uri, on_step)
            except TrainingDiverged:
                _remove(ckpt_uri)  # a resume would only diverge again
                raise
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

            # Held-out flow loss on the training objects: base (adapter off) against base + LoRA.
            adapted, base_loss, eval_count = compare_heldout(denoise, peft_model, conditioner, objects,
                                                             req.eval_objects)

        metadata = {"denoiser": req.denoiser, "resolution": req.resolution, "model_key": key, "rank": req.rank,
                    "alpha": req.rank, "training_steps": req.training_steps, "learning_rate": req.learning_rate,
                    "batch_size": req.batch_size, "seed": req.seed, "base_model": base.model_id,
                    "base_checkpoint_sha256": base_sha, "dataset_sha256": dataset_sha,
                    "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        out_dir = workdir / "out"
        out_dir.mkdir()
        name = Path(req.output).name
        adapter_path = out_dir / name
        lora_io.save_adapter(peft_model, adapter_path, metadata)
        (out_dir / "loss.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        plot_losses(log, out_dir / "loss.png", f"{req.denoiser} LoRA r{req.rank}, lr {req.learning_rate:g}, "
                                                f"{req.resolution}")
        last = [r["loss"] for r in log[-max(1, len(log) // 10):]]
        record = {
            "denoiser": req.denoiser,
            "resolution": req.resolution,
            "lora_file": {"url": req.output, "content_type": "application/octet-stream", "file_name": name,
                          "file_size": adapter_path.stat().st_size},
            "rank": req.rank,
            "training_steps": req.training_steps,
            "learning_rate": req.learning_rate,
            "metrics": {
                "heldout_flow_loss_base": base_loss,
                "heldout_flow_loss_adapted": adapted,
                "heldout_objects": eval_count,
                "heldout_t_grid": list(EVAL_T_GRID),
                "train_loss_first": log[0]["loss"],
                "train_loss_last": float(np.mean(last)),
                "objects_trained": len(objects),
                "objects_skipped": len(skipped),
            },
        }
        storage.upload_file(adapter_path, req.output)
        record_path = out_dir / "record.json"
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        storage.upload_file(record_path, sibling(req.output, ".json"))
        storage.upload_file(out_dir / "loss.jsonl", sibling(req.output, ".loss.jsonl"))
        storage.upload_file(out_dir / "loss.png", sibling(req.output, ".loss.png"))
        _remove(ckpt_uri)
        return {**record, "adapter_record": sibling(req.output, ".json"),
                "loss_log": sibling(req.output, ".loss.jsonl"), "loss_curve": sibling(req.output, ".loss.png"),
                "skipped_objects": skipped, "resumed_from_step": start, "dataset_objects": summary["objects"],
                "adapter_metadata": metadata}
    except RuntimeError as exc:
        if _is_oom(exc):
            raise WorkerError(f"out of memory training {req.denoiser} on {device}: {exc}".splitlines()[0]
                              + "; lower --max-tokens-per-micro-batch") from exc
        raise
    finally:
        if peft_model is not None:
            # base.load caches the module per process: take the LoRA layers out again so the cached base is clean.
            set_gradient_checkpointing(peft_model.get_base_model(), False)
            peft_model.unload().eval()  # and back in the eval mode base.load gives
        if restore is not None:
            restore[0].convert_to(restore[1])
        shutil.rmtree(workdir, ignore_errors=True)


def _loop(req, stage, objects, conditioner, denoise, optimizer, clipper, params, start, log, stop, checkpoint,
          ckpt_uri, on_step) -> None:
    from tqdm import tqdm

    budget = req.max_tokens_per_micro_batch or default_token_budget(stage.sparse, req.resolution)
    denoise.model.train()
    t0 = time.perf_counter()
    bar = tqdm(total=req.training_steps, initial=start, desc=f"train {req.denoiser}", unit="step",
               disable=not req.progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for step in range(start, req.training_steps):
            rng, gen = step_generators(req.seed, step)
            batch = [objects[i] for i in batch_indices(step, req.batch_size, len(objects), req.seed)]
            views = [int(rng.integers(o.renders)) for o in batch]
            t = sample_t(stage, len(batch), gen)
            eps = [torch.randn(o.x0.shape, generator=gen) for o in batch]
            drop = (torch.rand(len(batch), generator=gen) < P_UNCOND).tolist()
            groups = plan_micro_batches([o.tokens for o in batch], budget)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for group in groups:
                objs = [batch[i] for i in group]
                cond = conditioner(objs, [views[i] for i in group])
                keep = torch.tensor([0.0 if drop[i] else 1.0 for i in group]).view(-1, 1, 1)
                cond = cond * keep.to(cond.device)  # dropped conditions become all zeros of the same length
                loss = denoise.loss(objs, t[group], [eps[i] for i in group], cond) / len(groups)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingDiverged(f"training diverged at step {step + 1}: the loss is {value}; nothing was "
                                           f"saved (try a lower learning rate)")
                loss.backward()
                total += value
            norm = clipper(params)
            if math.isfinite(norm):
                optimizer.step()
            record = {"step": step + 1, "loss": total, "grad_norm": norm if math.isfinite(norm) else None,
                      "updated": math.isfinite(norm), "objects": len(batch), "tokens": sum(o.tokens for o in batch),
                      "micro_batches": len(groups), "seconds": round(time.perf_counter() - t0, 4)}
            log.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}")
            if on_step is not None:
                on_step(step + 1, record)
            done = step + 1
            if stop:
                checkpoint(done)
                raise TrainingInterrupted(f"stopped by signal {stop['signal']} at step {done} of "
                                          f"{req.training_steps}; checkpoint saved to {ckpt_uri}, rerun to resume")
            if done % req.checkpoint_every == 0 and done < req.training_steps:
                checkpoint(done)
    finally:
        bar.close()
