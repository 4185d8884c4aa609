"""TRELLIS.2 LoRA trainer worker: preprocessing and LoRA training, pure PyTorch."""

__version__ = "0.1.0"
