"""The `tiny` base is written in the official layout, deterministic, and round-trips through the strict loader;
its models run with the real latent formats; loading rejects checkpoints that do not fit."""

import hashlib
import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from trellis2_worker.models import CheckpointError, SparseTensor, from_pretrained, load_base, load_checkpoint
from trellis2_worker.models.tiny import TINY_MODELS, write_tiny_base

KEYS = ["sparse_structure_flow_model", "sparse_structure_encoder", "sparse_structure_decoder",
        "shape_slat_flow_model_512", "shape_slat_flow_model_1024", "shape_slat_encoder", "shape_slat_decoder",
        "tex_slat_flow_model_512", "tex_slat_flow_model_1024", "tex_slat_encoder", "tex_slat_decoder"]


@pytest.fixture(scope="module")
def tiny():
    return load_base("tiny")


def test_tiny_base_is_on_disk_in_the_official_layout(tiny):
    root = tiny.root
    pipeline = json.loads((root / "pipeline.json").read_text())
    models = pipeline["args"]["models"]
    assert models["sparse_structure_decoder"] == "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16"
    assert models["shape_slat_flow_model_512"] == "ckpts/slat_flow_img2shape_dit_1_3B_512_bf16"
    for rel in models.values():
        assert (root / f"{rel}.json").is_file() and (root / f"{rel}.safetensors").is_file(), rel
    assert (root / "microsoft/TRELLIS-image-large/ckpts/ss_enc_conv3d_16l8_fp16.safetensors").is_file()
    dino = pipeline["args"]["image_cond_model"]["args"]["model_name"]
    assert json.loads((root / dino / "config.json").read_text())["model_type"] == "dinov3_vit"
    assert "rope_phases" not in load_file(root / "ckpts/ss_flow_img_dit_1_3B_64_bf16.safetensors")


def test_every_model_loads_frozen_in_eval_mode_and_is_cached(tiny):
    assert tiny.model_id == "tiny"
    for key in KEYS:
        m = tiny.load(key)
        assert not m.training, key
        assert not any(p.requires_grad for p in m.parameters()), key
        assert tiny.load(key) is m
        sha = hashlib.sha256(tiny.files(key)[1].read_bytes()).hexdigest()
        assert tiny.checkpoint_sha256(key) == sha


def test_tiny_base_is_deterministic(tiny, tmp_path):
    write_tiny_base(tmp_path)
    for rel in TINY_MODELS:
        a = (tmp_path / f"{rel}.safetensors").read_bytes()
        b = (tiny.root / f"{rel}.safetensors").read_bytes()
        assert a == b, rel
    assert (tmp_path / "pipeline.json").read_text() == (tiny.root / "pipeline.json").read_text()


def test_a_local_directory_base_loads_through_the_same_path(tiny, tmp_path):
    local = tmp_path / "my-base"
    shutil.copytree(tiny.root, local)
    base = load_base(str(local))
    assert base.model_id == "my-base" and base.root == local.resolve()
    ref, got = tiny.load("tex_slat_flow_model_512"), base.load("tex_slat_flow_model_512")
    single = from_pretrained(str(local / "ckpts" / "slat_flow_imgshape2tex_dit_1_3B_512_bf16"))
    for (k, a), (_, b), (_, c) in zip(ref.state_dict().items(), got.state_dict().items(), single.state_dict().items()):
        assert torch.equal(a, b) and torch.equal(a, c), k


def test_latent_normalisations_are_per_latent(tiny):
    shape, tex = tiny.normalization("shape"), tiny.normalization("tex_slat")
    assert len(shape["mean"]) == len(shape["std"]) == len(tex["mean"]) == 32
    assert shape != tex
    assert tiny.normalization("shape_slat_flow_model_1024") == shape
    with pytest.raises(KeyError):
        tiny.normalization("sparse_structure")


