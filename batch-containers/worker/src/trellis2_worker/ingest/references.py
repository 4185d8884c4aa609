"""Every file an asset's importer may open, resolved the way that importer resolves it, and the containment rule.

An asset may only use files inside its extracted folder (`root`). For each format the files the importer would open
are listed here with the importer's own normalisation, learnt from its source:
- glTF / GLB (Blender's io_scene_gltf2, `io/com/path.py` `uri_to_path` and `io/imp/gltf2_io_gltf.py` `load_uri`):
  the importer sniffs the bytes (`glTF` magic = GLB, anything else = JSON) whatever the name; a buffer or image
  `uri` becomes `join(dirname(file), normpath(unquote(uri.replace('\\\\', '/'))))`, absolute paths win the join, and a
  `data:` URI without `;base64,` is a path like any other.
- OBJ / MTL (Blender's C++ importer, `source/blender/io/wavefront_obj/importer/obj_import_file_reader.cc`,
  `obj_import_string_utils.cc`, `obj_import_mtl.cc`): `mtllib` takes the rest of the line (spaces included, one
  pair of surrounding quotes removed), plus `<obj name>.mtl` when it exists; a map line's options (`-o 1 1 1`,
  `-s`, `-bm`, `-type`, `-mm`, ...) are skipped and the rest of the line is the image path, quotes removed; Blender
  then tries `mtl_dir + path`, `path` itself (relative to its working folder, which the worker sets to `root`),
  `path` with `_` read as spaces, and `mtl_dir + basename(path)`. Bytes <= 0x20 and >= 0x80 are whitespace to its
  tokeniser (signed `char`); backslashes are checked both as literal characters and as separators.
- .blend: a library (another .blend) is read as the file opens, so a file holding a library block is refused here;
  its images, fonts, caches... are read later and are checked inside the Blender pass, as are FBX textures
  (blender_pass.py), where Blender's own FBX parser and path list are at hand.
Nothing outside `root` is ever opened here: a candidate is tested by its resolved path first.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trellis2_worker.ingest import quality

# The largest texture side accepted: a texture is decoded to float RGBA by the dump (16 bytes a pixel), so 8192² is
# 1 GiB already; a 30000² PNG took 3.8 GB before it was bounded.
MAX_TEXTURE_SIDE = 8192
_SHOWN = 160  # characters of a reference shown in a reason
_GLB_MAGIC = b"glTF"


class Refused(Exception):
    """The asset refers to something it may not use; the message is the one-line reason."""


@dataclass(frozen=True)
class Reference:
    kind: str  # what the importer loads it as: "buffer", "image", "material library", "texture"
    written: str  # as written in the asset (shown in reasons, escaped and shortened)
    name: str  # the name it has in the object's key (stable across runs)
    target: Path | None  # the file the importer would load, inside root; None when none exists


def shown(text: str) -> str:
    """A reference as a reason shows it: printable, one line, bounded."""
    text = text.encode("unicode_escape", errors="replace").decode("ascii", errors="replace")
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def inside(root: Path, candidate: str | os.PathLike) -> bool:
    """Whether the path, with symlinks followed as the importer's open() would, lies inside root."""
    candidate = os.fspath(candidate)
    if "\x00" in candidate:
        return False
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, candidate))
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def sniff_format(path: Path, fmt: str) -> str:
    """The format the importer will see in the bytes: Blender's glTF importer reads GLB by its magic and anything
    else as JSON, whichever the file's name says."""
    if fmt in ("glb", "gltf"):
        with open(path, "rb") as f:
            return "glb" if f.read(4) == _GLB_MAGIC else "gltf"
    return fmt


