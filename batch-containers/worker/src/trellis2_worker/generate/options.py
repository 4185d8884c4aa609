"""The generate command's choices, defaults and their checks, free of torch (the CLI's --help imports them).

What a request may ask for is read from generate_options.json, the one source: the Java CLI checks generate.json
against the same file (copied into its jar), and both sides' tests run tests/generate_requests.json.
"""

from __future__ import annotations

import json
import math
from importlib import resources

from trellis2_worker.errors import InputError

OPTIONS: dict = json.loads(resources.files(__package__).joinpath("generate_options.json").read_text("utf-8"))

RESOLUTIONS: tuple[int, ...] = tuple(int(r) for r in OPTIONS["resolutions"])
DEFAULT_RESOLUTION: int = OPTIONS["default_resolution"]
# The pipeline types that sample the flows of each resolution (the adapters' resolution), and each one's default.
PIPELINE_TYPES_AT: dict[int, tuple[str, ...]] = {
    int(r): tuple(v["pipeline_types"]) for r, v in OPTIONS["resolutions"].items()}
DEFAULT_PIPELINE_TYPE: dict[int, str] = {int(r): v["default_pipeline_type"] for r, v in OPTIONS["resolutions"].items()}
PIPELINE_TYPE_NAMES: tuple[str, ...] = tuple(t for types in PIPELINE_TYPES_AT.values() for t in types)
TEXTURE_SIZES: tuple[int, ...] = tuple(OPTIONS["texture_sizes"])
DEFAULT_TEXTURE_SIZE: int = OPTIONS["default_texture_size"]
DEFAULT_DECIMATE: int = OPTIONS["decimation_target"]["default"]
MIN_DECIMATE: int = OPTIONS["decimation_target"]["min"]
DEFAULT_SEED: int = OPTIONS["seed"]["default"]
MIN_SEED: int = OPTIONS["seed"]["min"]
MAX_SEED: int = OPTIONS["seed"]["max"]
# Adapter slots, named as the stages adapters are trained for (the adapter header's `denoiser`).
ADAPTER_STAGES: tuple[str, ...] = tuple(OPTIONS["adapter_stages"])
DEFAULT_SCALE: float = OPTIONS["lora_scale"]["default"]
MAX_ABS_SCALE: float = OPTIONS["lora_scale"]["max_abs"]
# --sampler STAGE names -> the pipeline.json entries they override.
SAMPLER_STAGES: dict[str, str] = dict(OPTIONS["sampler_stages"])
# The sample kwargs a pipeline.json sampler entry carries under "params" (the ones --sampler may override).
SAMPLER_PARAMS: dict[str, dict] = dict(OPTIONS["sampler_params"])

# The worker's own limits (no request names them).
MAX_NUM_TOKENS = 49152  # the reference's cap on the cascade's high-resolution tokens
MAX_IMAGE_BYTES = 256 * 1024 * 1024
MAX_ADAPTER_BYTES = 4 * 1024 * 1024 * 1024
# The generation's .vxz: xz's default preset; the dataset's preset 9 needs a 0.7 GB dictionary per stream, which
# costs more time than a single object's voxels save.
VXZ_LZMA_PRESET = 6


def check_scale(slot: str, scale) -> float:
    """An adapter's strength: a finite number within ±MAX_ABS_SCALE."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
            or abs(scale) > MAX_ABS_SCALE:
        raise InputError(f"the {slot} adapter's strength must be a number within ±{MAX_ABS_SCALE:g}, got {scale}")
    return float(scale)


def _bound(x: float) -> str:
    return f"{x:g}"


def describe_param(rule: dict) -> str:
    """What a sampler parameter's rule accepts, in words (the Java check says the same)."""
    if rule.get("interval"):
        return f"[low, high] with {_bound(rule['min'])} <= low <= high <= {_bound(rule['max'])}"
    kind = "an integer" if rule.get("integer") else "a number"
    if "above" in rule:
        return f"{kind} above {_bound(rule['above'])}"
    if "min" in rule and "max" in rule:
        return f"{kind} from {_bound(rule['min'])} to {_bound(rule['max'])}"
    return kind


def _within(v: float, rule: dict) -> bool:
    return (v >= rule.get("min", -math.inf) and v <= rule.get("max", math.inf)
            and ("above" not in rule or v > rule["above"]))


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def check_sampler_param(key: str, value, where: str):
    """A sampler parameter's value checked against its rule (an int, a float, or a (low, high) tuple)."""
    if key not in SAMPLER_PARAMS:
        raise InputError(f"{where}: unknown sampler parameter {key!r} (known: {', '.join(SAMPLER_PARAMS)})")
    rule = SAMPLER_PARAMS[key]
    bad = InputError(f"{where}.{key}: expected {describe_param(rule)}, got {json.dumps(value)}")
    if rule.get("interval"):
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(map(_is_number, value)):
            raise bad
        lo, hi = float(value[0]), float(value[1])
        if not (rule["min"] <= lo <= hi <= rule["max"]):
            raise bad
        return (lo, hi)
    if rule.get("integer"):
        if isinstance(value, bool) or not isinstance(value, int) or not _within(value, rule):
            raise bad
        return value
    if not _is_number(value) or not _within(value, rule):
        raise bad
    return float(value)


def check_sampler_overrides(sampler: dict, where: str = "--sampler") -> None:
    """{STAGE: {param: value}} checked against the stages and the parameters' rules."""
    unknown = [s for s in sampler if s not in SAMPLER_STAGES]
    if unknown:
        raise InputError(f"unknown sampler stage(s) {', '.join(unknown)} (known: {', '.join(SAMPLER_STAGES)})")
    for stage, params in sampler.items():
        for key, value in params.items():
            check_sampler_param(key, value, f"{where} {stage}")
