"""Building blocks behave as docs/models.md lays out: sparse conv, S2C/C2S orderings, RoPE layout, per-object attention,
precision rules, gradient checkpointing."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from trellis2_worker.models import (SparseTensor, build_model, channel_to_spatial, load_state_dict_strict,
                                    spatial_to_channel)
from trellis2_worker.models import sparse
from trellis2_worker.models.sparse import SparseConv3d, dense_to_sparse_reference_conv
from trellis2_worker.models.transformer import apply_rope, rope_phases, varlen_attention


def random_coords(n, size, batches, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(batches):
        c = torch.unique(torch.randint(0, size, (n, 3), generator=g), dim=0)
        rows.append(torch.cat([torch.full((c.shape[0], 1), b), c], dim=1))
    return torch.cat(rows).to(torch.int32)


def small_flow(**over):
    args = dict(resolution=32, in_channels=8, out_channels=8, model_channels=64, cond_channels=16, num_blocks=2,
                num_heads=2, mlp_ratio=2.0, pe_mode="rope", share_mod=True, initialization="scaled",
                qk_rms_norm=True, qk_rms_norm_cross=True, dtype="float32")
    args.update(over)
    torch.manual_seed(0)
    model = build_model({"name": "SLatFlowModel", "args": args})
    with torch.no_grad():  # the reference init zeroes the output layer; give every path a signal
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model


# -- sparse convolution ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lookup", ["dense volume", "sorted search"])
def test_sparse_conv_equals_dense_conv3d_at_active_voxels(lookup, monkeypatch):
    if lookup == "sorted search":
        monkeypatch.setattr(sparse, "DENSE_LOOKUP_CELLS", 0)
    coords = random_coords(300, 9, batches=2)
    torch.manual_seed(1)
    conv = SparseConv3d(5, 7)
    x = SparseTensor(torch.randn(coords.shape[0], 5), coords)
    ref = dense_to_sparse_reference_conv(x, conv.weight, conv.bias)
    out = conv(x)
    assert torch.equal(out.coords, coords)
    assert (out.feats - ref).abs().max() < 1e-5


def test_sparse_conv_weight_axes_follow_x_y_z():
    # One voxel at the origin and a neighbour at +x: only the weight tap [:, 2, 1, 1, :] reads it.
    coords = torch.tensor([[0, 1, 1, 1], [0, 2, 1, 1]], dtype=torch.int32)
    conv = SparseConv3d(1, 1, bias=True)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 2, 1, 1, 0] = 1.0
    out = conv(SparseTensor(torch.tensor([[3.0], [5.0]]), coords))
    assert out.feats[:, 0].tolist() == [5.0, 0.0]


# -- S2C / C2S -------------------------------------------------------------------------------------------------
def test_s2c_sorts_parents_and_places_children_by_slot():
    # children of parent (0,1,0,0): slots s = x%2 + 2(y%2) + 4(z%2); plus a parent (0,0,0,0) given out of order
    coords = torch.tensor([[0, 3, 1, 0], [0, 2, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.int32)
    feats = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    out = spatial_to_channel(SparseTensor(feats, coords))
    assert out.coords.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    expect = torch.zeros(3, 16)
    expect[1, 3 * 2:3 * 2 + 2] = torch.tensor([1.0, 10.0])   # (3,1,0): s = 1 + 2 = 3
    expect[1, 4 * 2:4 * 2 + 2] = torch.tensor([2.0, 20.0])   # (2,0,1): s = 4
    expect[0, 0:2] = torch.tensor([3.0, 30.0])
    expect[2, 0:2] = torch.tensor([4.0, 40.0])
    assert torch.equal(out.feats, expect)


def test_c2s_emits_children_parent_major_and_inverts_s2c():
    coords = random_coords(200, 8, batches=2, seed=3)
    feats = torch.randn(coords.shape[0], 4)
    x = SparseTensor(feats, coords)
    parents = spatial_to_channel(x)
    occupied = parents.feats.reshape(-1, 8, 4).abs().sum(-1) > 0
    children = channel_to_spatial(parents, occupied)
    # parent-major, slot ascending
    pidx = torch.repeat_interleave(torch.arange(parents.coords.shape[0]), occupied.sum(1))
    assert torch.equal(children.coords[:, 1:].long() // 2, parents.coords[pidx, 1:].long())
    c = children.coords.long()
    slot = c[:, 1] % 2 + 2 * (c[:, 2] % 2) + 4 * (c[:, 3] % 2)
    for p in range(parents.coords.shape[0]):
        s = slot[pidx == p]
        assert torch.all(s[1:] > s[:-1])
    # same voxels and features as the input (in C2S order)
    key = lambda cc: ((cc[:, 0] * 64 + cc[:, 1]) * 64 + cc[:, 2]) * 64 + cc[:, 3]
    order_in, order_out = torch.argsort(key(coords.long())), torch.argsort(key(c))
    assert torch.equal(coords[order_in], children.coords[order_out])
    assert torch.equal(feats[order_in], children.feats[order_out])


# -- RoPE ------------------------------------------------------------------------------------------------------
def test_rope_layout_is_x_y_z_then_identity_padding():
    pos = torch.tensor([[3, 5, 7]])
    ph = rope_phases(pos, 128)
    assert ph.shape == (1, 64) and ph.dtype == torch.complex64
    freqs = 1.0 / 10000 ** (torch.arange(21) / 21)
    ang = torch.angle(ph[0])
    wrap = lambda a: torch.remainder(a + math.pi, 2 * math.pi) - math.pi
    for axis, p in enumerate((3, 5, 7)):
        assert torch.allclose(ang[axis * 21:(axis + 1) * 21], wrap(p * freqs), atol=1e-5)
    assert ph[0, 63] == 1
    # interleaved pairs: dims (2j, 2j+1) rotate together
    x = torch.zeros(1, 1, 128)
    x[0, 0, 2] = 1.0  # pair j = 1, real part
    y = apply_rope(x, ph)
    assert torch.allclose(y[0, 0, 2:4], torch.tensor([math.cos(3 * freqs[1]), math.sin(3 * freqs[1])]), atol=1e-6)
    assert torch.count_nonzero(y[0, 0, 4:]) == 0 and torch.count_nonzero(y[0, 0, :2]) == 0


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 64), torch.randn(1, 1, 64)
    def score(pq, pk):
        qq = apply_rope(q, rope_phases(torch.tensor([pq]), 64))
        kk = apply_rope(k, rope_phases(torch.tensor([pk]), 64))
        return (qq * kk).sum()
    assert torch.allclose(score([1, 2, 3], [4, 4, 4]), score([11, 12, 13], [14, 14, 14]), atol=1e-4)
    assert not torch.allclose(score([1, 2, 3], [4, 4, 4]), score([1, 2, 3], [4, 4, 5]), atol=1e-4)


# -- attention -------------------------------------------------------------------------------------------------
def test_varlen_attention_equals_dense_attention_per_object():
    torch.manual_seed(0)
    counts = [5, 9, 1]
    q, k, v = (torch.randn(sum(counts), 2, 8) for _ in range(3))
    out = varlen_attention(q, k, v, counts, counts)
    start = 0
    for n in counts:
        sl = slice(start, start + n)
        scores = torch.einsum("qhd,khd->hqk", q[sl], k[sl]) / math.sqrt(8)
        ref = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v[sl])
        assert (out[sl] - ref).abs().max() < 1e-5
        start += n


def test_objects_in_a_batch_do_not_see_each_other():
    model = small_flow().eval()
    coords = random_coords(40, 6, batches=2, seed=5)
    feats = torch.randn(coords.shape[0], 8)
    t = torch.tensor([300.0, 800.0])
    cond = torch.randn(2, 7, 16)
    with torch.no_grad():
        both = model(SparseTensor(feats, coords), t, cond).feats
        for b in range(2):
            m = coords[:, 0] == b
            c = coords[m].clone()
            c[:, 0] = 0
            alone = model(SparseTensor(feats[m], c), t[b:b + 1], cond[b:b + 1]).feats
            assert (alone - both[m]).abs().max() < 1e-5
        # one condition per object, of different lengths (the reference's list-form cond)
        listed = model(SparseTensor(feats, coords), t, [cond[0], cond[1, :3]]).feats
        m = coords[:, 0] == 1
        c = coords[m].clone()
        c[:, 0] = 0
        alone = model(SparseTensor(feats[m], c), t[1:], cond[1:, :3]).feats
        assert (listed[~m] - both[~m]).abs().max() < 1e-5 and (listed[m] - alone).abs().max() < 1e-5


# -- precision -------------------------------------------------------------------------------------------------
def test_bf16_blocks_keep_fp32_where_the_spec_says():
    m = small_flow(dtype="bfloat16")
    dt = {k: v.dtype for k, v in m.state_dict().items()}
    assert dt["blocks.0.self_attn.to_qkv.weight"] == torch.bfloat16
    assert dt["blocks.1.mlp.mlp.2.bias"] == torch.bfloat16
    for k in ("blocks.0.modulation", "blocks.0.norm2.weight", "blocks.0.self_attn.q_rms_norm.gamma",
              "input_layer.weight", "out_layer.weight", "t_embedder.mlp.0.weight", "adaLN_modulation.1.weight"):
        assert dt[k] == torch.float32, k


@pytest.mark.parametrize("case", ["a_slat_flow_concat_float32", "a_ss_flow_float32"])
def test_bf16_model_stays_within_tolerance_of_fp32(shared_dir, case):
    d = shared_dir / "fixtures" / "model-golden" / case
    cfg = json.loads((d / "config.json").read_text())
    weights, inp = load_file(d / "weights.safetensors"), load_file(d / "inputs.safetensors")
    outs = []
    for dtype in ("float32", "bfloat16"):
        model = build_model({"name": cfg["name"], "args": dict(cfg["args"], dtype=dtype)})
        load_state_dict_strict(model, weights)
        with torch.no_grad():
            if "x" in inp:
                outs.append(model(inp["x"], inp["t"], inp["cond"]))
            else:
                x = SparseTensor(inp["feats"], inp["coords"])
                outs.append(model(x, inp["t"], inp["cond"], concat_cond=SparseTensor(inp["concat_feats"], inp["coords"])).feats)
    assert outs[1].dtype == torch.float32  # the output head runs in fp32 whatever the block dtype
    assert (outs[0] - outs[1]).abs().max() <= 0.03  # the golden bf16 tolerance


def test_autocast_bf16_training_path_runs_and_tracks_fp32():
    model = small_flow()
    coords = random_coords(30, 6, batches=2, seed=2)
    x = SparseTensor(torch.randn(coords.shape[0], 8), coords)
    t, cond = torch.tensor([100.0, 900.0]), torch.randn(2, 5, 16)
    ref = model(x, t, cond).feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, cond).feats
    out.float().square().mean().backward()
    assert model.blocks[0].self_attn.to_qkv.weight.grad is not None
    assert (out.float() - ref).abs().max() < 0.05 * max(1.0, ref.abs().max().item())


# -- gradient checkpointing ------------------------------------------------------------------------------------
def _grads(model, run):
    model.zero_grad()
    run(model).square().mean().backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients():
    model = small_flow()
    coords = random_coords(30, 6, batches=2, seed=4)
    x = SparseTensor(torch.randn(coords.shape[0], 8), coords)
    t, cond = torch.tensor([100.0, 900.0]), torch.randn(2, 5, 16)
    run = lambda m: m(x, t, cond).feats
    plain = _grads(model, run)
    model.use_checkpoint = True
    assert all(b.use_checkpoint for b in model.blocks)
    ckpt = _grads(model, run)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for k in plain:
        assert torch.allclose(plain[k], ckpt[k], atol=1e-6, rtol=1e-5), k


def test_fp16_sc_vae_tracks_fp32():
    args = dict(in_channels=6, model_channels=[8, 16, 32], latent_channels=4, num_blocks=[0, 1, 1],
                block_type=["SparseConvNeXtBlock3d"] * 3, down_block_type=["SparseResBlockS2C3d"] * 2,
                block_args=[{}] * 3)
    torch.manual_seed(0)
    m32 = build_model({"name": "SparseUnetVaeEncoder", "args": dict(args, use_fp16=False)})
    with torch.no_grad():
        for p in m32.parameters():
            p.normal_(0, 0.3)
    m16 = build_model({"name": "SparseUnetVaeEncoder", "args": dict(args, use_fp16=True)})
    load_state_dict_strict(m16, m32.state_dict())
    assert m16.blocks[1][0].conv.weight.dtype == torch.float16 and m16.blocks[1][0].norm.weight.dtype == torch.float32
    coords = random_coords(150, 8, batches=1, seed=6)
    x = SparseTensor(torch.rand(coords.shape[0], 6) * 2 - 1, coords)
    with torch.no_grad():
        a, b = m32(x), m16(x)
    assert b.feats.dtype == torch.float32 and torch.equal(a.coords, b.coords)
    assert (a.feats - b.feats).abs().max() < 0.02 * max(1.0, a.feats.abs().max().item())


def test_lora_wraps_every_spec_target_including_the_sparse_input_layer():
    from peft import LoraConfig, inject_adapter_in_model

    model = small_flow(in_channels=16)
    model.requires_grad_(False)
    targets = ["to_qkv", "to_out", "to_q", "to_kv", "mlp.0", "mlp.2", "input_layer", "out_layer"]
    model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False), model)
    coords = random_coords(30, 6, batches=2, seed=7)
    x = SparseTensor(torch.randn(coords.shape[0], 8), coords)
    cc = SparseTensor(torch.randn(coords.shape[0], 8), coords)
    out = model(x, torch.tensor([10.0, 500.0]), torch.randn(2, 5, 16), concat_cond=cc)
    out.feats.square().mean().backward()
    trained = {k for k, p in model.named_parameters() if p.grad is not None}
    assert trained and all("lora_" in k for k in trained)
    assert any(k.startswith("input_layer.lora_A") for k in trained)
    assert any(k.startswith("blocks.1.cross_attn.to_kv.lora_B") for k in trained)


def test_ss_flow_survives_a_cast_of_the_whole_module():
    args = dict(resolution=4, in_channels=8, out_channels=8, model_channels=32, cond_channels=16, num_blocks=1,
                num_heads=1, mlp_ratio=2.0, pe_mode="rope", share_mod=True, qk_rms_norm=True, qk_rms_norm_cross=True)
    torch.manual_seed(0)
    model = build_model({"name": "SparseStructureFlowModel", "args": args}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    x, t, cond = torch.randn(1, 8, 4, 4, 4), torch.tensor([300.0]), torch.randn(1, 3, 16)
    with torch.no_grad():
        ref = model(x, t, cond)
        with pytest.warns(UserWarning):
            model.to(torch.float32)  # casts the complex RoPE buffer to real
        assert torch.allclose(model(x, t, cond), ref, atol=1e-6)


def test_rows_of_one_object_must_be_contiguous():
    model = small_flow().eval()
    coords = torch.tensor([[0, 1, 1, 1], [1, 2, 2, 2], [0, 3, 3, 3]], dtype=torch.int32)
    with pytest.raises(ValueError, match="grouped by batch index"):
        model(SparseTensor(torch.randn(3, 8), coords), torch.tensor([1.0, 2.0]), torch.randn(2, 4, 16))