def references(path: Path, fmt: str, root: Path) -> list[Reference]:
    """The files the asset's importer would open (glTF/GLB/OBJ; none for the others here); raises Refused when one
    of them may lie outside root or the file cannot be read the way the importer reads it."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return _references_of(path, root, *_open_asset(path, fmt, root))


def _open_asset(path: Path, fmt: str, root: Path) -> tuple[str, _GltfRefs | None]:
    """(the format the importer sees, the parsed glTF/GLB or None), each file read once; Refused when the object
    lies outside root."""
    if not inside(root, path):
        raise Refused("the object itself lies outside the archive")
    kind = sniff_format(path, fmt)
    return kind, _GltfRefs(path, root, kind) if kind in ("glb", "gltf") else None


def _references_of(path: Path, root: Path, kind: str, gltf: _GltfRefs | None) -> list[Reference]:
    if gltf is not None:
        return gltf.references()
    if kind == "obj":
        return _obj_references(path, root)
    if kind == "blend":
        _check_blend(path)
    return []


def check(path: Path, fmt: str, root: Path) -> str | None:
    """A one-line reason the asset's references are refused (outside the archive, unreadable, a texture past
    MAX_TEXTURE_SIDE), or None."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        kind, gltf = _open_asset(path, fmt, root)
        for ref in _references_of(path, root, kind, gltf):
            if ref.kind == "buffer" and ref.target is None:
                return f"missing buffer: {shown(ref.written)} (referenced by {shown(Path(path).name)}) is not in " \
                       f"the archive"
            if ref.kind in ("image", "texture") and ref.target is not None:
                with open(ref.target, "rb") as f:
                    check_texture_size(f, f"{ref.kind} {shown(ref.written)}")
        if gltf is not None:
            gltf.check_embedded_images()
            reason = quality.nonfinite_refusal(*gltf.nonfinite_positions())
            if reason:
                return reason
        elif fmt in _NONFINITE_READERS:
            reason = quality.nonfinite_refusal(*_NONFINITE_READERS[fmt](path))
            if reason:
                return reason
    except Refused as exc:
        return str(exc)
    except OSError:
        return "cannot read the object or one of the files it refers to"
    return None


def check_texture_size(stream, what: str) -> None:
    """Raises Refused when the image header in `stream` declares a side past MAX_TEXTURE_SIDE. Reads the header
    only (Pillow opens lazily); a format Pillow does not know is left to the importer and the memory cap."""
    from PIL import Image

    try:
        with Image.open(stream) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        raise Refused(f"{what} is over the {MAX_TEXTURE_SIDE}-pixel side limit (its header declares more pixels "
                      f"than are decoded safely)") from None
    except Exception:  # noqa: BLE001 - not an image Pillow knows (EXR, HDR, ...): nothing declared to check
        return
    if max(width, height) > MAX_TEXTURE_SIDE:
        raise Refused(f"{what} is {width}x{height} pixels, over the {MAX_TEXTURE_SIDE}-pixel side limit")


# ----------------------------------------------------------------------------------------------------------------
# .blend: a library (another .blend) is read while the file opens, before any check inside Blender could run, so
# a file that links one is refused from its block list. Its images, fonts, caches... are read later and checked
# inside the Blender pass.


def _check_blend(path: Path) -> None:
    """Walks the block headers (as bpy's blend_render_info.py does, gzip and zstd included) and refuses a file
    holding a library block ('LI') or that cannot be walked to its end."""
    with open(path, "rb") as raw:
        head = raw.read(4)
        raw.seek(0)
        if head[:2] == b"\x1f\x8b":
            import gzip
            stream = gzip.open(raw, "rb")
        elif head == b"\x28\xb5\x2f\xfd":
            import zstandard
            stream = zstandard.open(raw, "rb")
        else:
            stream = raw
        try:
            _walk_blend(stream)
        except (OSError, EOFError, struct.error, ValueError):
            raise Refused("not a readable .blend file (its block list is damaged)") from None
        finally:
            if stream is not raw:
                stream.close()


def _walk_blend(f) -> None:
    header = f.read(12)
    if not header.startswith(b"BLENDER"):
        raise Refused("not a .blend file (no Blender file header)")
    if header[7:9].isdigit():  # the newer header, "BLENDER17-01v0500": 64-bit blocks with 64-bit lengths
        size, fmt = int(header[7:9]), header[10:12]
        if fmt != b"01" or size < 12:
            raise Refused("a .blend in a file format this Blender does not read")
        f.read(size - 12)
        layout, bhead = "<4siQqq", 32
    else:
        order = ">" if header[8:9] == b"V" else "<"
        layout, bhead = (order + "4si" + ("Q" if header[7:8] == b"-" else "I") + "ii"), \
            (24 if header[7:8] == b"-" else 20)
    while True:
        block = f.read(bhead)
        if len(block) < 8:
            raise ValueError("truncated")
        fields = struct.unpack(layout, block)
        code, length = fields[0], (fields[3] if bhead == 32 else fields[1])
        if code == b"ENDB":
            return
        if code == b"LI\0\0":
            raise Refused(".blend links other .blend files (libraries); save it with its data appended or packed")
        if length < 0:
            raise ValueError("negative block")
        while length > 0:  # skip the block's data (a forward read: compressed streams cannot seek back)
            chunk = f.read(min(length, 1 << 20))
            if not chunk:
                raise ValueError("truncated")
            length -= len(chunk)


