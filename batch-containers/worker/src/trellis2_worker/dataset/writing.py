"""Writing a preprocessed dataset: `DatasetStager` builds the tree object by object and zips it deterministically."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from trellis2_worker.dataset import layout

# Already-compressed members are stored; text is deflated.
_STORED = (".npz", ".png")
# Every zip member's date: a fixed one, so that the same content gives the same bytes.
ZIP_EPOCH = (2020, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20


def write_dataset_zip(root: str | Path, out: str | Path) -> Path:
    """Zip a staged dataset directory (exactly the files `layout.expected_files` names) into `out`, deterministically."""
    root = Path(root)
    info = json.loads((root / layout.INFO_FILE).read_text())
    return zip_members(out, {name: (lambda n=name: open(root / n, "rb")) for name in layout.expected_files(info)})


def zip_members(out: str | Path, members: dict) -> Path:
    """The dataset zip `out` from `members` ({name in the dataset: a callable opening its bytes as a binary stream}),
    the one way every dataset is zipped: names in sorted order, each dated ZIP_EPOCH, stored or deflated by kind,
    each copied in chunks (members can be large, and `merge` streams them from other zips)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(members):
            zi = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            zi.compress_type = zipfile.ZIP_STORED if name.endswith(_STORED) else zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            with members[name]() as src, zf.open(zi, "w") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    tmp.replace(out)
    return out


def info_text(info: dict) -> str:
    """prepared_dataset.json's text (one spelling, so a merged dataset's is the bytes a one-shard run writes)."""
    return json.dumps(info, indent=2) + "\n"


def write_metadata_csv(path: str | Path, rows: list[dict]) -> None:
    """metadata.csv with the reference columns first (those any row has), then the other columns in first-seen order."""
    seen: list[str] = []
    for r in rows:
        for k in r:
            if k not in seen:
                seen.append(k)
    cols = [c for c in layout.METADATA_COLUMNS if c in seen] + [c for c in seen if c not in layout.METADATA_COLUMNS]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def save_ss_latent(path: str | Path, z: np.ndarray) -> None:
    z = np.asarray(z, dtype=np.float32)
    if z.shape != layout.SS_LATENT_SHAPE:
        raise ValueError(f"SS latent must be {layout.SS_LATENT_SHAPE}, got {z.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _savez_atomic(path, z=z)


def save_sparse_latent(path: str | Path, feats: np.ndarray, coords: np.ndarray) -> None:
    feats = np.asarray(feats, dtype=np.float32)
    coords = np.asarray(coords)
    if feats.ndim != 2 or coords.shape != (feats.shape[0], 3):
        raise ValueError(f"sparse latent shapes do not match: feats {feats.shape}, coords {coords.shape}")
    if coords.size and (coords.min() < 0 or coords.max() > 255):
        raise ValueError("latent coords do not fit uint8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _savez_atomic(path, feats=feats, coords=coords.astype(np.uint8))


def _savez_atomic(path, **arrays) -> None:
    """`np.savez_compressed`'s layout, but each member dated ZIP_EPOCH: numpy stamps them with the time of writing,
    so the same latents would give other bytes on every run."""
    # Written beside and renamed, so a crash never leaves a truncated file that a rerun would take as done.
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w") as zf:
        for key, value in arrays.items():
            zi = zipfile.ZipInfo(key + ".npy", date_time=ZIP_EPOCH)
            zi.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(zi, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    tmp.replace(path)


class DatasetStager:
    """Builds a dataset tree in `root` object by object, then zips it (`finish`)."""

    def __init__(self, root, resolution: int, base_model: str, checkpoints: dict, encoders: dict, tool_version: str):
        if resolution not in layout.RESOLUTIONS:
            raise ValueError(f"resolution must be one of {layout.RESOLUTIONS}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.resolution = resolution
        self.info = {
            "format_version": layout.FORMAT_VERSION,
            "resolution": resolution,
            "base_model": base_model,
            "checkpoints": dict(checkpoints),
            "encoders": dict(encoders),
            "objects": [],
            "tool_version": tool_version,
        }
        self.rows: list[dict] = []

    def add_object(self, sha: str, ss_z, shape: tuple, pbr: tuple, renders_dir, row: dict | None = None) -> dict:
        """Store one object's latents and renders (`renders_dir`: NNN.png views and transforms.json)."""
        if not layout.SHA_RE.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        r = self.resolution
        save_ss_latent(self.root / layout.ss_path(sha), ss_z)
        save_sparse_latent(self.root / layout.shape_path(sha, r), *shape)
        save_sparse_latent(self.root / layout.pbr_path(sha, r), *pbr)
        renders_dir = Path(renders_dir)
        views = sorted(p for p in renders_dir.glob("[0-9][0-9][0-9].png"))
        if [p.name for p in views] != [f"{i:03d}.png" for i in range(len(views))] or not views:
            raise ValueError(f"{renders_dir}: condition renders must be 000.png..NNN.png")
        dest = self.root / layout.RENDERS_DIR / sha
        dest.mkdir(parents=True, exist_ok=True)
        for p in views:
            shutil.copyfile(p, dest / p.name)
        shutil.copyfile(renders_dir / layout.TRANSFORMS_FILE, dest / layout.TRANSFORMS_FILE)
        entry = {"sha256": sha, "shape_tokens": int(len(shape[0])), "pbr_tokens": int(len(pbr[0])), "renders": len(views)}
        self.info["objects"].append(entry)
        self.rows.append(
            {
                "sha256": sha,
                **(row or {}),
                "cond_rendered": True,
                "ss_latent_encoded": True,
                "shape_latent_encoded": True,
                "shape_latent_tokens": entry["shape_tokens"],
                "pbr_latent_encoded": True,
                "pbr_latent_tokens": entry["pbr_tokens"],
            }
        )
        return entry

    def finish(self, out_zip) -> dict:
        # No date or run detail in the dataset (those go to the run's report): the same objects give the same bytes.
        if not self.info["objects"]:
            raise ValueError("no objects to write")
        (self.root / layout.INFO_FILE).write_text(info_text(self.info))
        write_metadata_csv(self.root / layout.METADATA_FILE, self.rows)
        write_dataset_zip(self.root, out_zip)
        return self.info
