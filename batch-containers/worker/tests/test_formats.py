"""Adapters outside this project: a PEFT directory that PEFT alone loads, a ComfyUI file with the keys ComfyUI's
generic LoRA loader maps for its TRELLIS.2 model, and a merged base that loads like the original and computes what
base + adapter computes. Everything runs on the tiny base's real flow classes."""

import json

import pytest
import torch
from safetensors import safe_open

from trellis2_worker.cli import main
from trellis2_worker.errors import InputError
from trellis2_worker.formats import COMFYUI_SUBMODELS, convert, read_native
from trellis2_worker.models import load_base, load_checkpoint
from trellis2_worker.train import attach_lora, load_adapter, save_adapter

SS_KEY = "sparse_structure_flow_model"
# Taken from ComfyUI (docs/adapter-formats.md): the attribute of its TRELLIS.2 model that holds each flow.
COMFYUI_TABLE = {("sparse_structure", None): "structure_model", ("geometry", 512): "img2shape_512",
                 ("geometry", 1024): "img2shape", ("texture", 512): "shape2txt", ("texture", 1024): "shape2txt"}


pytestmark = pytest.mark.usefixtures("one_thread")


def fresh_ss(base):
    """An SS flow of its own (not the per-process cached one, which other tests attach adapters to)."""
    return load_checkpoint(*base.files(SS_KEY)).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 8, 16, 16, 16, generator=g), torch.tensor([700.0]), torch.randn(1, 5, 64, generator=g)


@pytest.fixture(scope="module")
def ss_adapter(base, tmp_path_factory):
    """A sparse-structure adapter with non-zero B and alpha != rank, so that a wrong alpha/rank scale shows."""
    model = fresh_ss(base)
    torch.manual_seed(0)
    peft = attach_lora(model, rank=4, alpha=8)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("adapter") / "sparse_structure.safetensors"
    save_adapter(peft, path, {"denoiser": "sparse_structure", "resolution": 512, "model_key": SS_KEY, "rank": 4,
                              "alpha": 8, "base_model": "tiny", "base_checkpoint_sha256": base.checkpoint_sha256(SS_KEY)})
    return path


def adapted_output(base, adapter, strength=1.0):
    model = load_adapter(fresh_ss(base), adapter, "sparse_structure")
    if strength != 1.0:
        from peft.tuners.lora import LoraLayer

        for m in model.modules():
            if isinstance(m, LoraLayer):
                m.set_scale("default", strength)
    with torch.no_grad():
        return model(*inputs())


