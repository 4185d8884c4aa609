"""Our models reproduce forward passes of the reference TRELLIS.2 classes (../shared/fixtures/model-golden):
each case's weights load strictly into the model built from its config, and the outputs, coordinates and row
order included, match within the case's tolerance."""

import json

import pytest
import torch
from safetensors.torch import load_file

from trellis2_worker.models import SparseTensor, build_model, load_state_dict_strict

CASES = ["a_ss_flow_float32", "a_ss_flow_bfloat16", "a_slat_flow_float32", "a_slat_flow_bfloat16",
         "a_slat_flow_concat_float32", "a_slat_flow_concat_bfloat16", "a_ss_encoder", "a_ss_decoder",
         "a_shape_encoder", "a_shape_decoder_net", "a_tex_decoder", "a_tex_encoder"]


def load_case(shared_dir, name):
    d = shared_dir / "fixtures" / "model-golden" / name
    config = json.loads((d / "config.json").read_text())
    case = json.loads((d / "case.json").read_text())
    model = build_model(config)
    load_state_dict_strict(model, load_file(d / "weights.safetensors"), source=name)
    return model.eval(), load_file(d / "inputs.safetensors"), load_file(d / "outputs.safetensors"), case


def run_case(name, model, inp):
    """The call each case.json describes; returns {output name: tensor} like outputs.safetensors."""
    if name.startswith("a_ss_flow"):
        return {"out": model(inp["x"], inp["t"], inp["cond"])}
    if name.startswith("a_slat_flow"):
        x = SparseTensor(inp["feats"], inp["coords"])
        cc = SparseTensor(inp["concat_feats"], inp["coords"]) if "concat_feats" in inp else None
        out = model(x, inp["t"], inp["cond"], concat_cond=cc)
        return {"feats": out.feats, "coords": out.coords}
    if name == "a_ss_encoder":
        return {"z": model(inp["x"], sample_posterior=False)}
    if name == "a_ss_decoder":
        return {"logits": model(inp["z"])}
    if name == "a_shape_encoder":
        z = model(SparseTensor(inp["vertices"], inp["coords"]), SparseTensor(inp["intersected"].bool(), inp["coords"]))
        return {"mean_feats": z.feats, "coords": z.coords}
    if name == "a_tex_encoder":
        z = model(SparseTensor(inp["attrs"], inp["coords"]), sample_posterior=False)
        return {"mean_feats": z.feats, "coords": z.coords}
    if name == "a_shape_decoder_net":
        y, subs = model(SparseTensor(inp["feats"], inp["coords"]), return_subs=True)
        out = {"feats": y.feats, "coords": y.coords}
        for i, s in enumerate(subs):
            out[f"subs{i}_feats"], out[f"subs{i}_coords"] = s.feats, s.coords
        return out
    if name == "a_tex_decoder":
        n = len([k for k in inp if k.startswith("subs") and k.endswith("_feats")])
        guide = [SparseTensor(inp[f"subs{i}_feats"], inp[f"subs{i}_coords"]) for i in range(n)]
        y = model(SparseTensor(inp["feats"], inp["coords"]), guide_subs=guide)
        return {"feats": y.feats, "coords": y.coords}
    raise AssertionError(name)


@pytest.mark.parametrize("name", CASES)
def test_reference_forward_is_reproduced(shared_dir, name):
    model, inp, expected, case = load_case(shared_dir, name)
    with torch.no_grad():
        got = run_case(name, model, inp)
    assert set(got) == set(expected), f"outputs {sorted(got)} vs reference {sorted(expected)}"
    tol = case["tolerance_max_abs"]
    for key, ref in expected.items():
        out = got[key]
        assert tuple(out.shape) == tuple(ref.shape), f"{key}: shape {tuple(out.shape)} vs reference {tuple(ref.shape)}"
        if "coords" in key:
            assert torch.equal(out.to(torch.int32), ref), f"{key}: coordinates or their row order differ"
        else:
            diff = (out.float() - ref).abs().max().item()
            assert diff <= tol, f"{key}: max abs diff {diff:.3g} > {tol}"
