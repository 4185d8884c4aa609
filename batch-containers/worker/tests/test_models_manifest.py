"""Every official TRELLIS.2 configuration, built on the meta device, has exactly the state_dict names, shapes and
dtypes of the reference's tables (tests/manifests/, written by tests/models_spec_tables.py), so the official
checkpoints load strictly."""

import json
import math
import pytest

import models_spec_tables as spec
from trellis2_worker.cli import main
from trellis2_worker.models import build_model, model_manifest

MANIFESTS = sorted(spec.MANIFEST_DIR.glob("*.json"))

# Tensor counts of the reference classes, counted apart from the tables (docs/models.md).
SPEC_TENSOR_COUNTS = {"ss_flow_img_dit_1_3B_64_bf16": 641, "slat_flow_img2shape_dit_1_3B_512_bf16": 640,
                      "slat_flow_img2shape_dit_1_3B_1024_bf16": 640, "slat_flow_imgshape2tex_dit_1_3B_512_bf16": 640,
                      "slat_flow_imgshape2tex_dit_1_3B_1024_bf16": 640, "ss_enc_conv3d_16l8_fp16": 74,
                      "ss_dec_conv3d_16l8_fp16": 74, "shape_enc_next_dc_f16c32_fp16": 284,
                      "shape_dec_next_dc_f16c32_fp16": 292, "tex_enc_next_dc_f16c32_fp16": 284,
                      "tex_dec_next_dc_f16c32_fp16": 284}


def test_every_official_configuration_has_a_manifest():
    assert {p.stem for p in MANIFESTS} == set(SPEC_TENSOR_COUNTS)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_manifest_data_agrees_with_spec_figures(path):
    doc = json.loads(path.read_text())
    assert doc == json.loads(json.dumps({"config": spec.official()[path.stem][0],
                                         "params_millions": spec.official()[path.stem][1],
                                         "tensors": spec.official()[path.stem][2]}))
    tensors = doc["tensors"]
    assert len(tensors) == SPEC_TENSOR_COUNTS[path.stem]
    params = sum(math.prod(s) for k, (s, _) in tensors.items() if k != "rope_phases")
    assert round(params / 1e6, 2) == doc["params_millions"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_official_configuration_matches_its_manifest(path):
    doc = json.loads(path.read_text())
    model = build_model(doc["config"], device="meta")
    ours = {e["name"]: [e["shape"], e["dtype"]] for e in model_manifest(model)}
    expected = doc["tensors"]
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    wrong = sorted(f"{k}: ours {ours[k]} official {expected[k]}" for k in set(ours) & set(expected) if ours[k] != expected[k])
    assert not missing, f"missing from our model: {missing[:10]}"
    assert not extra, f"not in the official checkpoint: {extra[:10]}"
    assert not wrong, f"shape/dtype differences: {wrong[:10]}"


def test_manifest_command_prints_the_state_dict(tmp_path, capsys):
    doc = json.loads((spec.MANIFEST_DIR / "ss_dec_conv3d_16l8_fp16.json").read_text())
    cfg = tmp_path / "ss_dec.json"
    cfg.write_text(json.dumps(doc["config"]))
    report = tmp_path / "report.json"
    assert main(["models", "manifest", str(cfg), "--report", str(report)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "SparseStructureDecoder"
    assert printed["tensors"] == doc["tensors"]
    assert json.loads(report.read_text())["tensors"] == 74


def test_manifest_command_rejects_an_unknown_class(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"name": "NoSuchModel", "args": {}}))
    assert main(["models", "manifest", str(cfg)]) == 2
    assert "NoSuchModel" in capsys.readouterr().err
