"""`trellis2-worker train`: one LoRA adapter for one denoiser from a preprocessed dataset."""

from __future__ import annotations

import argparse
import os

from trellis2_worker import DEFAULT_BASE
from trellis2_worker.evaluate.metrics import DEFAULT_SAMPLES
from trellis2_worker.train.ema import DEFAULT_EMA_DECAY
from trellis2_worker.train.recipe import BATCH_SIZE, RESOLUTIONS, STAGES
from trellis2_worker.train.request import EVAL_OBJECTS
from trellis2_worker.train.split import HELD_OUT_FRACTION, MIN_OBJECTS_TO_HOLD_OUT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a LoRA adapter for one TRELLIS.2 denoiser",
        description="Trains a LoRA on one TRELLIS.2 flow model from a preprocessed dataset zip and writes "
                    "<denoiser>.safetensors with its record (.json), loss log (.loss.jsonl) and curve (.loss.png) "
                    "beside it. A checkpoint (.checkpoint.safetensors) is kept there while it runs; rerunning the "
                    "same command after a stop resumes from it.")
    p.add_argument("--dataset", required=True, help="preprocessed dataset: local .zip/dir or s3:// / https:// URI")
    p.add_argument("--dataset-record", default=None,
                   help="Prepare's record of a user's preprocessed dataset (bytes, sha256): the dataset must be "
                   "those bytes (exit 2 otherwise)")
    p.add_argument("--denoiser", required=True, choices=sorted(STAGES))
    p.add_argument("--resolution", type=int, default=512, choices=RESOLUTIONS)
    p.add_argument("--rank", type=int, default=32, help="LoRA rank (alpha = rank)")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--training-steps", type=int, default=1000)
    p.add_argument("--base", default=DEFAULT_BASE, help="HF repo id, local dir, or 'tiny'")
    p.add_argument("--output", required=True, help="where the adapter goes (URI ending in .safetensors)")
    p.add_argument("--report", help="where the JSON report goes (URI)")
    # The environment default lets a CPU try-out (bin/demo, the local runner's tests) take small steps without
    # changing the worker command line that the state machine and the local runner share.
    p.add_argument("--batch-size", type=int, default=int(os.environ.get("TRELLIS2_BATCH_SIZE", BATCH_SIZE)),
                   help="objects per optimiser step (default: $TRELLIS2_BATCH_SIZE, else the reference's 8)")
    p.add_argument("--max-tokens-per-micro-batch", type=int, default=None,
                   help="memory budget: latent tokens per forward/backward (default: fits an 80 GB GPU)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    p.add_argument("--eval-objects", type=int, default=EVAL_OBJECTS,
                   help="objects per evaluated set after training (training objects for the fixed-noise loss; "
                        "held-out objects for it and for base-vs-adapter generations); 0 turns the evaluation off")
    p.add_argument("--eval-samples", type=int, default=DEFAULT_SAMPLES,
                   help="surface samples per mesh in the geometry stage's Chamfer distance and F-score")
    p.add_argument("--held-out-fraction", type=float, default=HELD_OUT_FRACTION,
                   help=f"share of the dataset's objects never trained on, chosen by content hash and rounded up "
                        f"(default {HELD_OUT_FRACTION}; none when the dataset has fewer than "
                        f"{MIN_OBJECTS_TO_HOLD_OUT} objects)")
    p.add_argument("--ema-decay", type=float, default=0.0, nargs="?", const=DEFAULT_EMA_DECAY,
                   help=f"also keep an EMA of the LoRA weights, saved as <denoiser>.ema.safetensors and evaluated "
                        f"alike; bare --ema-decay means {DEFAULT_EMA_DECAY} (default 0: off)")
    p.add_argument("--condition-cache-gb", type=float, default=4.0,
                   help="memory for DINOv3 features of views already seen (on the training device)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--world-size", type=int, default=None,
                   help="data-parallel processes, one per GPU, started by the worker (default: every visible GPU; "
                        "one on CPU); the global batch, adapter and metrics are those of one process")
    p.add_argument("--backend", default=None,
                   help="torch.distributed backend of a data-parallel run, gloo or nccl (default: nccl on GPU, "
                        "gloo on CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    from trellis2_worker.ingest import recorded_input
    from trellis2_worker.train.parallel import resolve_world_size, train_data_parallel
    from trellis2_worker.train.request import TrainRequest
    from trellis2_worker.train.trainer import RUN_DETAILS, train

    # A user's preprocessed dataset must be the bytes Prepare inspected (fetched once, checked, then trained on).
    with recorded_input(args.dataset, args.dataset_record) as dataset:
        world_size = resolve_world_size(args.world_size, args.device)
        run_it = train if world_size == 1 else (lambda r: train_data_parallel(r, world_size, args.backend))
        report = run_it(TrainRequest(
            dataset=dataset, denoiser=args.denoiser, resolution=args.resolution, rank=args.rank,
            learning_rate=args.learning_rate, training_steps=args.training_steps, output=args.output,
            base=args.base, batch_size=args.batch_size, max_tokens_per_micro_batch=args.max_tokens_per_micro_batch,
            checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device,
            gradient_checkpointing=args.gradient_checkpointing, eval_objects=args.eval_objects,
            held_out_fraction=args.held_out_fraction, ema_decay=args.ema_decay, eval_samples=args.eval_samples,
            condition_cache_gb=args.condition_cache_gb, progress=args.progress))
    # The report goes where the record is (the orchestrator reads one file per stage): the record, nothing more.
    return {k: v for k, v in report.items() if k not in RUN_DETAILS}
