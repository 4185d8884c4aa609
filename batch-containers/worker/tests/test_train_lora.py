"""LoRA wiring on the real flow classes (tiny base): exactly the block Linears get adapters, the base stays frozen,
a fresh adapter changes nothing, and an adapter file round-trips."""

import pytest
import torch

from trellis2_worker.errors import InputError
from trellis2_worker.train import TARGET_MODULES, attach_lora, load_adapter, read_adapter_metadata, save_adapter


@pytest.fixture(scope="module")
def ss_model():
    from trellis2_worker.models import load_base

    model = load_base("tiny").load("sparse_structure_flow_model")
    model.convert_to(torch.float32)
    yield model
    model.convert_to(torch.bfloat16)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 8, 16, 16, 16, generator=g), torch.tensor([500.0]), torch.randn(1, 7, 64, generator=g)


def test_every_block_linear_and_nothing_else_gets_a_trainable_adapter(ss_model):
    torch.set_num_threads(1)
    peft = attach_lora(ss_model, rank=4)
    try:
        wrapped = {n.removeprefix("base_model.model.") for n, m in peft.named_modules() if hasattr(m, "lora_A")
                   and isinstance(getattr(m, "base_layer", None), torch.nn.Linear)}
        expected = {f"blocks.{i}.{t}" for i in range(ss_model.num_blocks) for t in TARGET_MODULES}
        assert wrapped == expected
        trainable = {n for n, p in peft.named_parameters() if p.requires_grad}
        assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
        assert all(m.scaling["default"] == 1.0 for n, m in peft.named_modules() if hasattr(m, "scaling")
                   and "default" in getattr(m, "scaling", {}))  # alpha = rank
        x, t, c = _inputs()
        with torch.no_grad():
            adapted = peft(x, t, c)
            with peft.disable_adapter():
                plain = peft(x, t, c)
        assert torch.equal(adapted, plain)  # lora_B starts at zero: a fresh adapter is the base model
    finally:
        peft.unload()


def test_a_saved_adapter_round_trips_and_checks_its_header(ss_model, tmp_path):
    torch.set_num_threads(1)
    x, t, c = _inputs()
    peft = attach_lora(ss_model, rank=2)
    try:
        with torch.no_grad():
            for n, p in peft.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)
            trained = peft(x, t, c)
        save_adapter(peft, tmp_path / "ss.safetensors", {"denoiser": "sparse_structure", "resolution": 512,
                                                         "rank": 2, "alpha": 2})
    finally:
        peft.unload()
    with torch.no_grad():
        assert not torch.equal(ss_model(x, t, c), trained)
    loaded = load_adapter(ss_model, tmp_path / "ss.safetensors", "sparse_structure")
    try:
        with torch.no_grad():
            assert torch.equal(loaded(x, t, c), trained)
    finally:
        loaded.unload()
    assert read_adapter_metadata(tmp_path / "ss.safetensors")["rank"] == 2
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="not a safetensors adapter"):
        load_adapter(ss_model, tmp_path / "junk.safetensors", "sparse_structure")
