"""O-Voxel conversion (placeholder surface, completed below)."""
from .vxz import read_vxz, read_vxz_info, write_vxz
