"""PBR attribute voxels (docs/data-formats.md#pbr-voxels): base colour, metallic, roughness and alpha on the dual-grid
voxel set.

Per triangle, the voxels its scan-line crossings touch (the same rasterisation as the dual grid, deduplicated per
triangle) each get one sample: the voxel centre projected onto the triangle's plane, unclamped barycentrics, UV
interpolation, material lookup with trilinear mip filtering, weight `1 - signed distance`. A voxel's value is the
weighted mean of its samples. Arithmetic is float32 like the reference, quantised to uint8 by truncation."""

from __future__ import annotations

import io

import numba as nb
import numpy as np
from PIL import Image

from ._hash import ht_new, ht_rehash, ht_slot
from ._scan import scan_triangle
from .fdg import UNIT_AABB, _voxel_size, dot3

F32 = np.float32
ALPHA_MODES = {"OPAQUE": 0, "MASK": 1, "BLEND": 2}
FILTERS = {"Closest": 0, "Linear": 1, "Cubic": 1, "Smart": 1}
WRAPS = {"REPEAT": 0, "EXTEND": 1, "CLIP": 1, "MIRROR": 2}
SLOTS = ("baseColorTexture", "metallicTexture", "roughnessTexture", "alphaTexture")
SLOT_CHANNELS = (3, 1, 1, 1)
DEFAULT_MATERIAL = {
    "baseColorFactor": [0.8, 0.8, 0.8], "alphaFactor": 1.0, "metallicFactor": 0.0, "roughnessFactor": 0.5,
    "alphaMode": "OPAQUE", "alphaCutoff": 0.5,
    "baseColorTexture": None, "alphaTexture": None, "metallicTexture": None, "roughnessTexture": None,
}
ATTR_LAYOUT = (("base_color", 3), ("metallic", 1), ("roughness", 1), ("alpha", 1))