def test_peft_directory_loads_with_peft_alone_and_gives_the_trainers_output(base, ss_adapter, tmp_path):
    from peft import PeftModel

    report = convert(str(ss_adapter), "peft", str(tmp_path / "peft"))
    assert sorted(report["files"]) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["peft_type"]) == (4, 8, "LORA")
    loaded = PeftModel.from_pretrained(fresh_ss(base), str(tmp_path / "peft")).eval()
    with torch.no_grad():
        out = loaded(*inputs())
        plain = fresh_ss(base)(*inputs())
    assert torch.equal(out, adapted_output(base, ss_adapter))
    assert not torch.allclose(out, plain)  # the adapter does change the output
    with safe_open(str(tmp_path / "peft" / "adapter_model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["denoiser"] == "sparse_structure" and meta["rank"] == "4"
    assert meta["base_checkpoint_sha256"] == base.checkpoint_sha256(SS_KEY)


def test_comfyui_submodels_are_comfyuis_own_names():
    assert COMFYUI_SUBMODELS == COMFYUI_TABLE


def test_comfyui_file_has_comfyui_keys_one_alpha_per_module_and_its_math_gives_the_adapter(base, ss_adapter, tmp_path):
    out = tmp_path / "ss.comfyui.safetensors"
    report = convert(str(ss_adapter), "comfyui", str(out))
    assert report["submodel"] == "structure_model" and "warnings" not in report
    with safe_open(str(out), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    prefix = "diffusion_model.structure_model."
    assert all(k.startswith(prefix) for k in tensors)
    assert "diffusion_model.structure_model.blocks.0.self_attn.to_qkv.lora_up.weight" in tensors
    modules = {k.rsplit(".", 2)[0] for k in tensors if k.endswith((".lora_up.weight", ".lora_down.weight"))}
    alphas = {k[: -len(".alpha")] for k in tensors if k.endswith(".alpha")}
    assert modules == alphas and len(modules) == len(read_native(ss_adapter).modules)
    assert len(tensors) == 3 * len(modules)
    assert meta["denoiser"] == "sparse_structure" and meta["rank"] == "4" and meta["comfyui_submodel"] == "structure_model"

    # ComfyUI's LoRA patch, as its loader computes it: W += strength * (alpha / rank) * up @ down, rank = rows of down.
    model = fresh_ss(base)
    state = model.state_dict()
    for m in modules:
        key = m[len(prefix):] + ".weight"
        up, down = tensors[f"{m}.lora_up.weight"], tensors[f"{m}.lora_down.weight"]
        assert key in state and (up @ down).shape == state[key].shape
        state[key] = state[key] + (tensors[f"{m}.alpha"].item() / down.shape[0]) * (up @ down)
    model.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs()), adapted_output(base, ss_adapter), rtol=1e-5, atol=1e-5)


def test_a_512_texture_adapter_goes_to_comfyuis_one_texture_flow_with_a_warning(base, tmp_path):
    key = "tex_slat_flow_model_512"
    model = load_checkpoint(*base.files(key))
    peft = attach_lora(model, rank=2)
    save_adapter(peft, tmp_path / "texture.safetensors", {"denoiser": "texture", "resolution": 512, "model_key": key,
                                                          "rank": 2, "alpha": 2})
    report = convert(str(tmp_path / "texture.safetensors"), "comfyui", str(tmp_path / "t.comfyui.safetensors"))
    assert report["submodel"] == "shape2txt" and "1024" in report["warnings"][0]
    with safe_open(str(tmp_path / "t.comfyui.safetensors"), framework="pt") as f:
        assert all(k.startswith("diffusion_model.shape2txt.blocks.") for k in f.keys())
        assert "512 texture flow" in f.metadata()["comfyui_warning"]


@pytest.mark.parametrize("strength", [0.7, 0.0])
def test_merged_base_has_the_base_files_and_computes_base_plus_adapter(base, ss_adapter, tmp_path, strength):
    out = tmp_path / "merged"
    report = convert(str(ss_adapter), "merged", str(out), scale=strength)
    assert report["model_key"] == SS_KEY and report["modules_merged"] == len(read_native(ss_adapter).modules)
    merged = load_base(str(out))
    j, w = merged.files(SS_KEY)
    oj, ow = base.files(SS_KEY)
    assert j.read_text() == oj.read_text()
    with safe_open(str(w), framework="pt") as f, safe_open(str(ow), framework="pt") as g:
        assert set(f.keys()) == set(g.keys())
        changed = set()
        for k in g.keys():
            a, b = f.get_tensor(k), g.get_tensor(k)
            assert a.dtype == b.dtype and a.shape == b.shape
            if not torch.equal(a, b):
                changed.add(k)
        header = json.loads(f.metadata()["trellis2_merge"])
    if strength == 0.0:
        assert not changed  # strength 0 is the base, bit for bit
    else:
        assert changed == {f"{m}.weight" for m in read_native(ss_adapter).modules}
    assert header["denoiser"] == "sparse_structure" and header["rank"] == 4 and header["strength"] == strength
    assert header["original_checkpoint_sha256"] == base.checkpoint_sha256(SS_KEY)
    # Every other model of the base is there unchanged: the encoders a dataset records, the other flows, DINOv3.
    for key in ("sparse_structure_encoder", "shape_slat_encoder", "tex_slat_flow_model_1024"):
        assert merged.checkpoint_sha256(key) == base.checkpoint_sha256(key)
    assert (out / "pipeline.json").read_text() == (base.root / "pipeline.json").read_text()
    assert (out / "dinov3-tiny" / "config.json").is_file()

    model = load_checkpoint(j, w).eval()
    with torch.no_grad():
        got = model(*inputs())
    torch.testing.assert_close(got, adapted_output(base, ss_adapter, strength), rtol=1e-5, atol=1e-5)


def test_merging_refuses_another_base_checkpoint_and_a_used_directory(base, ss_adapter, tmp_path):
    from safetensors.torch import save_file

    native = read_native(ss_adapter)
    save_file(native.peft_state(), str(tmp_path / "other.safetensors"),
              metadata={**{k: v if isinstance(v, str) else json.dumps(v) for k, v in native.metadata.items()},
                        "base_checkpoint_sha256": "0" * 64})
    with pytest.raises(InputError, match="another sparse_structure_flow_model checkpoint"):
        convert(str(tmp_path / "other.safetensors"), "merged", str(tmp_path / "m1"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(InputError, match="not an empty directory"):
        convert(str(ss_adapter), "merged", str(tmp_path / "used"))


def test_convert_command_reports_and_refuses_bad_input_with_exit_2(ss_adapter, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(["convert", str(ss_adapter), "--to", "comfyui", "--output", str(tmp_path / "c.safetensors"),
                 "--report", str(report)]) == 0
    assert json.loads(report.read_text())["adapter"]["rank"] == 4
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    cases = [
        [str(tmp_path / "junk.safetensors"), "--to", "peft", "--output", str(tmp_path / "p")],
        [str(ss_adapter), "--to", "peft", "--output", str(tmp_path / "p"), "--scale", "0.5"],
        [str(ss_adapter), "--to", "comfyui", "--output", str(tmp_path / "c.bin")],
        [str(tmp_path / "missing.safetensors"), "--to", "comfyui", "--output", str(tmp_path / "c.safetensors")],
    ]
    for args in cases:
        capsys.readouterr()
        assert main(["convert", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("trellis2-worker: ") and "\n" not in err and "Traceback" not in err


def test_generating_with_the_merged_base_equals_generating_with_the_adapter_at_that_strength(base, tmp_path):
    # The generate package's shape stage (the guided flow sampler over the base's pipeline.json settings) on the
    # merged base with no adapter, against the original base with the adapter at the same strength. The full
    # `run` adds only the unchanged decoders and takes minutes on the tiny base on a CPU.
    from peft.tuners.lora import LoraLayer

    from trellis2_worker.generate import Trellis2Pipeline

    key, strength = "shape_slat_flow_model_512", 0.6
    peft = attach_lora(load_checkpoint(*base.files(key)), rank=4, alpha=8)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    save_adapter(peft, tmp_path / "geometry.safetensors", {
        "denoiser": "geometry", "resolution": 512, "model_key": key, "rank": 4, "alpha": 8, "base_model": "tiny",
        "base_checkpoint_sha256": base.checkpoint_sha256(key)})
    convert(str(tmp_path / "geometry.safetensors"), "merged", str(tmp_path / "merged"), scale=strength)
    adapted = load_adapter(load_checkpoint(*base.files(key)).eval(), tmp_path / "geometry.safetensors", "geometry", 512)
    for m in adapted.modules():
        if isinstance(m, LoraLayer):
            m.set_scale("default", strength)
    cond = torch.randn(1, 7, 64, generator=torch.Generator().manual_seed(3))
    coords = torch.tensor([[0, x, y, z] for x in range(3) for y in range(3) for z in range(4)], dtype=torch.int32)

    def shape(pipeline):
        torch.manual_seed(5)
        with torch.no_grad():
            return pipeline.sample_shape_slat(cond, key, coords).feats

    merged = shape(Trellis2Pipeline(load_base(str(tmp_path / "merged"))))
    with_adapter = shape(Trellis2Pipeline(base, models={key: adapted}))
    plain = shape(Trellis2Pipeline(base, models={key: load_checkpoint(*base.files(key)).eval()}))
    torch.testing.assert_close(merged, with_adapter, rtol=1e-4, atol=1e-4)
    assert (merged - plain).abs().max() > 0.05  # the adapter does change what is generated