# ----------------------------------------------------------------------------------------------------------------
# glTF / GLB


def _gltf_path(uri: str) -> str:
    # As io_scene_gltf2's uri_to_path: backslashes first, then URL escapes, then normpath.
    return os.path.normpath(urllib.parse.unquote(uri.replace("\\", "/")))


def _embedded(uri: str) -> bytes | None:
    """A data: URI's bytes when the importer decodes it (it needs ';base64,'); None when it reads it as a path."""
    if uri.startswith("data:"):
        idx = uri.find(";base64,")
        if idx != -1:
            try:
                return base64.b64decode(uri[idx + len(";base64,"):])
            except ValueError:
                return b""  # the importer fails on it too, reading nothing else
    return None


class _GltfRefs:
    def __init__(self, path: Path, root: Path, kind: str):
        self.path, self.root = path, root
        self.folder = str(path.parent)
        self.doc, self.bin_chunk = self._load(kind)

    def _load(self, kind: str):
        content = self.path.read_bytes()
        bin_chunk = None
        if kind == "glb":
            # The importer's GLB checks (gltf2_io_gltf.py load_glb): anything it refuses, it never reads further.
            if len(content) < 20:
                raise Refused("not a valid GLB file (truncated header)")
            version, size = struct.unpack_from("<II", content, 4)
            if version != 2 or size != len(content):
                raise Refused("not a valid GLB file (version or length does not match)")
            length, ctype = struct.unpack_from("<I4s", content, 12)
            if ctype != b"JSON":
                raise Refused("not a valid GLB file (first chunk is not JSON)")
            json_bytes = content[20:20 + length]
            if len(json_bytes) != length:
                raise Refused("not a valid GLB file (truncated JSON chunk)")
            offset = 20 + length
            if offset + 8 <= len(content):
                blen, btype = struct.unpack_from("<I4s", content, offset)
                if btype == b"BIN\0":
                    bin_chunk = content[offset + 8:offset + 8 + blen]
        else:
            json_bytes = content
        try:
            doc = json.loads(str(json_bytes, "utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(f"not a valid glTF JSON file: {type(exc).__name__} at {getattr(exc, 'pos', '?')}") \
                from None
        if not isinstance(doc, dict):
            raise Refused("not a valid glTF JSON file: top level is not an object")
        return doc, bin_chunk

    def _items(self, kind: str) -> list:
        items = self.doc.get(kind) or []
        if not isinstance(items, list):
            raise Refused(f"not a valid glTF file: '{kind}' is not a list")
        return items

    def _uri(self, item, kind: str) -> str | None:
        uri = item.get("uri") if isinstance(item, dict) else None
        if uri is not None and not isinstance(uri, str):
            raise Refused(f"not a valid glTF file: a {kind} uri is not a string")
        return uri

    def references(self) -> list[Reference]:
        refs = []
        for kind in ("buffers", "images"):
            for item in self._items(kind):
                uri = self._uri(item, kind[:-1])
                # The importer: a buffer with any uri goes through load_uri; an image with a uri not starting
                # with data: is a file, one starting with data: goes through load_uri too.
                if not uri or _embedded(uri) is not None:
                    continue
                rel = _gltf_path(uri)
                if not inside(self.root, os.path.join(self.folder, rel)):
                    raise Refused(f"glTF {kind[:-1]} refers outside the archive: {shown(uri)}")
                target = Path(self.folder, rel)
                refs.append(Reference(kind[:-1], uri, urllib.parse.unquote(uri),
                                      target if target.is_file() else None))
        return refs

    def _buffer_bytes(self, index: int) -> bytes | None:
        buffers = self._items("buffers")
        if not isinstance(index, int) or not 0 <= index < len(buffers):
            return None
        uri = self._uri(buffers[index], "buffer")
        if not uri:
            return self.bin_chunk if index == 0 else None
        data = _embedded(uri)
        if data is not None:
            return data
        target = Path(self.folder, _gltf_path(uri))  # checked inside by references()
        return target.read_bytes() if target.is_file() else None

    def nonfinite_positions(self) -> tuple[int, int]:
        """(vertices with an infinite or NaN coordinate, vertices) over the float POSITION accessors of every mesh
        primitive, each accessor once. Blender's importers zero such coordinates without a word, which leaves a
        crumpled mesh, so they are counted here, before Blender. Accessors that are sparse, not float or out of
        their buffer's bounds are left to the importer."""
        accessors, views = self._items("accessors"), self._items("bufferViews")
        seen: set[int] = set()
        bad = total = 0
        for mesh in self._items("meshes"):
            for prim in (mesh.get("primitives") or []) if isinstance(mesh, dict) else []:
                index = prim.get("attributes", {}).get("POSITION") if isinstance(prim, dict) else None
                if not isinstance(index, int) or not 0 <= index < len(accessors) or index in seen:
                    continue
                seen.add(index)
                acc = accessors[index]
                if not isinstance(acc, dict) or acc.get("componentType") != 5126 or acc.get("type") != "VEC3" \
                        or "sparse" in acc or not isinstance(acc.get("bufferView"), int) \
                        or not 0 <= acc["bufferView"] < len(views) or not isinstance(views[acc["bufferView"]], dict):
                    continue
                view = views[acc["bufferView"]]
                buf = self._buffer_bytes(view.get("buffer"))
                count, stride = acc.get("count", 0), view.get("byteStride") or 12
                start = view.get("byteOffset", 0) + acc.get("byteOffset", 0) if isinstance(
                    view.get("byteOffset", 0), int) and isinstance(acc.get("byteOffset", 0), int) else -1
                if buf is None or not all(isinstance(x, int) for x in (count, stride)) or count <= 0 \
                        or stride < 12 or start < 0 or start + (count - 1) * stride + 12 > len(buf):
                    continue
                co = np.ndarray((count, 3), "<f4", buffer=buf, offset=start, strides=(stride, 4))
                bad += int((~np.isfinite(co).all(axis=1)).sum())
                total += count
        return bad, total

    def check_embedded_images(self) -> None:
        """The texture bound for images inside the file (data: URIs, buffer views), read from their headers."""
        views = self._items("bufferViews")
        for i, item in enumerate(self._items("images")):
            uri = self._uri(item, "image")
            data = _embedded(uri) if uri else None
            if data is None and not uri and isinstance(item, dict) and "bufferView" in item:
                view = views[item["bufferView"]] if isinstance(item["bufferView"], int) and \
                    0 <= item["bufferView"] < len(views) else None
                if isinstance(view, dict):
                    buf = self._buffer_bytes(view.get("buffer"))
                    start, length = view.get("byteOffset", 0), view.get("byteLength", 0)
                    if buf is not None and isinstance(start, int) and isinstance(length, int):
                        data = buf[start:start + length]
            if data is not None:
                check_texture_size(io.BytesIO(data), f"embedded image {i}")


def _stl_nonfinite(path: Path) -> tuple[int, int]:
    """(vertices with an infinite or NaN coordinate, vertices) of a binary STL (fixed 50-byte records after an
    80-byte header and a count); (0, 0) for an ASCII STL or a size that does not match its count."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(84)
        if len(head) < 84:
            return 0, 0
        count = int.from_bytes(head[80:84], "little")
        if size != 84 + 50 * count or count == 0:
            return 0, 0
        bad, left = 0, count
        while left:  # in chunks: a binary STL may be gigabytes
            n = min(left, 1 << 20)
            records = np.fromfile(f, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")], count=n)
            bad += int((~np.isfinite(records["v"].reshape(-1, 3)).all(axis=1)).sum())
            left -= n
    return bad, 3 * count


def _obj_nonfinite(path: Path) -> tuple[int, int]:
    """(vertices with an infinite or NaN coordinate, vertices) over an OBJ's `v` lines, read a line at a time."""
    bad = total = 0
    with open(path, "rb") as f:
        for line in f:
            if line[:2] not in (b"v ", b"v\t"):
                continue
            total += 1
            try:
                xyz = [float(t) for t in line.split()[1:4]]
            except ValueError:
                continue  # not a number at all: Blender's own reader decides about such a line
            if not all(np.isfinite(xyz)):
                bad += 1
    return bad, total


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _ply_nonfinite(path: Path) -> tuple[int, int]:
    """(vertices with an infinite or NaN x/y/z, vertices) of a PLY whose first element is `vertex` with scalar
    properties (ASCII or binary, as its header says); (0, 0) for a header this reader does not follow (Blender's
    importer and the checks on its dump then decide)."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            return 0, 0
        fmt, first, count, props, elements = None, None, 0, [], 0
        for _ in range(10000):
            words = f.readline().decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format" and len(words) > 1:
                fmt = words[1]
            elif words[0] == "element" and len(words) == 3:
                elements += 1
                if elements == 1:
                    first, count = words[1], int(words[2]) if words[2].isdigit() else -1
            elif words[0] == "property" and elements == 1:  # only the first element's properties are read
                if len(words) != 3 or words[1] not in _PLY_TYPES:
                    return 0, 0  # a list property in the vertex element: not followed here
                props.append((words[2], _PLY_TYPES[words[1]]))
        else:
            return 0, 0
        names = [n for n, _ in props]
        if first != "vertex" or count <= 0 or not {"x", "y", "z"} <= set(names):
            return 0, 0
        cols = [names.index(a) for a in "xyz"]
        bad, left = 0, count
        while left:  # in chunks: a PLY may be gigabytes
            n = min(left, 1 << 20)
            if fmt == "ascii":
                rows = [f.readline().split() for _ in range(n)]
                try:
                    xyz = np.array([[float(r[c]) for c in cols] for r in rows if len(r) == len(props)], np.float64)
                except ValueError:
                    return 0, 0
            elif fmt in ("binary_little_endian", "binary_big_endian"):
                order = "<" if fmt == "binary_little_endian" else ">"
                dtype = np.dtype([(name, order + t) for name, t in props])
                data = np.fromfile(f, dtype=dtype, count=n)
                xyz = np.stack([data[a].astype(np.float64) for a in "xyz"], axis=1) if len(data) else np.zeros((0, 3))
            else:
                return 0, 0
            if len(xyz) == 0:
                break
            bad += int((~np.isfinite(xyz).all(axis=1)).sum())
            left -= n
    return bad, count


# Formats whose coordinates are read here, before Blender: its importers zero an inf or NaN silently.
_NONFINITE_READERS = {"stl": _stl_nonfinite, "obj": _obj_nonfinite, "ply": _ply_nonfinite}


# ----------------------------------------------------------------------------------------------------------------
# OBJ / MTL, tokenised as Blender's C++ importer does


def _ws(byte: int) -> bool:
    return byte <= 0x20 or byte >= 0x80  # `c <= ' '` on a signed char


def _drop_ws(line: bytes, p: int) -> int:
    while p < len(line) and _ws(line[p]):
        p += 1
    return p


def _drop_non_ws(line: bytes, p: int) -> int:
    while p < len(line) and not _ws(line[p]):
        p += 1
    return p


def _keyword(line: bytes, p: int, word: bytes) -> int | None:
    """parse_keyword: the word followed by whitespace; the position after that whitespace character."""
    n = len(word)
    if len(line) - p < n + 1 or line[p:p + n] != word or not _ws(line[p + n]):
        return None
    return p + n + 1


_FLOAT = re.compile(rb"-?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)", re.I)


def _parse_float(line: bytes, p: int) -> int:
    """parse_float(skip_space, require_trailing_space): a number is consumed only when whitespace or the end
    follows it; otherwise the position after the skipped whitespace (and '+')."""
    p = _drop_ws(line, p)
    if p < len(line) and line[p:p + 1] == b"+":
        p += 1
    m = _FLOAT.match(line, p)
    if not m:
        return p
    end = m.end()
    if end < len(line) and not _ws(line[end]):
        return p
    return end


# Options Blender's MTL reader skips before the path, with how many arguments each takes (floats for -o/-s/-bm).
_FLOAT_OPTIONS = {b"-o": 3, b"-s": 3, b"-bm": 1}
_WORD_OPTIONS = {b"-type": 1, b"-blendu": 1, b"-blendv": 1, b"-boost": 1, b"-cc": 1, b"-clamp": 1, b"-imfchan": 1,
                 b"-mm": 2, b"-t": 3, b"-texres": 1}
_TRIM = b" \t\n\v\f\r"


def mtl_map_path(line: bytes) -> str | None:
    """The image path of an MTL map line (`map_Kd -o 1 1 1 name with spaces.png` -> `name with spaces.png`), as
    Blender's MTL reader takes it; None for lines that are not maps."""
    p = _drop_ws(line, 0)
    word = line[p:_drop_non_ws(line, p)]
    # Blender reads map_*, refl and bump lines; norm/disp/decal too here, as other readers take them as maps.
    if not (word.startswith((b"map_", b"refl", b"bump")) or word in (b"norm", b"disp", b"decal")):
        return None
    p = _keyword(line, p, word)
    if p is None:
        return None
    while True:
        p = _drop_ws(line, p)
        for opt, count in _FLOAT_OPTIONS.items():
            q = _keyword(line, p, opt)
            if q is not None:
                for _ in range(count):
                    q = _parse_float(line, q)
                p = q
                break
        else:
            for opt, count in _WORD_OPTIONS.items():
                q = _keyword(line, p, opt)
                if q is not None:
                    for _ in range(count):
                        q = _drop_non_ws(line, _drop_ws(line, q))
                    p = q
                    break
            else:
                break
    path = line[p:].strip(_TRIM).replace(b'"', b"")
    return path.split(b"\0")[0].decode("utf-8", errors="surrogateescape")


def _lines(data: bytes, continuations: bool) -> list[bytes]:
    if continuations:  # the OBJ reader turns a backslash before a newline (spaces between allowed) into spaces
        data = re.sub(rb"\\([\x00-\x09\x0b-\x20]*)\n", lambda m: b" " + m.group(1) + b" ", data)
    return data.split(b"\n")


def obj_mtllibs(path: Path) -> list[str]:
    """The material libraries an OBJ names, as Blender's reader takes them, plus `<name>.mtl` when it exists."""
    libs: list[str] = []
    for line in _lines(path.read_bytes(), continuations=True):
        p = _keyword(line, _drop_ws(line, 0), b"mtllib")
        if p is None:
            continue
        lib = line[p:].strip(_TRIM)
        if len(lib) > 2 and lib.startswith(b'"') and lib.endswith(b'"'):
            lib = lib[1:-1]
        name = lib.split(b"\0")[0].decode("utf-8", errors="surrogateescape")
        if name not in libs:
            libs.append(name)
    default = path.with_suffix(".mtl").name
    if path.with_suffix(".mtl").exists() and default not in libs:
        libs.append(default)
    return libs


def _forms(base: str, written: str) -> list[str]:
    """Every path a written reference may become: joined (an absolute path wins) or appended to the base folder,
    with backslashes literal or as separators. All of them must stay inside."""
    out = []
    for w in (written, written.replace("\\", "/")):
        for p in (os.path.join(base, w), base.rstrip("/") + "/" + w.lstrip("/")):
            if p not in out:
                out.append(p)
    return out


def _mtl_texture_candidates(mtl_dir: str, root: str, image: str) -> list[str]:
    """load_texture_image's attempts, in its order: mtl_dir + path, path (relative to the working folder, root),
    path with '_' as spaces, mtl_dir + basename(path)."""
    base = re.split(r"[/\\]", image)[-1]
    spaced = image.replace("_", " ")
    out = _forms(mtl_dir, image) + _forms(root, image)
    if spaced != image:
        out += _forms(root, spaced)
    out += _forms(mtl_dir, base)
    return out


def _first_file(candidates: list[str]) -> Path | None:
    return next((Path(c) for c in candidates if os.path.isfile(c)), None)


def _obj_references(path: Path, root: Path) -> list[Reference]:
    refs: list[Reference] = []
    root_s, obj_dir = str(root), str(path.parent)
    for lib in obj_mtllibs(path):
        forms = _forms(obj_dir, lib)
        if not all(inside(root, f) for f in forms):
            raise Refused(f"OBJ material library refers outside the archive: {shown(lib)}")
        mtl = _first_file([os.path.normpath(f) for f in forms])
        refs.append(Reference("material library", lib, lib, mtl))
        if mtl is None:
            continue
        material = False
        for line in _lines(mtl.read_bytes(), continuations=False):
            p = _drop_ws(line, 0)
            if _keyword(line, p, b"newmtl") is not None:
                material = True
                continue
            image = mtl_map_path(line) if material else None
            if not image:
                continue
            candidates = _mtl_texture_candidates(str(mtl.parent), root_s, image)
            if not all(inside(root, c) for c in candidates):
                raise Refused(f"OBJ material {shown(lib)} refers to a texture outside the archive: {shown(image)}")
            name = os.path.normpath(os.path.join(os.path.dirname(lib), image.replace("\\", "/")))
            refs.append(Reference("texture", image, name, _first_file(candidates)))
    return refs