def test_tiny_models_keep_the_real_latent_formats(tiny):
    torch.manual_seed(0)
    # sparse structure: 64³ occupancy -> 8×16³ latent -> 64³ logits
    occ = torch.zeros(1, 1, 64, 64, 64)
    occ[:, :, 20:40, 24:44, 10:50] = 1
    with torch.no_grad():
        z = tiny.load("sparse_structure_encoder")(occ)
        assert z.shape == (1, 8, 16, 16, 16)
        assert tiny.load("sparse_structure_decoder")(z).shape == (1, 1, 64, 64, 64)
    # shape / tex latents: 32 channels at 1/16 of the voxel resolution, identical coords for both encoders
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(1000, 3, generator=g)  # a small sphere shell in a 512³ grid
    vox = torch.unique((pts / pts.norm(dim=1, keepdim=True) * 30 + 256).long(), dim=0)
    coords = torch.cat([torch.zeros(len(vox), 1, dtype=torch.long), vox], 1).int()
    with torch.no_grad():
        shape = tiny.load("shape_slat_encoder")(SparseTensor(torch.rand(len(vox), 3), coords),
                                                 SparseTensor(torch.rand(len(vox), 3) > 0.5, coords))
        tex = tiny.load("tex_slat_encoder")(SparseTensor(torch.rand(len(vox), 6) * 2 - 1, coords))
    assert shape.feats.shape[1] == tex.feats.shape[1] == 32
    assert torch.equal(shape.coords, tex.coords)
    assert torch.equal(shape.coords, torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // 16], 1), dim=0))
    # flows on those latents with the tiny DINOv3 condition (1029 tokens at 512)
    cond = tiny.image_conditioner()([Image.new("RGB", (512, 512), (200, 40, 40))])
    assert cond.shape == (1, 1029, 64)
    t = torch.tensor([500.0])
    with torch.no_grad():
        v = tiny.load("shape_slat_flow_model_512")(shape, t, cond)
        vt = tiny.load("tex_slat_flow_model_512")(tex, t, cond, concat_cond=shape)
        vs = tiny.load("sparse_structure_flow_model")(z, t, cond)
    assert v.feats.shape == vt.feats.shape == shape.feats.shape and vs.shape == z.shape
    assert torch.isfinite(v.feats).all() and torch.isfinite(vt.feats).all()
    # decoders: predicted subdivision (shape) guides the texture decoder to the same voxels
    with torch.no_grad():
        dec = tiny.load("shape_slat_decoder")
        fields, subs = dec(shape, return_subs=True)
        tex_out = tiny.load("tex_slat_decoder")(tex, guide_subs=subs)
        up = dec.upsample(shape, 4)
    assert len(subs) == 4 and tex_out.feats.shape[1] == 6
    assert torch.equal(tex_out.coords[:, 1:], fields[0].coords) and torch.equal(up, tex_out.coords)


def test_conditioner_keeps_all_tokens_with_a_non_affine_final_norm(tiny):
    cond = tiny.image_conditioner()
    img = Image.new("RGB", (300, 300), (10, 120, 250))
    ours = cond([img])  # resized to 512 with LANCZOS
    x = torch.from_numpy(__import__("numpy").asarray(img.resize((512, 512), Image.LANCZOS), dtype="float32") / 255)
    x = (x.permute(2, 0, 1)[None] - cond.mean) / cond.std
    with torch.no_grad():
        hf = cond.model(pixel_values=x).last_hidden_state  # ends with the model's own affine LayerNorm
    norm = cond.model.norm
    assert norm.eps == 1e-5
    assert torch.allclose(ours, (hf - norm.bias) / norm.weight, atol=1e-3)


def test_loading_is_strict_and_names_the_offending_keys(tiny, tmp_path):
    j, w = tiny.files("shape_slat_flow_model_512")
    state = load_file(w)
    broken = dict(state)
    broken.pop("blocks.1.mlp.mlp.0.bias")
    broken["blocks.0.extra.weight"] = torch.zeros(2)
    save_file(broken, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match=r"blocks\.1\.mlp\.mlp\.0\.bias.*blocks\.0\.extra\.weight"):
        load_checkpoint(j, tmp_path / "bad.safetensors")
    reshaped = dict(state)
    reshaped["input_layer.weight"] = torch.zeros(3, 3)
    save_file(reshaped, tmp_path / "shape.safetensors")
    with pytest.raises(CheckpointError, match="input_layer.weight"):
        load_checkpoint(j, tmp_path / "shape.safetensors")


def test_rope_phases_may_be_absent_and_are_recomputed(tiny):
    model = tiny.load("sparse_structure_flow_model")
    fresh = load_checkpoint(*tiny.files("sparse_structure_flow_model"))
    assert torch.equal(model.rope_phases, fresh.rope_phases)
    assert model.rope_phases.shape == (4096, 16) and model.rope_phases[:, -1].eq(1).all()


def test_a_hub_base_resolves_files_like_the_reference(tiny, tmp_path, monkeypatch):
    """Offline stand-in for the hub: the base repo holds pipeline.json and ckpts/, the SS VAE is only found through
    the fallback into microsoft/TRELLIS-image-large, and the token reaches every download."""
    import huggingface_hub

    hub = tmp_path / "hub"
    shutil.copytree(tiny.root, hub / "microsoft/TRELLIS.2-4B", ignore=shutil.ignore_patterns("microsoft"))
    shutil.copytree(tiny.root / "microsoft/TRELLIS-image-large", hub / "microsoft/TRELLIS-image-large")
    calls = []

    def fake_download(repo_id, filename, token=None, **kw):
        calls.append((repo_id, filename, token))
        path = hub / repo_id / filename
        if not path.is_file():
            raise FileNotFoundError(f"404 {repo_id}/{filename}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    base = load_base("microsoft/TRELLIS.2-4B", token="secret-token")
    assert base.model_id == "microsoft/TRELLIS.2-4B"
    dec = base.load("sparse_structure_decoder")
    assert type(dec).__name__ == "SparseStructureDecoder"
    assert ("microsoft/TRELLIS.2-4B", "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16.json",
            "secret-token") in calls
    assert ("microsoft/TRELLIS-image-large", "ckpts/ss_dec_conv3d_16l8_fp16.safetensors", "secret-token") in calls
    assert base.checkpoint_sha256("shape_slat_encoder") == tiny.checkpoint_sha256("shape_slat_encoder")
    assert all(tok == "secret-token" for _, _, tok in calls)
    missing = base.pipeline["args"]["models"]
    missing["tex_slat_decoder"] = "ckpts/not_there"
    with pytest.raises(FileNotFoundError, match="not_there"):
        base.load("tex_slat_decoder")