def nearest_power_of_two(n: int) -> int:
    """Nearest power of two; ties go up (as the reference's texture loader)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    if n & (n - 1) == 0:
        return n
    lower = 1 << (n.bit_length() - 1)
    upper = lower << 1
    return lower if n - lower < upper - n else upper


def decode_texture(png: bytes | Image.Image, channels: int) -> np.ndarray:
    """uint8 (S, S, C) texture as the voxeliser samples it: rows as stored, resized (Lanczos) to a power-of-two
    square when it is not one already."""
    img = png if isinstance(png, Image.Image) else Image.open(io.BytesIO(png))
    # The dump stores RGB for base colour and L for scalars; anything else is converted to that (the reference
    # would assert instead).
    want = "RGB" if channels == 3 else "L"
    if img.mode != want:
        img = img.convert(want)
    if img.width != img.height or img.width & (img.width - 1):
        side = nearest_power_of_two(max(img.width, img.height))
        img = img.resize((side, side), Image.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def build_mips(tex: np.ndarray) -> list[np.ndarray]:
    """Box-filtered mip chain below level 0, integer sum/4 (truncating), down to 1x1."""
    mips = []
    cur = tex
    while cur.shape[0] > 1:
        s = cur.astype(np.uint32)
        nxt = (s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2]) // 4
        cur = nxt.astype(np.uint8)
        mips.append(cur)
    return mips


class TextureAtlas:
    """All textures of all materials in one flat buffer, so a numba kernel can sample any of them."""

    def __init__(self):
        self.chunks: list[np.ndarray] = []
        self.size = 0
        # per texture: [level0 offset, side, channels, n_levels(excluding 0), filter, wrap, first level-table row]
        self.textures: list[list[int]] = []
        self.levels: list[list[int]] = []  # per stored level: [offset, side]

    def _push(self, arr: np.ndarray) -> int:
        off = self.size
        flat = arr.reshape(-1)
        self.chunks.append(flat)
        self.size += flat.size
        return off

    def add(self, tex: np.ndarray, filt: int, wrap: int) -> int:
        off0 = self._push(tex)
        first = len(self.levels)
        mips = build_mips(tex) if filt != 0 else []
        for m in mips:
            self.levels.append([self._push(m), m.shape[0]])
        self.textures.append([off0, tex.shape[0], tex.shape[2], len(mips), filt, wrap, first])
        return len(self.textures) - 1

    def arrays(self):
        data = np.concatenate(self.chunks) if self.chunks else np.zeros(1, np.uint8)
        tex = np.array(self.textures, dtype=np.int64).reshape(-1, 7)
        lv = np.array(self.levels, dtype=np.int64).reshape(-1, 2)
        return data, tex, lv


def prepare_materials(materials: list[dict], load_image) -> tuple:
    """Material tables for the kernel. `load_image(name) -> PNG bytes` resolves texture image names."""
    atlas = TextureAtlas()
    n = len(materials)
    factors = np.zeros((n, 6), dtype=np.float32)   # base rgb, metallic, roughness, alpha
    alpha = np.zeros((n, 2), dtype=np.float32)     # mode, cutoff
    tex_ids = np.full((n, 4), -1, dtype=np.int64)
    for mi, mat in enumerate(materials):
        bc = list(mat.get("baseColorFactor") or [1.0, 1.0, 1.0])[:3]
        if len(bc) < 3:
            raise ValueError(f"material {mi}: baseColorFactor needs 3 values")
        factors[mi, :3] = bc
        factors[mi, 3] = mat.get("metallicFactor", 1.0)
        factors[mi, 4] = mat.get("roughnessFactor", 1.0)
        factors[mi, 5] = mat.get("alphaFactor", 1.0)
        mode = mat.get("alphaMode", "OPAQUE")
        if mode not in ALPHA_MODES:
            raise ValueError(f"material {mi}: unknown alphaMode {mode!r}")
        alpha[mi, 0] = ALPHA_MODES[mode]
        alpha[mi, 1] = mat.get("alphaCutoff", 0.5)
        for si, slot in enumerate(SLOTS):
            pack = mat.get(slot)
            if not pack:
                continue
            filt = FILTERS.get(pack.get("interpolation", "Linear"))
            wrap = WRAPS.get(pack.get("extension", "REPEAT"))
            if filt is None or wrap is None:
                raise ValueError(f"material {mi}: unknown texture interpolation/extension in {slot}")
            tex = decode_texture(load_image(pack["image"]), SLOT_CHANNELS[si])
            tex_ids[mi, si] = atlas.add(tex, filt, wrap)
    data, tex, lv = atlas.arrays()
    return factors, alpha, tex_ids, data, tex, lv


@nb.njit(cache=True, error_model="numpy")
def _wrap(x, W, mode):
    if mode == 1:
        return 0 if x < 0 else (W - 1 if x > W - 1 else x)
    if mode == 2:
        period = 2 * W
        xm = ((x % period) + period) % period
        return xm if xm < W else period - xm - 1
    return ((x % W) + W) % W


@nb.njit(cache=True, error_model="numpy")
def _sample_level(data, off, S, C, u, v, filt, wrap, out):
    x = u * F32(S)
    y = (F32(1.0) - v) * F32(S)
    if filt == 0:
        xi = _wrap(int(np.floor(x)), S, wrap)
        yi = _wrap(int(np.floor(y)), S, wrap)
        for c in range(C):
            out[c] = F32(data[off + (yi * S + xi) * C + c]) / F32(255.0)
    else:
        # the reference forms x - 0.5 in double, then floors it as a float
        xl = int(np.floor(np.float32(np.float64(x) - 0.5)))
        yl = int(np.floor(np.float32(np.float64(y) - 0.5)))
        wx = np.float32(np.float64(x - F32(xl)) - 0.5)
        wy = np.float32(np.float64(y - F32(yl)) - 0.5)
        x0 = _wrap(xl, S, wrap)
        x1 = _wrap(xl + 1, S, wrap)
        y0 = _wrap(yl, S, wrap)
        y1 = _wrap(yl + 1, S, wrap)
        for c in range(C):
            t00 = F32(data[off + (y0 * S + x0) * C + c])
            t01 = F32(data[off + (y0 * S + x1) * C + c])
            t10 = F32(data[off + (y1 * S + x0) * C + c])
            t11 = F32(data[off + (y1 * S + x1) * C + c])
            val = ((F32(1.0) - wx) * (F32(1.0) - wy) * t00 + wx * (F32(1.0) - wy) * t01
                   + (F32(1.0) - wx) * wy * t10 + wx * wy * t11)
            out[c] = val / F32(255.0)


@nb.njit(cache=True, error_model="numpy")
def _sample(data, tex, lv, tid, u, v, mip_length, out, tmp_lo, tmp_hi):
    off0, S, C, nlev, filt, wrap, first = tex[tid, 0], tex[tid, 1], tex[tid, 2], tex[tid, 3], tex[tid, 4], \
        tex[tid, 5], tex[tid, 6]
    if filt == 0:
        _sample_level(data, off0, S, C, u, v, filt, wrap, out)
        return
    level = np.log2(mip_length * F32(S))
    if not np.isfinite(level) or level <= F32(0.0) or nlev == 0:
        _sample_level(data, off0, S, C, u, v, filt, wrap, out)
    elif level >= F32(nlev):
        _sample_level(data, lv[first + nlev - 1, 0], lv[first + nlev - 1, 1], C, u, v, filt, wrap, out)
    else:
        lo = int(np.floor(level))
        frac = level - F32(lo)
        if lo == 0:
            _sample_level(data, off0, S, C, u, v, filt, wrap, tmp_lo)
        else:
            _sample_level(data, lv[first + lo - 1, 0], lv[first + lo - 1, 1], C, u, v, filt, wrap, tmp_lo)
        _sample_level(data, lv[first + lo, 0], lv[first + lo, 1], C, u, v, filt, wrap, tmp_hi)
        for c in range(C):
            out[c] = (F32(1.0) - frac) * tmp_lo[c] + frac * tmp_hi[c]


@nb.njit(cache=True, error_model="numpy")
def _pbr_kernel(tris, uvs, mat_ids, res, h32, factors, alpha_tab, tex_ids, data, tex, lv):
    h = np.float64(h32)
    F = tris.shape[0]
    cap = max(4096, F * 4)
    coords = np.zeros((cap, 3), dtype=np.int32)
    acc = np.zeros((cap, 7), dtype=np.float32)  # weight, r, g, b, metallic, roughness, alpha
    last = np.full(cap, -1, dtype=np.int64)     # last triangle that sampled this voxel (per-triangle dedupe)
    keys, vals = ht_new(cap)
    buf = np.empty((256, 7))
    n = 0
    R = np.int64(res)
    col = np.empty(3, dtype=np.float32)
    tlo = np.empty(3, dtype=np.float32)
    thi = np.empty(3, dtype=np.float32)
    for f in range(F):
        tri = tris[f]
        v0 = tri[0]
        v1 = tri[1]
        v2 = tri[2]
        e1 = (v1[0] - v0[0], v1[1] - v0[1], v1[2] - v0[2])
        e2 = (v2[0] - v0[0], v2[1] - v0[1], v2[2] - v0[2])
        nx = e1[1] * e2[2] - e1[2] * e2[1]
        ny = e1[2] * e2[0] - e1[0] * e2[2]
        nz = e1[0] * e2[1] - e1[1] * e2[0]
        sq = dot3(nx, ny, nz, nx, ny, nz)
        if sq > F32(0.0):
            s = np.sqrt(sq)
            nx, ny, nz = nx / s, ny / s, nz / s
        uv0u, uv0v = uvs[f, 0, 0], uvs[f, 0, 1]
        uv1u, uv1v = uvs[f, 1, 0], uvs[f, 1, 1]
        uv2u, uv2v = uvs[f, 2, 0], uvs[f, 2, 1]
        d1u, d1v = uv1u - uv0u, uv1v - uv0v
        d2u, d2v = uv2u - uv0u, uv2v - uv0v
        det = d1u * d2v - d1v * d2u
        if abs(np.float64(det)) < 1e-6:
            mlx = F32(1e6)
            mly = F32(1e6)
        else:
            inv = F32(1.0) / det
            tx, ty, tz = d2v * e1[0] - d1v * e2[0], d2v * e1[1] - d1v * e2[1], d2v * e1[2] - d1v * e2[2]
            bx, by, bz = d1u * e2[0] - d2u * e1[0], d1u * e2[1] - d2u * e1[1], d1u * e2[2] - d2u * e1[2]
            mlx = inv * np.sqrt(dot3(tx, ty, tz, tx, ty, tz))
            mly = inv * np.sqrt(dot3(bx, by, bz, bx, by, bz))
        mip_length = h32 / np.sqrt(mlx * mly)
        mid = mat_ids[f]
        ab = e1
        ac = e2
        d00 = dot3(ab[0], ab[1], ab[2], ab[0], ab[1], ab[2])
        d01 = dot3(ab[0], ab[1], ab[2], ac[0], ac[1], ac[2])
        d11 = dot3(ac[0], ac[1], ac[2], ac[0], ac[1], ac[2])
        denom = d00 * d11 - d01 * d01
        m, buf = scan_triangle(tri, h, res, buf)
        for c in range(m):
            a = int(buf[c, 6])
            b = (a + 1) % 3
            cc = (a + 2) % 3
            for db in range(2):
                for dc in range(2):
                    vx = np.int64(buf[c, 0]) + (db if b == 0 else 0) + (dc if cc == 0 else 0)
                    vy = np.int64(buf[c, 1]) + (db if b == 1 else 0) + (dc if cc == 1 else 0)
                    vz = np.int64(buf[c, 2]) + (db if b == 2 else 0) + (dc if cc == 2 else 0)
                    key = (vx * R + vy) * R + vz
                    sl = ht_slot(keys, key)
                    if keys[sl] == -1:
                        if n >= cap:
                            cap *= 2
                            nc = np.zeros((cap, 3), dtype=np.int32)
                            nc[:n] = coords[:n]
                            coords = nc
                            na = np.zeros((cap, 7), dtype=np.float32)
                            na[:n] = acc[:n]
                            acc = na
                            nl = np.full(cap, -1, dtype=np.int64)
                            nl[:n] = last[:n]
                            last = nl
                        if (n + 1) * 2 > keys.shape[0]:
                            keys, vals = ht_rehash(keys, vals)
                            sl = ht_slot(keys, key)
                        keys[sl] = key
                        vals[sl] = n
                        coords[n, 0] = vx
                        coords[n, 1] = vy
                        coords[n, 2] = vz
                        i = n
                        n += 1
                    else:
                        i = vals[sl]
                    if last[i] == f:
                        continue
                    last[i] = f
                    # sample at the voxel centre projected onto the triangle's plane
                    px = (F32(vx) + F32(0.5)) * h32
                    py = (F32(vy) + F32(0.5)) * h32
                    pz = (F32(vz) + F32(0.5)) * h32
                    dist = dot3(px - v0[0], py - v0[1], pz - v0[2], nx, ny, nz)
                    qx, qy, qz = px - dist * nx, py - dist * ny, pz - dist * nz
                    apx, apy, apz = qx - v0[0], qy - v0[1], qz - v0[2]
                    d20 = dot3(apx, apy, apz, ab[0], ab[1], ab[2])
                    d21 = dot3(apx, apy, apz, ac[0], ac[1], ac[2])
                    bv = (d11 * d20 - d01 * d21) / denom
                    bw = (d00 * d21 - d01 * d20) / denom
                    bu = F32(1.0) - bv - bw
                    u = bu * uv0u + bv * uv1u + bw * uv2u
                    v = bu * uv0v + bv * uv1v + bw * uv2v
                    w = F32(1.0) - dist
                    # base colour
                    t = tex_ids[mid, 0]
                    if t >= 0:
                        _sample(data, tex, lv, t, u, v, mip_length, col, tlo, thi)
                    else:
                        col[0] = F32(1.0)
                        col[1] = F32(1.0)
                        col[2] = F32(1.0)
                    r = col[0] * factors[mid, 0]
                    g = col[1] * factors[mid, 1]
                    bl = col[2] * factors[mid, 2]
                    t = tex_ids[mid, 1]
                    if t >= 0:
                        _sample(data, tex, lv, t, u, v, mip_length, col, tlo, thi)
                        met = col[0]
                    else:
                        met = F32(1.0)
                    met = met * factors[mid, 3]
                    t = tex_ids[mid, 2]
                    if t >= 0:
                        _sample(data, tex, lv, t, u, v, mip_length, col, tlo, thi)
                        rough = col[0]
                    else:
                        rough = F32(1.0)
                    rough = rough * factors[mid, 4]
                    al = F32(1.0)
                    if alpha_tab[mid, 0] != F32(0.0):
                        t = tex_ids[mid, 3]
                        if t >= 0:
                            _sample(data, tex, lv, t, u, v, mip_length, col, tlo, thi)
                            al = col[0]
                        al = al * factors[mid, 5]
                        if alpha_tab[mid, 0] == F32(1.0):
                            al = F32(0.0) if al < alpha_tab[mid, 1] else F32(1.0)
                    acc[i, 0] += w
                    acc[i, 1] += r * w
                    acc[i, 2] += g * w
                    acc[i, 3] += bl * w
                    acc[i, 4] += met * w
                    acc[i, 5] += rough * w
                    acc[i, 6] += al * w
    return coords[:n].copy(), acc[:n].copy()


def _to_u8(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(x.astype(np.float32) * np.float32(255), nan=0.0)
    return np.clip(x, 0, 255).astype(np.uint8)


def voxelize_pbr(vertices, faces, uvs, mat_ids, materials, load_image, grid_size: int,
                 aabb=UNIT_AABB, has_uv=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """PBR voxels of a normalised mesh. `materials` are dump material dicts (the default material already appended
    and `mat_ids` already remapped, see `prepare_dump_materials`). Returns (coords int32 (N,3) in discovery order,
    {base_color (N,3), metallic, roughness, alpha (N,1)} uint8)."""
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    h32 = _voxel_size(grid_size, aabb)
    tris = np.ascontiguousarray((vertices - np.asarray(aabb, dtype=np.float32)[0])[faces])
    uv = np.array(uvs, dtype=np.float32).reshape(len(faces), 3, 2)
    if has_uv is not None:
        uv[~np.asarray(has_uv, dtype=bool)] = 0
    uv[:, :, 1] = np.float32(1) - uv[:, :, 1]  # the reference flips v before sampling (and the sampler flips again)
    mids = np.asarray(mat_ids, dtype=np.int64)
    if len(mids) != len(faces):
        raise ValueError("mat_ids must have one entry per face")
    if len(mids) and (mids.min() < 0 or mids.max() >= len(materials)):
        raise ValueError("mat_ids out of range of the materials")
    factors, alpha_tab, tex_ids, data, tex, lv = prepare_materials(materials, load_image)
    coords, acc = _pbr_kernel(tris, uv, mids, int(grid_size), h32, factors, alpha_tab, tex_ids, data, tex, lv)
    vals = acc[:, 1:] / acc[:, :1]
    attrs = {
        "base_color": _to_u8(vals[:, 0:3]),
        "metallic": _to_u8(vals[:, 3:4]),
        "roughness": _to_u8(vals[:, 4:5]),
        "alpha": _to_u8(vals[:, 5:6]),
    }
    return coords, attrs
