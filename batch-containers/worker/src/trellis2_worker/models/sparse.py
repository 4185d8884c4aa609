"""Sparse voxel tensors and the sparse ops TRELLIS.2 needs, in plain PyTorch (docs/models.md: #sparse-conv,
#s2c-and-c2s, #sparse-tensors).

No CUDA extension: the submanifold convolution is a gather / matmul / scatter over a neighbour map found with
`searchsorted` on sorted voxel codes, which runs on CPU and CUDA alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SparseTensor:
    """Features `feats` [N, C...] at voxels `coords` [N, 4] int32 = (batch, x, y, z).

    Rows of one batch item are contiguous and in batch order, as in the reference. `cache` holds derived data
    (layout, neighbour maps, RoPE phases) that only depend on the coordinates; `replace` keeps it.
    """

    __slots__ = ("feats", "coords", "cache", "_batch_size")

    def __init__(self, feats: torch.Tensor, coords: torch.Tensor, batch_size: int | None = None, cache: dict | None = None):
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must be [N, 4] (batch, x, y, z), got {tuple(coords.shape)}")
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats has {feats.shape[0]} rows but coords has {coords.shape[0]}")
        self.feats = feats
        self.coords = coords if coords.dtype == torch.int32 else coords.to(torch.int32)
        self.cache = {} if cache is None else cache
        self._batch_size = batch_size

    # -- structure ---------------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            self._batch_size = int(self.coords[:, 0].max().item()) + 1 if self.coords.shape[0] else 0
        return self._batch_size

    @property
    def shape(self) -> torch.Size:
        return torch.Size([self.batch_size, *self.feats.shape[1:]])

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def spatial_shape(self) -> list[int]:
        return (self.coords[:, 1:].max(dim=0).values + 1).tolist()

    @property
    def counts(self) -> list[int]:
        """Rows per batch item (the varlen layout)."""
        if "counts" not in self.cache:
            b = self.coords[:, 0]
            if b.numel() > 1 and bool((b[1:] < b[:-1]).any()):
                # Per-object attention splits rows by count, so each object's rows must be contiguous, in order.
                raise ValueError("SparseTensor rows must be grouped by batch index in ascending order")
            c = torch.bincount(b.long(), minlength=self.batch_size)
            self.cache["counts"] = c.tolist()
        return self.cache["counts"]

    @property
    def layout(self) -> list[slice]:
        out, start = [], 0
        for n in self.counts:
            out.append(slice(start, start + n))
            start += n
        return out

    def batch_index(self) -> torch.Tensor:
        return self.coords[:, 0].long()

    # -- value ops ---------------------------------------------------------------------------------------------
    def replace(self, feats: torch.Tensor, coords: torch.Tensor | None = None) -> "SparseTensor":
        if coords is None:
            return SparseTensor(feats, self.coords, self._batch_size, self.cache)
        return SparseTensor(feats, coords, self._batch_size)

    def type(self, dtype: torch.dtype) -> "SparseTensor":
        return self.replace(self.feats.type(dtype))

    def to(self, *args, **kwargs) -> "SparseTensor":
        feats = self.feats.to(*args, **kwargs)
        coords = self.coords.to(feats.device)
        st = SparseTensor(feats, coords, self._batch_size, self.cache if coords is self.coords else None)
        return st

    def float(self) -> "SparseTensor":
        return self.type(torch.float32)

    def detach(self) -> "SparseTensor":
        return self.replace(self.feats.detach())

    def _broadcast(self, other):
        # A dense [B, C] operand is applied per batch item (the reference's batch_boardcast_map).
        if isinstance(other, SparseTensor):
            return other.feats
        if isinstance(other, torch.Tensor) and other.dim() >= 1 and other.shape[0] == self.batch_size and other.dim() == self.feats.dim():
            return other[self.batch_index()]
        return other

    def __add__(self, other):
        return self.replace(self.feats + self._broadcast(other))

    __radd__ = __add__

    def __sub__(self, other):
        return self.replace(self.feats - self._broadcast(other))

    def __mul__(self, other):
        return self.replace(self.feats * self._broadcast(other))

    __rmul__ = __mul__

    def __neg__(self):
        return self.replace(-self.feats)

    def unbind(self) -> list["SparseTensor"]:
        """One SparseTensor per batch item (batch index reset to 0)."""
        out = []
        for sl in self.layout:
            c = self.coords[sl].clone()
            c[:, 0] = 0
            out.append(SparseTensor(self.feats[sl], c, 1))
        return out

    def __repr__(self) -> str:
        return f"SparseTensor(feats={tuple(self.feats.shape)} {self.feats.dtype}, coords={tuple(self.coords.shape)}, batch={self.batch_size})"


def sparse_cat(tensors: list[SparseTensor], dim: int = -1) -> SparseTensor:
    """Concatenate features on the coordinates of the first tensor (rows must correspond)."""
    first = tensors[0]
    for t in tensors[1:]:
        if t.coords.shape != first.coords.shape:
            raise ValueError("sparse_cat needs tensors on the same coordinates")
    return first.replace(torch.cat([t.feats for t in tensors], dim=dim))


def _voxel_codes(coords: torch.Tensor, extent: list[int]) -> torch.Tensor:
    """Row-major int64 code of (b, x, y, z) with x, y, z shifted by one so neighbours at -1 stay in range."""
    c = coords.long()
    sx, sy, sz = extent
    return ((c[:, 0] * sx + (c[:, 1] + 1)) * sy + (c[:, 2] + 1)) * sz + (c[:, 3] + 1)


def neighbour_table(x: SparseTensor) -> torch.Tensor:
    """[N, 27] row index of the neighbour at offset (a-1, b-1, c-1), k = 9a + 3b + c; N (a zero row) if absent."""
    key = "neighbours_3x3x3"
    if key in x.cache:
        return x.cache[key]
    coords = x.coords
    n = coords.shape[0]
    table = torch.full((n, 27), n, dtype=torch.long, device=coords.device)
    if n:
        extent = [s + 2 for s in x.spatial_shape]
        codes = _voxel_codes(coords, extent)
        _, sy, sz = extent
        total = x.batch_size * extent[0] * sy * sz
        if total <= DENSE_LOOKUP_CELLS:
            # Small grids: a dense code -> row volume is faster than searching.
            volume = torch.full((total,), n, dtype=torch.int32, device=coords.device)
            volume[codes] = torch.arange(n, dtype=torch.int32, device=coords.device)
            for k in range(27):
                a, b, c = k // 9, (k // 3) % 3, k % 3
                table[:, k] = volume[codes + ((a - 1) * sy * sz + (b - 1) * sz + (c - 1))]
        else:
            sorted_codes, order = torch.sort(codes)
            for k in range(27):
                a, b, c = k // 9, (k // 3) % 3, k % 3
                q = codes + ((a - 1) * sy * sz + (b - 1) * sz + (c - 1))
                pos = torch.searchsorted(sorted_codes, q).clamp_(max=n - 1)
                # Neighbours at -1 or S stay inside the padded extent, so a code never aliases another row or item.
                table[:, k] = torch.where(sorted_codes[pos] == q, order[pos], n)
    x.cache[key] = table
    return table


# Grids up to this many cells use a dense lookup volume for the neighbour table, larger ones a sorted search.
DENSE_LOOKUP_CELLS = 1 << 24

# Rows per im2col chunk are chosen so a chunk holds about this many elements (bounds the temporary memory).
IM2COL_ELEMENTS = 1 << 25


class SparseConv3d(nn.Module):
    """Submanifold 3×3×3 conv, stride 1; `weight` [Co, 3, 3, 3, Ci] as flex_gemm stores it
    (docs/models.md#sparse-conv).

    Computed as im2col over the neighbour table (gather [rows, 27·Ci]) and one matmul per chunk of rows."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if kernel_size != 3:
            raise ValueError("only 3×3×3 submanifold convolution is used by TRELLIS.2")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, 3, 3, 3, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as the reference (kaiming-uniform of the Conv3d-layout weight).
        bound = 1.0 / math.sqrt(self.in_channels * 27)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        table = neighbour_table(x)
        feats = x.feats
        n, ci = feats.shape
        w = self.weight.reshape(self.out_channels, 27 * ci)
        padded = torch.cat([feats, feats.new_zeros(1, ci)], dim=0)
        step = max(1, IM2COL_ELEMENTS // (27 * ci))
        outs = []
        for start in range(0, n, step):
            cols = padded[table[start:start + step]].reshape(-1, 27 * ci)
            outs.append(F.linear(cols, w, self.bias))
        out = torch.cat(outs, dim=0) if outs else feats.new_zeros(0, self.out_channels)
        return x.replace(out)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=3, submanifold"


class SparseLinear(nn.Linear):
    """nn.Linear applied to `.feats` (same keys as the reference SparseLinear)."""

    def forward(self, x):  # type: ignore[override]
        if isinstance(x, SparseTensor):
            return x.replace(super().forward(x.feats))
        return super().forward(x)


def spatial_to_channel(x: SparseTensor) -> SparseTensor:
    """S2C ×2: parents sorted by (b, x, y, z); child slot s = x%2 + 2·(y%2) + 4·(z%2); channel = s·C + c."""
    c = x.coords.long()
    parent = torch.cat([c[:, :1], c[:, 1:] // 2], dim=1)
    sub = (c[:, 1] % 2) + 2 * (c[:, 2] % 2) + 4 * (c[:, 3] % 2)
    ext = [int(v) for v in (parent[:, 1:].max(dim=0).values + 1).tolist()] if c.shape[0] else [1, 1, 1]
    code = ((parent[:, 0] * ext[0] + parent[:, 1]) * ext[1] + parent[:, 2]) * ext[2] + parent[:, 3]
    ucode, idx = torch.unique(code, sorted=True, return_inverse=True)
    z = ucode % ext[2]
    rest = ucode // ext[2]
    y = rest % ext[1]
    rest = rest // ext[1]
    xx = rest % ext[0]
    b = rest // ext[0]
    new_coords = torch.stack([b, xx, y, z], dim=1).to(torch.int32)
    m, ch = ucode.shape[0], x.feats.shape[1]
    new_feats = x.feats.new_zeros(m * 8, ch)
    new_feats = new_feats.index_put((idx * 8 + sub,), x.feats)
    return SparseTensor(new_feats.reshape(m, 8 * ch), new_coords, x._batch_size)


def channel_to_spatial(x: SparseTensor, mask: torch.Tensor) -> SparseTensor:
    """C2S ×2 given a bool mask [N, 8]: children parent-major, slot ascending; feature = channel block s."""
    if mask.shape != (x.feats.shape[0], 8):
        raise ValueError(f"subdivision mask must be [N, 8], got {tuple(mask.shape)}")
    n_idx, s = torch.nonzero(mask, as_tuple=True)
    offs = torch.stack([s % 2, (s // 2) % 2, (s // 4) % 2], dim=1)
    pc = x.coords[n_idx].long()
    new_coords = torch.cat([pc[:, :1], pc[:, 1:] * 2 + offs], dim=1).to(torch.int32)
    ch = x.feats.shape[1] // 8
    new_feats = x.feats.reshape(-1, ch)[n_idx * 8 + s]
    return SparseTensor(new_feats, new_coords, x._batch_size)


def dense_to_sparse_reference_conv(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Slow reference: dense conv3d of the scattered grid, gathered at the active voxels (for tests)."""
    b = x.batch_size
    shape = x.spatial_shape
    c = x.coords.long()
    grid = x.feats.new_zeros(b, x.feats.shape[1], *shape)
    grid[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = x.feats
    out = F.conv3d(grid, weight.permute(0, 4, 1, 2, 3), bias, padding=1)
    return out[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


