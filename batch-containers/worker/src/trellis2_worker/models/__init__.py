"""TRELLIS.2 neural models in pure PyTorch, state_dict-compatible with the official checkpoints
(docs/models.md): the flows, the sparse-structure and SC VAEs, the DINOv3 conditioner, and base loading."""

from .base import DEFAULT_BASE, Base, load_base
from .conditioner import ImageConditioner, prepare_images
from .flows import ElasticSLatFlowModel, SLatFlowModel, SparseStructureFlowModel
from .loading import (ALLOWED_MISSING, MODEL_CLASSES, CheckpointError, build_model, from_pretrained, load_checkpoint,
                      load_state_dict_strict, model_manifest)
from .sc_vae import (DualGridFields, FlexiDualGridVaeDecoder, FlexiDualGridVaeEncoder, SparseUnetVaeDecoder,
                     SparseUnetVaeEncoder)
from .sparse import SparseConv3d, SparseLinear, SparseTensor, channel_to_spatial, sparse_cat, spatial_to_channel
from .ss_vae import SparseStructureDecoder, SparseStructureEncoder

__all__ = [
    "ALLOWED_MISSING", "Base", "CheckpointError", "DEFAULT_BASE", "DualGridFields", "ElasticSLatFlowModel",
    "FlexiDualGridVaeDecoder", "FlexiDualGridVaeEncoder", "ImageConditioner", "MODEL_CLASSES", "SLatFlowModel",
    "SparseConv3d", "SparseLinear", "SparseStructureDecoder", "SparseStructureEncoder", "SparseStructureFlowModel",
    "SparseTensor", "SparseUnetVaeDecoder", "SparseUnetVaeEncoder", "build_model", "channel_to_spatial", "from_pretrained",
    "load_base", "load_checkpoint", "load_state_dict_strict", "model_manifest", "prepare_images", "sparse_cat",
    "spatial_to_channel",
]
