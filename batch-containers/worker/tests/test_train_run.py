"""Training on the tiny base end to end: the adapter learns, its files say what it is, it reloads exactly, a stopped
run resumes to the same adapter, and failures stop cleanly with the exit codes the orchestrator relies on."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import make_dataset  # noqa: E402

from trellis2_worker.errors import InputError  # noqa: E402
from trellis2_worker.train import (  # noqa: E402
    TrainingDiverged,
    TrainingInterrupted,
    TrainRequest,
    evaluate_adapter,
    load_adapter,
    read_adapter_metadata,
    train,
)

REPO = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(base, tmp_path_factory):
    # Three small objects and one above the 8192-token limit of 512, which training must skip and report.
    return make_dataset(tmp_path_factory.mktemp("ds") / "dataset.zip", [40, 64, 90, 8200], base=base)


def request(dataset, out: Path, **kw) -> TrainRequest:
    args = dict(dataset=str(dataset), denoiser="geometry", resolution=512, rank=8, learning_rate=1e-2,
                training_steps=40, output=str(out / "geometry.safetensors"), base="tiny", batch_size=3,
                progress=False, eval_objects=3)
    args.update(kw)
    return TrainRequest(**args)


@pytest.fixture(scope="module")
def geometry_run(base, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("geometry")
    report = train(request(dataset, out), base=base)
    return out, report


def test_the_training_loss_falls(geometry_run):
    out, _ = geometry_run
    log = [json.loads(line) for line in (out / "geometry.loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    first = sum(r["loss"] for r in log[:10]) / 10
    last = sum(r["loss"] for r in log[-10:]) / 10
    assert last < 0.92 * first, (first, last)
    assert (out / "geometry.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_adapter_beats_the_base_on_its_training_objects_and_the_record_says_so(geometry_run):
    out, report = geometry_run
    record = json.loads((out / "geometry.json").read_text())
    m = record["metrics"]
    fit = m["train_objects_flow_loss"]
    assert fit["adapted"] < 0.95 * fit["base"]
    assert fit["objects"] == 3 and m["objects_trained"] == 3 and m["objects_skipped"] == 1
    # four objects are too few to hold one out, and the record says so instead of showing a held-out figure
    assert "held_out" not in m and m["objects_held_out"] == 0 and "fewer than the 5" in m["held_out_note"]
    assert record["denoiser"] == "geometry" and record["resolution"] == 512 and record["rank"] == 8
    assert record["training_steps"] == 40 and record["learning_rate"] == 1e-2
    f = record["lora_file"]
    assert f["file_name"] == "geometry.safetensors" and f["url"] == str(out / "geometry.safetensors")
    assert f["file_size"] == (out / "geometry.safetensors").stat().st_size
    c = record["comfyui_lora_file"]  # the same adapter for ComfyUI's LoRA loader, beside it
    assert c["file_name"] == "geometry.comfyui.safetensors" and c["url"] == str(out / "geometry.comfyui.safetensors")
    assert c["file_size"] == (out / "geometry.comfyui.safetensors").stat().st_size
    with safe_open(str(out / "geometry.comfyui.safetensors"), framework="pt") as fc:
        comfy_keys = list(fc.keys())
    assert all(k.startswith("diffusion_model.img2shape_512.blocks.") for k in comfy_keys)
    assert sum(k.endswith(".alpha") for k in comfy_keys) == len(comfy_keys) // 3
    assert {k: report[k] for k in record} == record  # the report carries the record
    assert [s["tokens"] for s in report["skipped_objects"]] == [8200]
    assert not (out / "geometry.checkpoint.safetensors").exists()  # done: no stale checkpoint left behind


def test_the_adapter_file_is_peft_format_with_what_it_is_for_in_its_header(geometry_run, base, dataset):
    out, _ = geometry_run
    meta = read_adapter_metadata(out / "geometry.safetensors")
    assert meta["denoiser"] == "geometry" and meta["resolution"] == 512 and meta["rank"] == 8 and meta["alpha"] == 8
    assert meta["training_steps"] == 40 and meta["learning_rate"] == 1e-2 and meta["format_version"] == 1
    assert meta["base_model"] == "tiny"
    assert meta["base_checkpoint_sha256"] == base.checkpoint_sha256("shape_slat_flow_model_512")
    import hashlib

    assert meta["dataset_sha256"] == hashlib.sha256(Path(dataset).read_bytes()).hexdigest()
    assert meta["target_modules"] == ["self_attn.to_qkv", "self_attn.to_out", "cross_attn.to_q", "cross_attn.to_kv",
                                      "cross_attn.to_out", "mlp.mlp.0", "mlp.mlp.2"]
    with safe_open(str(out / "geometry.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    blocks = base.load("shape_slat_flow_model_512").num_blocks
    assert len(keys) == blocks * 7 * 2
    assert "base_model.model.blocks.0.self_attn.to_qkv.lora_A.weight" in keys
    assert f"base_model.model.blocks.{blocks - 1}.mlp.mlp.2.lora_B.weight" in keys


def test_loading_the_saved_adapter_reproduces_the_trained_model_exactly(geometry_run, base, dataset):
    out, _ = geometry_run
    record = json.loads((out / "geometry.json").read_text())
    again = evaluate_adapter(out / "geometry.safetensors", dataset, base, device="cpu", eval_objects=3)
    # Computed from the saved file, the fixed-noise loss is bit-for-bit what the trained model gave in the run.
    assert again["train_objects_flow_loss"] == record["metrics"]["train_objects_flow_loss"]


def test_an_adapter_refuses_to_load_into_another_stages_model(geometry_run, base):
    out, _ = geometry_run
    tex = base.load("tex_slat_flow_model_512")
    with pytest.raises(InputError, match="trained for the 'geometry' denoiser and cannot be loaded into the 'texture'"):
        load_adapter(tex, out / "geometry.safetensors", "texture", 512)
    shape_1024 = base.load("shape_slat_flow_model_1024")
    with pytest.raises(InputError, match="resolution 512 and cannot be loaded into the 1024 model"):
        load_adapter(shape_1024, out / "geometry.safetensors", "geometry", 1024)
    assert not any("lora" in n for n, _ in tex.named_parameters())  # a refusal leaves the model untouched


def test_a_run_stopped_by_sigterm_resumes_to_the_same_adapter(base, dataset, tmp_path):
    steps = dict(training_steps=6, checkpoint_every=2)
    whole = tmp_path / "whole"
    train(request(dataset, whole, **steps), base=base)

    parts = tmp_path / "parts"

    def stop_at_3(step, record):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # what Batch sends on a job stop or a spot reclaim

    with pytest.raises(TrainingInterrupted, match="step 3 of 6") as stopped:
        train(request(dataset, parts, **steps), base=base, on_step=stop_at_3)
    assert stopped.value.exit_code == 143
    assert (parts / "geometry.checkpoint.safetensors").exists() and not (parts / "geometry.safetensors").exists()

    report = train(request(dataset, parts, **steps), base=base)
    assert report["resumed_from_step"] == 3
    with safe_open(str(whole / "geometry.safetensors"), framework="pt") as a, \
            safe_open(str(parts / "geometry.safetensors"), framework="pt") as b:
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():
            assert torch.equal(a.get_tensor(k), b.get_tensor(k)), k
    log = [json.loads(x) for x in (parts / "geometry.loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    # byte for byte: a rerun reproduces the files (when it ran lives in the record, not in the adapter)
    for name in ("geometry.safetensors", "geometry.comfyui.safetensors"):
        assert (whole / name).read_bytes() == (parts / name).read_bytes(), name
    assert not (parts / "geometry.checkpoint.safetensors").exists()
    assert json.loads((parts / "geometry.json").read_text())["created_at"]


def test_a_diverging_run_stops_and_saves_nothing(base, dataset, tmp_path):
    with pytest.raises(TrainingDiverged, match="training diverged"):
        train(request(dataset, tmp_path, learning_rate=1e9, training_steps=30, checkpoint_every=1), base=base)
    assert list(tmp_path.iterdir()) == []


def test_texture_and_sparse_structure_train_their_own_models(base, dataset, tmp_path):
    tex = train(request(dataset, tmp_path, denoiser="texture", output=str(tmp_path / "texture.safetensors"),
                        training_steps=3, eval_objects=1), base=base)
    ss = train(request(dataset, tmp_path, denoiser="sparse_structure", batch_size=2, training_steps=2,
                       output=str(tmp_path / "sparse_structure.safetensors"), eval_objects=1), base=base)
    assert read_adapter_metadata(tmp_path / "texture.safetensors")["model_key"] == "tex_slat_flow_model_512"
    assert read_adapter_metadata(tmp_path / "sparse_structure.safetensors")["model_key"] == "sparse_structure_flow_model"
    for name, submodel in (("texture", "shape2txt"), ("sparse_structure", "structure_model")):
        with safe_open(str(tmp_path / f"{name}.comfyui.safetensors"), framework="pt") as fc:
            assert all(k.startswith(f"diffusion_model.{submodel}.blocks.") for k in fc.keys())
    assert tex["comfyui_lora_file"]["file_name"] == "texture.comfyui.safetensors"
    assert "512 texture flow" in read_adapter_metadata(tmp_path / "texture.comfyui.safetensors")["comfyui_warning"]
    assert tex["skipped_objects"] and not ss["skipped_objects"]  # the SS latent has no token limit
    assert ss["metrics"]["objects_trained"] == 4


def _cli(*args, cwd):
    return subprocess.run([str(REPO / "bin" / "trellis2-worker"), "train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_the_command_writes_the_adapter_and_report(dataset, tmp_path):
    out = tmp_path / "adapters" / "geometry.safetensors"
    r = _cli("--dataset", str(dataset), "--denoiser", "geometry", "--resolution", "512", "--rank", "4",
             "--learning-rate", "1e-3", "--training-steps", "3", "--base", "tiny", "--output", str(out),
             "--report", str(tmp_path / "report.json"), "--batch-size", "2", "--eval-objects", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["lora_file"]["file_name"] == "geometry.safetensors" and out.exists()
    assert json.loads((tmp_path / "adapters" / "geometry.json").read_text())["metrics"] == report["metrics"]
    # The orchestrator keeps the report as the adapter record, so it is the record: no local paths beside its files.
    assert report == json.loads((tmp_path / "adapters" / "geometry.json").read_text())
    assert {report["loss_log_file"]["file_name"], report["loss_curve_file"]["file_name"]} == {
        "geometry.loss.jsonl", "geometry.loss.png"}
    assert "3/3" in r.stderr and "loss=" in r.stderr  # the progress bar
    # and the evaluation's, counted to the end (base and adapted on each set's object)
    assert any("evaluate flow loss" in line and "100%" in line for line in r.stderr.replace("\r", "\n").splitlines())


@pytest.mark.parametrize("problem", ["missing", "not_a_zip", "wrong_resolution", "other_encoders"])
def test_bad_input_ends_with_exit_code_2_and_an_error_report(dataset, tmp_path, problem):
    from trellis2_worker.cli import main

    path = tmp_path / "dataset.zip"
    resolution = "512"
    if problem == "not_a_zip":
        path.write_bytes(b"this is not a zip")
    elif problem == "wrong_resolution":
        path, resolution = dataset, "1024"  # a 512 dataset has no 1024 latents
    elif problem == "other_encoders":  # latents from other encoder weights mean nothing to this base's flows
        make_dataset(path, [30], checkpoints={"shape_slat_encoder": "0" * 64, "tex_slat_encoder": "0" * 64})
    code = main(["train", "--dataset", str(path), "--denoiser", "texture", "--base", "tiny", "--resolution",
                 resolution, "--training-steps", "2", "--output", str(tmp_path / "texture.safetensors"),
                 "--report", str(tmp_path / "report.json"), "--no-progress"])
    assert code == 2
    error = json.loads((tmp_path / "report.json").read_text())["error"]
    assert error and "\n" not in error
    assert not (tmp_path / "texture.safetensors").exists()
    if problem == "other_encoders":
        assert "encoded with other shape_slat_encoder weights" in error


def test_running_out_of_memory_is_reported_as_a_retryable_failure_and_saves_nothing(base, dataset, tmp_path,
                                                                                   monkeypatch):
    from trellis2_worker.errors import WorkerError
    from trellis2_worker.train import denoise

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(denoise.Denoise, "loss", oom)
    with pytest.raises(WorkerError, match="out of memory training geometry") as err:
        train(request(dataset, tmp_path, training_steps=2), base=base)
    assert err.value.exit_code == 1 and "max-tokens-per-micro-batch" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    assert not any("lora" in n for n, _ in base.load("shape_slat_flow_model_512").named_parameters())
