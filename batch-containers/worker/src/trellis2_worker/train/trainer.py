"""One LoRA adapter for one TRELLIS.2 denoiser, trained from a preprocessed dataset with the reference recipe.

`train` sets up a `Run` (data.py: the objects; split.py: those held out of training; condition.py: their DINOv3
features; denoise.py: the loss; checkpoint.py: resume and save; ema.py: the optional EMA), loops over its steps,
saves the adapter (outputs.py), then measures it (evaluation.py; a failure there is recorded, the adapter kept) and
writes its record. A run stopped at any step and resumed from its checkpoint ends with the same adapter as a run
that was never stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from trellis2_worker.errors import InputError, WorkerError, one_line
from trellis2_worker.progress import counter
from trellis2_worker.train import lora as lora_io
from trellis2_worker.train.batching import default_token_budget, plan_micro_batches
from trellis2_worker.train.checkpoint import Checkpoints, fingerprint
from trellis2_worker.train.condition import Conditioner
from trellis2_worker.train.data import (
    TrainObject,
    batch_indices,
    check_encoders,
    dataset_sha256,
    load_objects,
    step_generators,
)
from trellis2_worker.train.denoise import Denoise, is_oom, pick_device, set_gradient_checkpointing
from trellis2_worker.train.ema import LoraEma
from trellis2_worker.train.evaluation import HELD_OUT_SET, TRAIN_SET, evaluation_metrics, flow_losses
from trellis2_worker.train.outputs import adapter_metadata, training_metrics, write_adapters, write_record
from trellis2_worker.train.parallel import Ranks, current_ranks
from trellis2_worker.train.recipe import ADAM_EPS, BETAS, P_UNCOND, WEIGHT_DECAY, AdaptiveGradClipper, Stage, sample_t
from trellis2_worker.train.request import TrainingDiverged, TrainingInterrupted, TrainRequest
from trellis2_worker.train.split import held_out_split

# What `train` returns beside the record, for its caller only: the command's report (which the orchestrator keeps
# as the adapter record, adapters/<denoiser>.json) is the record alone.
RUN_DETAILS = ("skipped_objects", "resumed_from_step", "dataset_objects", "adapter_metadata")


@dataclass
class Run:
    """Everything one training loop works on, set up by `train`."""

    req: TrainRequest
    stage: Stage
    objects: list[TrainObject]  # the ones trained on (the held-out ones never enter the loop)
    conditioner: Conditioner
    denoise: Denoise  # .model is the PEFT-wrapped flow model
    optimizer: torch.optim.Optimizer
    clipper: AdaptiveGradClipper
    params: list[torch.nn.Parameter]
    checkpoints: Checkpoints
    budget: int  # latent tokens per forward/backward
    start: int = 0  # steps already done (a resumed run)
    log: list[dict] = field(default_factory=list)
    stop: dict = field(default_factory=dict)  # {"signal": n} once SIGTERM arrived
    on_step: Callable[[int, dict], None] | None = None
    ema: LoraEma | None = None
    ranks: Ranks | None = None  # a data-parallel run (parallel.py); None: one process

    @property
    def peft_model(self):
        return self.denoise.model

    def save_checkpoint(self, step: int) -> None:
        if self.ranks is not None and self.ranks.rank:
            return  # rank 0 saves for all (they hold the same weights)
        self.checkpoints.save(step, self.peft_model, self.optimizer, self.clipper, self.log, self.ema)


def train(req: TrainRequest, base=None, on_step=None) -> dict:
    """Runs the training and writes the adapter, its record, the loss log and curve; returns the report.
    `base` (a models.Base) may be passed in to reuse one already loaded; `on_step(step, record)` sees each step."""
    stage = req.check()
    device = pick_device(req.device)
    autocast = device.type == "cuda"
    workdir = Path(tempfile.mkdtemp(prefix="trellis2-train-"))
    peft_model = restore = None
    try:
        from trellis2_worker import storage
        from trellis2_worker.dataset import open_dataset, validate_dataset

        local = storage.open_input(req.dataset, workdir / "in")
        summary = validate_dataset(local, resolution=req.resolution if stage.sparse else None)
        dataset_sha = dataset_sha256(local)
        if base is None:
            from trellis2_worker.models import load_base

            base = load_base(req.base, token=req.hf_token or os.environ.get("HF_TOKEN"))
        key = stage.model_key(req.resolution)
        base_sha = base.checkpoint_sha256(key)
        ds = open_dataset(local)
        with ds:
            check_encoders(ds, base, stage, req.resolution)
            split = held_out_split([e["sha256"] for e in ds.info["objects"]], req.held_out_fraction)
            objects, skipped = load_objects(ds, stage, req.resolution, base)
            for s in skipped:
                print(f"train: skipping {s['sha256'][:12]}: {s['reason']}", file=sys.stderr)
            objects, held_out = split.partition(objects)
            if not objects:
                raise InputError(f"no object of the dataset can train the {req.denoiser} denoiser "
                                 f"({len(skipped)} skipped: {skipped[0]['reason'] if skipped else 'none listed'}; "
                                 f"{len(held_out)} held out)")
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
            checkpoints = Checkpoints(req, workdir, fingerprint(req, dataset_sha, base_sha))
            ema = None
            if req.ema_decay:
                ema = LoraEma({n: p for n, p in peft_model.named_parameters() if p.requires_grad}, req.ema_decay)
            run = Run(req, stage, objects, conditioner, Denoise(stage, peft_model, device, autocast), optimizer,
                      clipper, params, checkpoints, budget, on_step=on_step, ema=ema, ranks=current_ranks())
            run.start, run.log = checkpoints.resume(peft_model, optimizer, clipper, ema)

            previous = None
            if threading.current_thread() is threading.main_thread():
                previous = signal.signal(signal.SIGTERM, lambda signum, frame: run.stop.setdefault("signal", signum))
            try:
                _loop(run)
            except TrainingDiverged:
                checkpoints.remove()  # a resume would only diverge again
                raise
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
            if run.ranks is not None and run.ranks.rank:
                return {}  # rank 0 writes the outputs and evaluates

            metadata = adapter_metadata(req, key, base.model_id, base_sha, dataset_sha)
            files = write_adapters(req, peft_model, metadata, workdir / "out", ema)
            evaluation = _evaluate(run, {TRAIN_SET: objects, HELD_OUT_SET: held_out})
            generation = _evaluate_generations(run, base, ds, held_out, key, files, workdir / "out")
            if generation:
                evaluation.setdefault("held_out", {}).update(generation)

        metrics = {**evaluation, **training_metrics(run.log, len(objects), len(skipped)), **split.as_record()}
        written = write_record(req, files, run.log, metrics, workdir / "out")
        checkpoints.remove()
        _print_metrics(req.denoiser, metrics)
        return {**written, **dict(zip(RUN_DETAILS, (skipped, run.start, summary["objects"], metadata)))}
    except RuntimeError as exc:
        if is_oom(exc):
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


def _evaluate(run: Run, sets: dict[str, list[TrainObject]]) -> dict:
    """The evaluation part of the record, or why there is none; never raises (the adapter is already saved)."""
    if not run.req.eval_objects:
        return {"evaluation_note": "evaluation off (--eval-objects 0)"}
    t0 = time.perf_counter()
    try:
        losses = flow_losses(run.denoise, run.peft_model, run.conditioner, sets, run.req.eval_objects, run.ema,
                             progress=run.req.progress)
        return {**evaluation_metrics(losses, run.req.ema_decay), "evaluation_s": round(time.perf_counter() - t0, 3)}
    except Exception as exc:  # noqa: BLE001 - a failed measurement must not lose the adapter that was trained
        message = f"{type(exc).__name__}: {one_line(exc)}"
        print(f"train: evaluation failed, the adapter is kept: {message}", file=sys.stderr)
        return {"evaluation_error": message}


def _evaluate_generations(run: Run, base, ds, held_out: list[TrainObject], flow_key: str, files: dict,
                          out_dir: Path) -> dict:
    """Base-vs-adapter generations of the held-out objects (evaluate/held_out.py), for the record's `held_out`
    (`generation`, or `generation_error`), and the preview panel beside the adapter (`files["preview_file"]`);
    never raises (the adapter is already saved)."""
    req = run.req
    if not req.eval_objects or not held_out:
        return {}
    # The evaluate package sits after train in the stage order; the generation pipeline it drives is only needed
    # here, once training is over, so it is imported late.
    from trellis2_worker import storage
    from trellis2_worker.evaluate.held_out import GenerationEval, HeldOutObject, evaluate_generations
    from trellis2_worker.train.condition import prepare_view
    from trellis2_worker.train.request import sibling

    peft_model = run.peft_model
    variants = {"base": peft_model.disable_adapter, "adapted": contextlib.nullcontext}
    if run.ema is not None:
        variants["ema"] = run.ema.applied
    try:
        device = run.denoise.device
        objs = []
        for o in held_out[:req.eval_objects]:
            image = ds.render(o.sha256, 0)
            feats = {size: run.conditioner.encoder(prepare_view(image, size)[None], image_size=size).float()
                     for size in {512, run.stage.image_size(req.resolution)}}
            objs.append(HeldOutObject(o.sha256, feats[run.stage.image_size(req.resolution)], feats[512], image))
        ev = GenerationEval(req.denoiser, req.resolution, flow_key, variants, samples=req.eval_samples,
                            progress=req.progress)
        was_training = peft_model.training
        peft_model.eval()
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if run.denoise.autocast else contextlib.nullcontext()
        try:
            with ctx:
                metrics, png = evaluate_generations(ev, base, device, objs, ds, {flow_key: peft_model})
        finally:
            peft_model.train(was_training)
        if png is not None:
            uri = sibling(req.output, ".preview.png")
            path = out_dir / Path(uri).name
            path.write_bytes(png)
            storage.upload_file(path, uri)
            files["preview_file"] = {"url": uri, "content_type": "image/png", "file_name": path.name,
                                     "file_size": path.stat().st_size}
        return {"generation": metrics}
    except Exception as exc:  # noqa: BLE001 - a failed measurement must not lose the adapter that was trained
        message = f"{type(exc).__name__}: {one_line(exc)}"
        print(f"train: the held-out generations failed, the adapter is kept: {message}", file=sys.stderr)
        return {"generation_error": message}


def _print_metrics(denoiser: str, m: dict) -> None:
    """The run's verdict on the console: base → adapted on the training objects and on the held-out ones."""
    def line(prefix: str, part: dict) -> str:
        out = []
        for name, where in (("training", part.get("train_objects_flow_loss")),
                            ("held-out", (part.get("held_out") or {}).get("flow_loss"))):
            if where:
                out.append(f"{where['objects']} {name} object{'s' if where['objects'] != 1 else ''} "
                           f"{where['base']:.4f} -> {where['adapted']:.4f}")
        return f"train: {denoiser}{prefix} fixed-noise flow loss, base -> adapted: " + "; ".join(out)

    if "train_objects_flow_loss" in m:
        print(line("", m))
        if "ema" in m:
            print(line(f" EMA {m['ema']['decay']:g}", m["ema"]))
    gen = (m.get("held_out") or {}).get("generation")
    if gen and gen["objects"]:
        means = gen["mean"]
        keys = [k for k in ("iou", "chamfer_l1", "fscore@0.01", "fscore@0.02", "base_color_voxel_psnr",
                                "base_color_render_psnr")
                if k in means.get("base", {})]
        shown = "; ".join(f"{k} " + " -> ".join(f"{means[v][k]:.4f}" for v in means if k in means[v]) for k in keys)
        print(f"train: {denoiser} generations of {gen['objects']} held-out object(s), "
              f"{' -> '.join(means)}: {shown}")
    for key in ("held_out_note", "evaluation_note", "evaluation_error"):
        if key in m:
            print(f"train: {denoiser}: {m[key]}")
    if "generation_error" in (m.get("held_out") or {}):
        print(f"train: {denoiser}: held-out generations failed: {m['held_out']['generation_error']}")


