"""The adapter file formats: the native file training writes (PEFT keys in safetensors with a self-describing
header), and what `convert` makes of it: a PEFT directory, a ComfyUI-native LoRA file, and a merged base
(the adapter folded into the flow checkpoint, in the official layout). docs/adapter-formats.md describes each.
`load_adapter` puts a native adapter back on a flow model (training, generation and evaluation all use it)."""

TARGETS = ("peft", "comfyui", "merged")  # what `convert --to` makes

# Imported on first use (PEP 562): torch and safetensors take seconds, and every `trellis2-worker` command loads
# this package's CLI, which needs only TARGETS.
_EXPORTS = {
    "FORMAT": "native", "FORMAT_VERSION": "native", "NativeAdapter": "native", "adapter_state": "native",
    "read_adapter_metadata": "native", "read_native": "native", "save_adapter": "native", "target_regex": "native",
    "write_peft_dir": "peft_dir",
    "COMFYUI_FORMAT": "comfyui", "COMFYUI_SUBMODELS": "comfyui", "comfyui_submodel": "comfyui",
    "write_comfyui": "comfyui",
    "merge_state": "merged", "write_merged_base": "merged",
    "convert": "conversion",
    "attach": "loading", "load_adapter": "loading", "lora_config": "loading",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = [
    "COMFYUI_FORMAT", "COMFYUI_SUBMODELS", "FORMAT", "FORMAT_VERSION", "NativeAdapter", "TARGETS", "adapter_state",
    "attach", "comfyui_submodel", "convert", "load_adapter", "lora_config", "merge_state", "read_adapter_metadata",
    "read_native", "save_adapter", "target_regex", "write_comfyui", "write_merged_base", "write_peft_dir",
]
