"""Reading a preprocessed dataset: `open_dataset(zip_or_dir) -> Dataset`, the loaders training consumes.

Opening checks `prepared_dataset.json` (version, resolution, objects); the deep checks of every file are
`validate_dataset`'s (validation.py). npz files are loaded with `allow_pickle=False`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from trellis2_worker.dataset import layout, limits
from trellis2_worker.dataset.archive import Source, open_source
from trellis2_worker.errors import InputError


class SparseLatent(NamedTuple):
    feats: np.ndarray  # float32 (T, C)
    coords: np.ndarray  # int32 (T, 3) on the (R/16)^3 latent grid, in file order


def load_npz(source: Source, name: str) -> dict[str, np.ndarray]:
    try:
        data = source.read(name)
    except FileNotFoundError:
        raise InputError(f"dataset is missing {name}") from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(f"{name} holds pickled objects; datasets must not contain pickles") from None
        raise InputError(f"{name} is not a readable npz file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - zip/format errors of every kind mean the same to the user
        raise InputError(f"{name} is not a readable npz file: {exc}") from None


@dataclass
class Dataset:
    """A preprocessed dataset opened for reading; `objects` are sha256 keys in `prepared_dataset.json` order.

    Loaders return what training consumes: `ss_latent(sha)` float32 (8,16,16,16); `shape_latent(sha)` and
    `pbr_latent(sha)` a `SparseLatent(feats float32 (T,C), coords int32 (T,3))`, rows in file order (the PBR coords
    equal the shape coords row by row); `renders(sha)` the condition views as RGBA PIL images.
    """

    info: dict
    metadata: list[dict]
    source: Source

    @property
    def resolution(self) -> int:
        return int(self.info["resolution"])

    @property
    def base_model(self) -> str:
        return str(self.info["base_model"])

    @property
    def objects(self) -> list[str]:
        return [o["sha256"] for o in self.info["objects"]]

    def object_info(self, sha: str) -> dict:
        for o in self.info["objects"]:
            if o["sha256"] == sha:
                return o
        raise KeyError(sha)

    def ss_latent(self, sha: str) -> np.ndarray:
        return load_npz(self.source, layout.ss_path(sha))["z"].astype(np.float32, copy=False)

    def _sparse(self, name: str) -> SparseLatent:
        d = load_npz(self.source, name)
        return SparseLatent(d["feats"].astype(np.float32, copy=False), d["coords"].astype(np.int32))

    def shape_latent(self, sha: str) -> SparseLatent:
        return self._sparse(layout.shape_path(sha, self.resolution))

    def pbr_latent(self, sha: str) -> SparseLatent:
        return self._sparse(layout.pbr_path(sha, self.resolution))

    def num_renders(self, sha: str) -> int:
        return int(self.object_info(sha)["renders"])

    def render(self, sha: str, view: int):
        from PIL import Image

        img = Image.open(io.BytesIO(self.source.read(layout.render_path(sha, view))))
        img.load()
        return img

    def renders(self, sha: str) -> list:
        return [self.render(sha, i) for i in range(self.num_renders(sha))]

    def transforms(self, sha: str) -> dict:
        return json.loads(self.source.read(layout.transforms_path(sha)))

    def read_file(self, name: str) -> bytes:
        """Raw bytes of one dataset file by its path inside the dataset."""
        return self.source.read(name)

    def names(self) -> list[str]:
        return self.source.names()

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dataset(path: str | Path) -> Dataset:
    """Open a dataset zip or directory (no deep checks; call `validate_dataset` for untrusted input)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset {path} does not exist")
    source = open_source(path)
    try:
        try:
            info = json.loads(source.read(layout.INFO_FILE))
        except FileNotFoundError:
            raise InputError(f"not a preprocessed dataset: {layout.INFO_FILE} is missing") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{layout.INFO_FILE} is not valid JSON: {exc}") from None
        check_info(info)
        try:
            text = source.read(layout.METADATA_FILE).decode("utf-8")
        except FileNotFoundError:
            raise InputError(f"dataset is missing {layout.METADATA_FILE}") from None
        except UnicodeDecodeError:
            raise InputError(f"{layout.METADATA_FILE} is not UTF-8 text") from None
        metadata = list(csv.DictReader(io.StringIO(text)))
    except BaseException:
        source.close()
        raise
    return Dataset(info=info, metadata=metadata, source=source)


def check_info(info) -> None:
    """`prepared_dataset.json`'s structure: version, resolution, base model and each object's sha256 and counts."""
    if not isinstance(info, dict):
        raise InputError(f"{layout.INFO_FILE} must hold a JSON object")
    version = info.get("format_version")
    if version != layout.FORMAT_VERSION:
        raise InputError(
            f"dataset format version {version!r} is not supported (this tool reads version {layout.FORMAT_VERSION})"
        )
    for key in ("resolution", "base_model", "objects"):
        if key not in info:
            raise InputError(f"{layout.INFO_FILE} has no {key!r}")
    if info["resolution"] not in layout.RESOLUTIONS:
        raise InputError(f"dataset resolution {info['resolution']!r} is not one of {list(layout.RESOLUTIONS)}")
    objects = info["objects"]
    if not isinstance(objects, list) or not objects:
        raise InputError(f"{layout.INFO_FILE} lists no objects")
    if len(objects) > limits.MAX_OBJECTS:
        raise InputError(f"{layout.INFO_FILE} lists {len(objects):,} objects; a dataset holds at most "
                         f"{limits.MAX_OBJECTS:,}")
    # Checked here, before anything is sized from them (expected_files makes one name per render).
    bounds = {"shape_tokens": limits.MAX_TOKENS[info["resolution"]], "pbr_tokens": limits.MAX_TOKENS[info["resolution"]],
              "renders": limits.MAX_RENDERS}
    seen = set()
    for o in objects:
        sha = o.get("sha256") if isinstance(o, dict) else None
        if not isinstance(sha, str) or not layout.SHA_RE.match(sha):
            raise InputError(f"{layout.INFO_FILE} has an object without a valid sha256: {str(o)[:80]}")
        if sha in seen:
            raise InputError(f"{layout.INFO_FILE} lists object {sha[:12]} twice")
        seen.add(sha)
        for key, most in bounds.items():
            value = o.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"object {sha[:12]} in {layout.INFO_FILE} has no valid {key!r}")
            if value > most:
                raise InputError(f"object {sha[:12]} in {layout.INFO_FILE} declares {key} = {value:,}; "
                                 f"at most {most:,} allowed at resolution {info['resolution']}")