def _diverged(step: int, value: float) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged at step {step + 1}: the loss is {value}; nothing was saved "
                            f"(try a lower learning rate)")


def _loop(run: Run) -> None:
    req, stage, objects = run.req, run.stage, run.objects
    run.denoise.model.train()
    t0 = time.perf_counter()
    bar = counter(req.training_steps, f"train {req.denoiser}", "step", req.progress, initial=run.start)
    try:
        for step in range(run.start, req.training_steps):
            rng, gen = step_generators(req.seed, step)
            batch = [objects[i] for i in batch_indices(step, req.batch_size, len(objects), req.seed)]
            views = [int(rng.integers(o.renders)) for o in batch]
            t = sample_t(stage, len(batch), gen)
            eps = [torch.randn(o.x0.shape, generator=gen) for o in batch]
            drop = (torch.rand(len(batch), generator=gen) < P_UNCOND).tolist()
            groups = plan_micro_batches([o.tokens for o in batch], run.budget)
            weights = None
            if run.ranks is not None:  # this rank's share of the batch, each object weighted as `groups` weighs it
                groups, weights = run.ranks.plan(batch, groups, run.budget)
            run.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for group in groups:
                objs = [batch[i] for i in group]
                cond = run.conditioner(objs, [views[i] for i in group])
                keep = torch.tensor([0.0 if drop[i] else 1.0 for i in group]).view(-1, 1, 1)
                cond = cond * keep.to(cond.device)  # dropped conditions become all zeros of the same length
                if weights is None:
                    loss = run.denoise.loss(objs, t[group], [eps[i] for i in group], cond) / len(groups)
                else:
                    loss = run.denoise.loss(objs, t[group], [eps[i] for i in group], cond, [weights[i] for i in group])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise _diverged(step, value)
                loss.backward()
                total += value
            if run.ranks is not None:  # gradients, loss and stop requests summed over the ranks
                total, stopped = run.ranks.reduce(run.params, total, bool(run.stop))
                if not math.isfinite(total):
                    raise _diverged(step, total)
                if stopped:
                    run.stop.setdefault("signal", signal.SIGTERM)
            norm = run.clipper(run.params)
            if math.isfinite(norm):
                run.optimizer.step()
            if run.ema is not None:
                run.ema.update(step + 1)
            record = {"step": step + 1, "loss": total, "grad_norm": norm if math.isfinite(norm) else None,
                      "updated": math.isfinite(norm), "objects": len(batch), "tokens": sum(o.tokens for o in batch),
                      "micro_batches": len(groups), "seconds": round(time.perf_counter() - t0, 4)}
            run.log.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}")
            if run.on_step is not None:
                run.on_step(step + 1, record)
            done = step + 1
            if run.stop:
                run.save_checkpoint(done)
                raise TrainingInterrupted(f"stopped by signal {run.stop['signal']} at step {done} of "
                                          f"{req.training_steps}; checkpoint saved to {run.checkpoints.uri}, "
                                          f"rerun to resume")
            if done % req.checkpoint_every == 0 and done < req.training_steps:
                run.save_checkpoint(done)
    finally:
        bar.close()
