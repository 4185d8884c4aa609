"""The PEFT directory: `adapter_config.json` + `adapter_model.safetensors`, which `PeftModel.from_pretrained(flow,
DIR)` puts on the flow model as it is, with no code of this project.

The tensors are the native ones under the same keys (PEFT's own). The header keeps the native metadata, except that
`format` is "pt" as PEFT and transformers write it; the native format name moves to `source_format`."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from .native import FORMAT, NativeAdapter, encode_header, target_regex, targets_of


def peft_config(adapter: NativeAdapter):
    from peft import LoraConfig

    targets = adapter.metadata.get("target_modules")
    if not isinstance(targets, list) or not targets:
        targets = targets_of(adapter.modules)
    return LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, target_modules=target_regex(targets),
                      lora_dropout=0.0, bias="none",
                      base_model_name_or_path=str(adapter.metadata.get("base_model") or "") or None)


def write_peft_dir(adapter: NativeAdapter, out_dir: str | Path) -> list[Path]:
    """Writes the PEFT directory; returns the files written."""
    from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_config(adapter).save_pretrained(str(out))
    header = encode_header({k: v for k, v in adapter.metadata.items() if k != "format"})
    header.update({"format": "pt", "source_format": FORMAT})
    save_file(adapter.peft_state(), str(out / SAFETENSORS_WEIGHTS_NAME), metadata=header)
    return [out / CONFIG_NAME, out / SAFETENSORS_WEIGHTS_NAME]
