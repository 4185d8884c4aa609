"""The generate command's choices and defaults, in one place and free of torch (the CLI's --help imports them)."""

RESOLUTIONS = (512, 1024)
PIPELINE_TYPE_NAMES = ("512", "1024", "1024_cascade", "1536_cascade")
DEFAULT_PIPELINE_TYPE = {512: "512", 1024: "1024_cascade"}
# The pipeline types that sample the flows of each resolution (the adapters' resolution).
PIPELINE_TYPES_AT = {512: ("512",), 1024: ("1024", "1024_cascade", "1536_cascade")}
MAX_NUM_TOKENS = 49152  # the reference's cap on the cascade's high-resolution tokens
TEXTURE_SIZES = (1024, 2048, 4096)
DEFAULT_TEXTURE_SIZE = 2048
DEFAULT_DECIMATE = 500_000
# --sampler STAGE names -> the pipeline.json entries they override.
SAMPLER_STAGES = {"sparse_structure": "sparse_structure_sampler", "shape": "shape_slat_sampler",
                  "texture": "tex_slat_sampler"}
# Adapter slots, named as the stages adapters are trained for (the adapter header's `denoiser`).
ADAPTER_STAGES = ("sparse_structure", "geometry", "texture")
DEFAULT_SCALE = 1.0
MAX_ABS_SCALE = 10.0  # strengths beyond this only blow the latents up
MAX_IMAGE_BYTES = 256 * 1024 * 1024
MAX_ADAPTER_BYTES = 4 * 1024 * 1024 * 1024
# The generation's .vxz: xz's default preset; the dataset's preset 9 needs a 0.7 GB dictionary per stream, which
# costs more time than a single object's voxels save.
VXZ_LZMA_PRESET = 6
