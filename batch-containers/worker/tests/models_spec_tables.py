"""The official TRELLIS.2 checkpoint configs and their state_dict manifests, written from the key, shape and dtype tables
of the reference classes (microsoft/TRELLIS.2 `trellis2/models/`, TRELLIS v1 `trellis/models/sparse_structure_vae.py`,
as dumped on the meta device; summarised in docs/models.md) without using our model code. `python tests/models_spec_tables.py` rewrites tests/manifests/*.json from these tables.

A manifest is {"config": <ckpt config>, "params_millions": <reference figure>, "tensors": {name: [shape, dtype]}}.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST_DIR = Path(__file__).parent / "manifests"

FP32, BF16, FP16, C64 = "float32", "bfloat16", "float16", "complex64"


# -- flows (docs/models.md#sparse-structure-flow, #slat-flows) ------------------------------------------------
def flow_args(resolution, cin, cout):
    return {"resolution": resolution, "in_channels": cin, "out_channels": cout, "model_channels": 1536,
            "cond_channels": 1024, "num_blocks": 30, "num_heads": 12, "mlp_ratio": 5.3334, "pe_mode": "rope",
            "share_mod": True, "initialization": "scaled", "qk_rms_norm": True, "qk_rms_norm_cross": True,
            "dtype": "bfloat16"}


def flow_tensors(cin, cout, rope_tokens=None, C=1536, Cc=1024, H=12, NB=30, M=8192):
    D = C // H
    t = {}
    if rope_tokens:
        t["rope_phases"] = [[rope_tokens, D // 2], C64]
    t["t_embedder.mlp.0.weight"] = [[C, 256], FP32]
    t["t_embedder.mlp.0.bias"] = [[C], FP32]
    t["t_embedder.mlp.2.weight"] = [[C, C], FP32]
    t["t_embedder.mlp.2.bias"] = [[C], FP32]
    t["adaLN_modulation.1.weight"] = [[6 * C, C], FP32]
    t["adaLN_modulation.1.bias"] = [[6 * C], FP32]
    t["input_layer.weight"] = [[C, cin], FP32]
    t["input_layer.bias"] = [[C], FP32]
    t["out_layer.weight"] = [[cout, C], FP32]
    t["out_layer.bias"] = [[cout], FP32]
    for i in range(NB):
        b = f"blocks.{i}."
        t[b + "modulation"] = [[6 * C], FP32]
        t[b + "norm2.weight"] = [[C], FP32]
        t[b + "norm2.bias"] = [[C], FP32]
        t[b + "self_attn.to_qkv.weight"] = [[3 * C, C], BF16]
        t[b + "self_attn.to_qkv.bias"] = [[3 * C], BF16]
        t[b + "self_attn.q_rms_norm.gamma"] = [[H, D], FP32]
        t[b + "self_attn.k_rms_norm.gamma"] = [[H, D], FP32]
        t[b + "self_attn.to_out.weight"] = [[C, C], BF16]
        t[b + "self_attn.to_out.bias"] = [[C], BF16]
        t[b + "cross_attn.to_q.weight"] = [[C, C], BF16]
        t[b + "cross_attn.to_q.bias"] = [[C], BF16]
        t[b + "cross_attn.to_kv.weight"] = [[2 * C, Cc], BF16]
        t[b + "cross_attn.to_kv.bias"] = [[2 * C], BF16]
        t[b + "cross_attn.q_rms_norm.gamma"] = [[H, D], FP32]
        t[b + "cross_attn.k_rms_norm.gamma"] = [[H, D], FP32]
        t[b + "cross_attn.to_out.weight"] = [[C, C], BF16]
        t[b + "cross_attn.to_out.bias"] = [[C], BF16]
        t[b + "mlp.mlp.0.weight"] = [[M, C], BF16]
        t[b + "mlp.mlp.0.bias"] = [[M], BF16]
        t[b + "mlp.mlp.2.weight"] = [[C, M], BF16]
        t[b + "mlp.mlp.2.bias"] = [[C], BF16]
    return t


# -- sparse-structure VAE (docs/models.md#sparse-structure-vae) -------------------------------------------------
def ss_resblock(prefix, c):
    return {prefix + "norm1.weight": [[c], FP32], prefix + "norm1.bias": [[c], FP32],
            prefix + "norm2.weight": [[c], FP32], prefix + "norm2.bias": [[c], FP32],
            prefix + "conv1.weight": [[c, c, 3, 3, 3], FP16], prefix + "conv1.bias": [[c], FP16],
            prefix + "conv2.weight": [[c, c, 3, 3, 3], FP16], prefix + "conv2.bias": [[c], FP16]}


def ss_encoder_tensors():
    t = {"input_layer.weight": [[32, 1, 3, 3, 3], FP32], "input_layer.bias": [[32], FP32]}
    t |= ss_resblock("blocks.0.", 32) | ss_resblock("blocks.1.", 32)
    t |= {"blocks.2.conv.weight": [[128, 32, 2, 2, 2], FP16], "blocks.2.conv.bias": [[128], FP16]}
    t |= ss_resblock("blocks.3.", 128) | ss_resblock("blocks.4.", 128)
    t |= {"blocks.5.conv.weight": [[512, 128, 2, 2, 2], FP16], "blocks.5.conv.bias": [[512], FP16]}
    t |= ss_resblock("blocks.6.", 512) | ss_resblock("blocks.7.", 512)
    t |= ss_resblock("middle_block.0.", 512) | ss_resblock("middle_block.1.", 512)
    t |= {"out_layer.0.weight": [[512], FP32], "out_layer.0.bias": [[512], FP32],
          "out_layer.2.weight": [[16, 512, 3, 3, 3], FP32], "out_layer.2.bias": [[16], FP32]}
    return t


def ss_decoder_tensors():
    t = {"input_layer.weight": [[512, 8, 3, 3, 3], FP32], "input_layer.bias": [[512], FP32]}
    t |= ss_resblock("middle_block.0.", 512) | ss_resblock("middle_block.1.", 512)
    t |= ss_resblock("blocks.0.", 512) | ss_resblock("blocks.1.", 512)
    t |= {"blocks.2.conv.weight": [[1024, 512, 3, 3, 3], FP16], "blocks.2.conv.bias": [[1024], FP16]}
    t |= ss_resblock("blocks.3.", 128) | ss_resblock("blocks.4.", 128)
    t |= {"blocks.5.conv.weight": [[256, 128, 3, 3, 3], FP16], "blocks.5.conv.bias": [[256], FP16]}
    t |= ss_resblock("blocks.6.", 32) | ss_resblock("blocks.7.", 32)
    t |= {"out_layer.0.weight": [[32], FP32], "out_layer.0.bias": [[32], FP32],
          "out_layer.2.weight": [[1, 32, 3, 3, 3], FP32], "out_layer.2.bias": [[1], FP32]}
    return t


SS_ENC_ARGS = {"in_channels": 1, "latent_channels": 8, "num_res_blocks": 2, "num_res_blocks_middle": 2,
               "channels": [32, 128, 512], "use_fp16": True}
SS_DEC_ARGS = {"out_channels": 1, "latent_channels": 8, "num_res_blocks": 2, "num_res_blocks_middle": 2,
               "channels": [512, 128, 32], "use_fp16": True}


# -- SC VAEs (docs/models.md#sc-vaes) ---------------------------------------------------------------------------
def convnext(prefix, c):
    return {prefix + "norm.weight": [[c], FP32], prefix + "norm.bias": [[c], FP32],
            prefix + "conv.weight": [[c, 3, 3, 3, c], FP16], prefix + "conv.bias": [[c], FP16],
            prefix + "mlp.0.weight": [[4 * c, c], FP16], prefix + "mlp.0.bias": [[4 * c], FP16],
            prefix + "mlp.2.weight": [[c, 4 * c], FP16], prefix + "mlp.2.bias": [[c], FP16]}


def s2c(prefix, ci, co):
    return {prefix + "norm1.weight": [[ci], FP32], prefix + "norm1.bias": [[ci], FP32],
            prefix + "conv1.weight": [[co // 8, 3, 3, 3, ci], FP16], prefix + "conv1.bias": [[co // 8], FP16],
            prefix + "conv2.weight": [[co, 3, 3, 3, co], FP16], prefix + "conv2.bias": [[co], FP16]}


def c2s(prefix, ci, co, pred_subdiv):
    t = {prefix + "norm1.weight": [[ci], FP32], prefix + "norm1.bias": [[ci], FP32],
         prefix + "conv1.weight": [[8 * co, 3, 3, 3, ci], FP16], prefix + "conv1.bias": [[8 * co], FP16],
         prefix + "conv2.weight": [[co, 3, 3, 3, co], FP16], prefix + "conv2.bias": [[co], FP16]}
    if pred_subdiv:
        t |= {prefix + "to_subdiv.weight": [[8, ci], FP16], prefix + "to_subdiv.bias": [[8], FP16]}
    return t


ENC_CH, ENC_NB = [64, 128, 256, 512, 1024], [0, 4, 8, 16, 4]
DEC_CH, DEC_NB = [1024, 512, 256, 128, 64], [4, 16, 8, 4, 0]


def sc_encoder_tensors(cin):
    t = {"input_layer.weight": [[ENC_CH[0], cin], FP32], "input_layer.bias": [[ENC_CH[0]], FP32],
         "to_latent.weight": [[64, 1024], FP32], "to_latent.bias": [[64], FP32]}
    for s in range(5):
        for j in range(ENC_NB[s]):
            t |= convnext(f"blocks.{s}.{j}.", ENC_CH[s])
        if s < 4:
            t |= s2c(f"blocks.{s}.{ENC_NB[s]}.", ENC_CH[s], ENC_CH[s + 1])
    return t


def sc_decoder_tensors(cout, pred_subdiv):
    t = {"from_latent.weight": [[1024, 32], FP32], "from_latent.bias": [[1024], FP32],
         "output_layer.weight": [[cout, 64], FP32], "output_layer.bias": [[cout], FP32]}
    for s in range(5):
        for j in range(DEC_NB[s]):
            t |= convnext(f"blocks.{s}.{j}.", DEC_CH[s])
        if s < 4:
            t |= c2s(f"blocks.{s}.{DEC_NB[s]}.", DEC_CH[s], DEC_CH[s + 1], pred_subdiv)
    return t


def _enc_args(extra):
    return {**extra, "model_channels": ENC_CH, "latent_channels": 32, "num_blocks": ENC_NB,
            "block_type": ["SparseConvNeXtBlock3d"] * 5, "down_block_type": ["SparseResBlockS2C3d"] * 4,
            "block_args": [{"use_checkpoint": True}] * 2 + [{"use_checkpoint": False}] * 3, "use_fp16": True}


def _dec_args(extra):
    return {**extra, "model_channels": DEC_CH, "latent_channels": 32, "num_blocks": DEC_NB,
            "block_type": ["SparseConvNeXtBlock3d"] * 5, "up_block_type": ["SparseResBlockC2S3d"] * 4,
            "block_args": [{"use_checkpoint": False}] * 3 + [{"use_checkpoint": True}] * 2, "use_fp16": True}


# name -> (config, reference parameter count in millions (None where none was recorded), tensors)
def official() -> dict:
    return {
        "ss_flow_img_dit_1_3B_64_bf16": ({"name": "SparseStructureFlowModel", "args": flow_args(16, 8, 8)},
                                         1292.18, flow_tensors(8, 8, rope_tokens=16 ** 3)),
        "slat_flow_img2shape_dit_1_3B_512_bf16": ({"name": "SLatFlowModel", "args": flow_args(32, 32, 32)},
                                                  1292.25, flow_tensors(32, 32)),
        "slat_flow_img2shape_dit_1_3B_1024_bf16": ({"name": "SLatFlowModel", "args": flow_args(64, 32, 32)},
                                                   1292.25, flow_tensors(32, 32)),
        "slat_flow_imgshape2tex_dit_1_3B_512_bf16": ({"name": "SLatFlowModel", "args": flow_args(32, 64, 32)},
                                                     1292.30, flow_tensors(64, 32)),
        "slat_flow_imgshape2tex_dit_1_3B_1024_bf16": ({"name": "SLatFlowModel", "args": flow_args(32, 64, 32)},
                                                      1292.30, flow_tensors(64, 32)),
        "ss_enc_conv3d_16l8_fp16": ({"name": "SparseStructureEncoder", "args": SS_ENC_ARGS}, 59.30,
                                    ss_encoder_tensors()),
        "ss_dec_conv3d_16l8_fp16": ({"name": "SparseStructureDecoder", "args": SS_DEC_ARGS}, 73.67,
                                    ss_decoder_tensors()),
        "shape_enc_next_dc_f16c32_fp16": ({"name": "FlexiDualGridVaeEncoder", "args": _enc_args({})}, 354.39,
                                          sc_encoder_tensors(6)),
        "shape_dec_next_dc_f16c32_fp16": ({"name": "FlexiDualGridVaeDecoder", "args": _dec_args({"resolution": 256})},
                                          474.23, sc_decoder_tensors(7, True)),
        "tex_enc_next_dc_f16c32_fp16": ({"name": "SparseUnetVaeEncoder", "args": _enc_args({"in_channels": 6})},
                                        354.39, sc_encoder_tensors(6)),
        "tex_dec_next_dc_f16c32_fp16": ({"name": "SparseUnetVaeDecoder",
                                         "args": _dec_args({"out_channels": 6, "pred_subdiv": False})},
                                        474.22, sc_decoder_tensors(6, False)),
    }


def write_all() -> None:
    MANIFEST_DIR.mkdir(exist_ok=True)
    for name, (config, params, tensors) in official().items():
        # One tensor per line, so a diff of a manifest reads like the reference's tables.
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in tensors.items()]
        text = ('{\n "config": ' + json.dumps(config) + ',\n "params_millions": ' + json.dumps(params)
                + ',\n "tensors": {\n' + ",\n".join(lines) + "\n }\n}\n")
        (MANIFEST_DIR / f"{name}.json").write_text(text)


if __name__ == "__main__":
    write_all()
