"""TRELLIS.2 LoRA trainer worker: preprocessing and LoRA training, pure PyTorch."""

__version__ = "0.1.0"

# The official base every command uses unless told otherwise; here, at the top, so that each command's CLI can name
# it without importing torch (models re-exports it).
DEFAULT_BASE = "microsoft/TRELLIS.2-4B"
