"""The generate requests Java's CLI judges too (tests/generate_requests.json): the worker accepts and refuses the
same ones, checked from the request alone (check_request) before anything is fetched or loaded."""

import json
from pathlib import Path

import pytest

from trellis2_worker.errors import InputError
from trellis2_worker.generate.options import ADAPTER_STAGES, DEFAULT_PIPELINE_TYPE, DEFAULT_SCALE
from trellis2_worker.generate.run import GenerateRequest, check_request

TABLE = json.loads(Path(__file__).with_name("generate_requests.json").read_text("utf-8"))


def worker_request(body: dict) -> GenerateRequest:
    """generate.json as the Java CLI hands it to `trellis2-worker generate` (GenerateCommand.workerArgs)."""
    adapters = [(s, body[f"{s}_lora_url"], body.get(f"{s}_lora_scale", DEFAULT_SCALE))
                for s in ADAPTER_STAGES if f"{s}_lora_url" in body]
    fields = {k: body[k] for k in ("seed", "resolution", "texture_size") if k in body}
    if "decimation_target" in body:
        fields["decimate"] = body["decimation_target"]
    resolution = body.get("resolution", GenerateRequest.resolution)
    return GenerateRequest(image=body["image_url"], output="model.glb", adapters=adapters,
                           pipeline_type=body.get("pipeline_type", DEFAULT_PIPELINE_TYPE.get(resolution, "")),
                           vxz="model.vxz" if body.get("export_vxz") else None, sampler=body.get("sampler", {}),
                           **fields)


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: c["id"])
def test_shared_generate_request(case):
    req = worker_request({**TABLE["base"], **case["request"]})
    if "refused" not in case:
        check_request(req)
        return
    with pytest.raises(InputError) as err:
        check_request(req)
    assert case["mentions"] in str(err.value)
    assert "\n" not in str(err.value)
