"""The dataset zip: what train reads back, and what `preprocess` refuses when a dataset comes back for reuse."""

import hashlib
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from trellis2_worker.errors import InputError
from trellis2_worker.dataset import (
    DatasetStager, classify_archive, layout, open_dataset, save_sparse_latent, save_ss_latent, validate_dataset,
)


def _sha(i: int) -> str:
    return hashlib.sha256(f"object-{i}".encode()).hexdigest()


def _renders(dir_, views=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    dir_.mkdir(parents=True)
    for i in range(views):
        Image.fromarray(rng.integers(0, 255, (size, size, 4), dtype=np.uint8), "RGBA").save(dir_ / f"{i:03d}.png")
    (dir_ / "transforms.json").write_text(json.dumps({"aabb": [[-0.5] * 3, [0.5] * 3], "frames": [{"file_path": f"{i:03d}.png"} for i in range(views)]}))
    return dir_


def _sparse(rng, tokens, grid):
    coords = np.unique(rng.integers(0, grid, (tokens * 2, 3)), axis=0)[:tokens]
    return rng.standard_normal((len(coords), 32)).astype(np.float32), coords


def build(tmp_path, n=2, resolution=512, base="tiny", views=3):
    rng = np.random.default_rng(1)
    stager = DatasetStager(tmp_path / "stage", resolution, base, {"shape_slat_encoder": "0" * 64}, {}, "test")
    latents = {}
    for i in range(n):
        sha = _sha(i)
        shape = _sparse(rng, 40 + i, resolution // 16)
        pbr = (rng.standard_normal(shape[0].shape).astype(np.float32), shape[1])
        z = rng.standard_normal(layout.SS_LATENT_SHAPE).astype(np.float32)
        stager.add_object(sha, z, shape, pbr, _renders(tmp_path / f"r{i}", views, seed=i), {"local_path": f"a/{i}.glb"})
        latents[sha] = (z, shape, pbr)
    out = tmp_path / "dataset.zip"
    stager.finish(out)
    return out, latents


def rewrite(src, dst, drop=(), add=None, replace=None):
    """Copy a zip with members dropped, replaced or added (raw names, so escapes can be written)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = (replace or {}).get(info.filename, zin.read(info.filename))
            zout.writestr(info.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def test_reader_gives_back_what_was_written(tmp_path):
    out, latents = build(tmp_path)
    with open_dataset(out) as ds:
        assert ds.resolution == 512 and ds.base_model == "tiny"
        assert ds.objects == list(latents)
        for sha, (z, shape, pbr) in latents.items():
            np.testing.assert_array_equal(ds.ss_latent(sha), z)
            s, p = ds.shape_latent(sha), ds.pbr_latent(sha)
            np.testing.assert_array_equal(s.feats, shape[0])
            np.testing.assert_array_equal(s.coords, shape[1])
            assert s.coords.dtype == np.int32 and s.feats.dtype == np.float32
            np.testing.assert_array_equal(p.feats, pbr[0])
            imgs = ds.renders(sha)
            assert len(imgs) == 3 and imgs[0].mode == "RGBA" and imgs[0].size == (16, 16)
        rows = {r["sha256"]: r for r in ds.metadata}
        assert rows[_sha(1)]["shape_latent_tokens"] == "41" and rows[_sha(1)]["local_path"] == "a/1.glb"
        assert rows[_sha(0)]["ss_latent_encoded"] == "True"
    # the same tree unzipped reads the same
    unz = tmp_path / "unzipped"
    zipfile.ZipFile(out).extractall(unz)
    with open_dataset(unz) as ds:
        assert ds.objects == list(latents)
        np.testing.assert_array_equal(ds.ss_latent(_sha(0)), latents[_sha(0)][0])
    summary = validate_dataset(unz, 512, "tiny")
    assert summary["objects"] == 2


def test_zip_holds_exactly_the_dataset_files(tmp_path):
    out, latents = build(tmp_path, n=1)
    sha = next(iter(latents))
    names = set(zipfile.ZipFile(out).namelist())
    assert names == {
        "prepared_dataset.json",
        "metadata.csv",
        f"ss_latents/ss_enc_conv3d_16l8_fp16_64/{sha}.npz",
        f"shape_latents/shape_enc_next_dc_f16c32_fp16_512/{sha}.npz",
        f"pbr_latents/tex_enc_next_dc_f16c32_fp16_512/{sha}.npz",
        f"renders_cond/{sha}/000.png",
        f"renders_cond/{sha}/001.png",
        f"renders_cond/{sha}/002.png",
        f"renders_cond/{sha}/transforms.json",
    }
    info = json.loads(zipfile.ZipFile(out).read("prepared_dataset.json"))
    assert info["format_version"] == 1 and info["objects"][0]["shape_tokens"] == 40
    assert "created_at" not in info  # run details go to the report, never into the dataset


def test_the_same_objects_give_the_same_bytes_on_another_day(tmp_path, monkeypatch):
    import time

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, _ = build(tmp_path / "a")
    later = time.time() + 86400 + 7
    monkeypatch.setattr(time, "time", lambda: later)  # zip members (numpy's npz ones too) are dated from time.time
    second, _ = build(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf, zipfile.ZipFile(zf.open(zf.namelist()[-2])) as npz:
        assert {i.date_time for i in npz.infolist()} == {(2020, 1, 1, 0, 0, 0)}


def test_valid_dataset_passes(tmp_path):
    out, _ = build(tmp_path)
    assert classify_archive(out) == "dataset"
    summary = validate_dataset(out, 512, "tiny")
    assert summary["objects"] == 2 and summary["tokens"][_sha(0)] == {"shape": 40, "pbr": 40}


def test_dataset_in_one_folder_is_accepted(tmp_path):
    out, _ = build(tmp_path)
    wrapped = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(wrapped, "w") as zout:
        for n in zin.namelist():
            zout.writestr("my-dataset/" + n, zin.read(n))
        zout.writestr("__MACOSX/._x", b"junk")
    assert validate_dataset(wrapped, 512, "tiny")["objects"] == 2


def _refused(path, match, **kw):
    kw.setdefault("resolution", 512)
    kw.setdefault("base_model", "tiny")
    with pytest.raises(InputError, match=match):
        validate_dataset(path, **kw)


def test_wrong_resolution_refused(tmp_path):
    out, _ = build(tmp_path)
    _refused(out, "prepared at resolution 512, but the request asks for 1024", resolution=1024)


def test_other_base_refused_unless_allowed(tmp_path):
    out, _ = build(tmp_path)
    _refused(out, "prepared for base model 'tiny'.*--allow-other-base", base_model="microsoft/TRELLIS.2-4B")
    s = validate_dataset(out, 512, "microsoft/TRELLIS.2-4B", allow_other_base=True)
    assert s["other_base"] is True


def test_missing_latent_refused(tmp_path):
    out, latents = build(tmp_path)
    sha = list(latents)[1]
    bad = rewrite(out, tmp_path / "bad.zip", drop={layout.pbr_path(sha, 512)})
    _refused(bad, f"missing pbr_latents/tex_enc_next_dc_f16c32_fp16_512/{sha}.npz")


def test_missing_render_refused(tmp_path):
    out, latents = build(tmp_path)
    sha = list(latents)[0]
    _refused(rewrite(out, tmp_path / "bad.zip", drop={layout.render_path(sha, 2)}), "missing renders_cond/.*/002.png")


def test_pickle_files_refused(tmp_path):
    out, _ = build(tmp_path)
    blob = pickle.dumps({"x": 1})
    _refused(rewrite(out, tmp_path / "a.zip", add={"mesh_dumps/x.pickle": blob}), "pickle")
    _refused(rewrite(out, tmp_path / "b.zip", add={"extra.pkl": blob}), "pickle")


def test_npz_with_pickled_objects_refused(tmp_path):
    out, latents = build(tmp_path)
    sha = list(latents)[0]
    buf = io.BytesIO()
    np.savez(buf, z=np.array([{"evil": 1}], dtype=object))
    _refused(rewrite(out, tmp_path / "bad.zip", replace={layout.ss_path(sha): buf.getvalue()}), "pickled objects")


def test_path_escape_refused(tmp_path):
    out, _ = build(tmp_path)
    _refused(rewrite(out, tmp_path / "a.zip", add={"../evil.png": b"x"}), "escapes the archive")
    _refused(rewrite(out, tmp_path / "b.zip", add={"/etc/evil": b"x"}), "absolute")


def test_symlink_refused(tmp_path):
    out, _ = build(tmp_path)
    bad = tmp_path / "link.zip"
    rewrite(out, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zi = zipfile.ZipInfo("renders_cond/link.png")
        zi.external_attr = (0o120777) << 16
        zf.writestr(zi, "/etc/passwd")
    _refused(bad, "symbolic link")


def test_mixed_archive_refused(tmp_path, shared_dir):
    out, _ = build(tmp_path)
    duck = (shared_dir / "assets/real/trimesh/Duck.glb").read_bytes()
    bad = rewrite(out, tmp_path / "mixed.zip", add={"assets/Duck.glb": duck})
    assert classify_archive(bad) == "mixed"
    _refused(bad, "mixes raw 3D assets")


def test_stray_file_refused(tmp_path):
    out, _ = build(tmp_path)
    _refused(rewrite(out, tmp_path / "a.zip", add={"notes/readme.txt": b"hi"}), "no training stage reads: notes/readme.txt")


def test_wrong_shapes_and_mismatched_coords_refused(tmp_path):
    out, latents = build(tmp_path)
    sha = list(latents)[0]
    buf = io.BytesIO()
    np.savez_compressed(buf, z=np.zeros((8, 16, 16, 15), np.float32))
    _refused(rewrite(out, tmp_path / "a.zip", replace={layout.ss_path(sha): buf.getvalue()}), r"expected 'z' float32")
    feats, coords = latents[sha][1]
    buf = io.BytesIO()
    np.savez_compressed(buf, feats=feats, coords=coords[::-1].astype(np.uint8))
    _refused(rewrite(out, tmp_path / "b.zip", replace={layout.pbr_path(sha, 512): buf.getvalue()}), "coords differ")
    buf = io.BytesIO()
    np.savez_compressed(buf, feats=feats[:5], coords=coords[:5].astype(np.uint8))
    _refused(rewrite(out, tmp_path / "c.zip", replace={layout.shape_path(sha, 512): buf.getvalue()}), r"expected feats float32 \(40, 32\)")


def test_broken_render_and_version_refused(tmp_path):
    out, latents = build(tmp_path)
    sha = list(latents)[0]
    _refused(rewrite(out, tmp_path / "a.zip", replace={layout.render_path(sha, 1): b"\x89PNG\r\n\x1a\nbroken"}), "does not decode")
    info = json.loads(zipfile.ZipFile(out).read("prepared_dataset.json"))
    info["format_version"] = 2
    _refused(rewrite(out, tmp_path / "b.zip", replace={"prepared_dataset.json": json.dumps(info)}), "format version 2 is not supported")


def test_token_count_mismatch_in_metadata_refused(tmp_path):
    out, latents = build(tmp_path)
    text = zipfile.ZipFile(out).read("metadata.csv").decode().replace(",40,", ",41,", 1)
    _refused(rewrite(out, tmp_path / "a.zip", replace={"metadata.csv": text}), "shape_latent_tokens")


def test_latent_npz_files_have_the_reference_layout(tmp_path):
    feats = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    coords = np.array([[0, 1, 2], [31, 0, 5], [3, 3, 3], [7, 8, 9], [1, 1, 1]])
    save_sparse_latent(tmp_path / "a.npz", feats, coords)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:       # what the reference dataset reads
        assert sorted(z.files) == ["coords", "feats"]
        assert z["coords"].dtype == np.uint8 and z["feats"].dtype == np.float32
        np.testing.assert_array_equal(z["feats"], feats)
        np.testing.assert_array_equal(z["coords"], coords)               # order kept
    save_ss_latent(tmp_path / "s.npz", np.zeros((8, 16, 16, 16), np.float32))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert z["z"].shape == (8, 16, 16, 16)
    with pytest.raises(ValueError):
        save_sparse_latent(tmp_path / "b.npz", feats, coords + 300)


# ------------------------------------------------------------------------------------------------ bounds
# A dataset comes back from users: what prepared_dataset.json declares and what each member's header claims are
# checked against the hard bounds of trellis2_worker.dataset.limits before any work is sized from them.


def _with_info(out, dst, edit):
    info = json.loads(zipfile.ZipFile(out).read("prepared_dataset.json"))
    edit(info)
    return rewrite(out, dst, replace={"prepared_dataset.json": json.dumps(info)})


def test_a_billion_renders_is_refused_at_once(tmp_path):
    import time

    out, _ = build(tmp_path)
    bad = _with_info(out, tmp_path / "a.zip", lambda info: info["objects"][0].update(renders=10**9))
    t = time.perf_counter()
    _refused(bad, "declares renders = 1,000,000,000; at most 16")
    with pytest.raises(InputError, match="at most 16"):
        open_dataset(bad)  # what train opens
    assert time.perf_counter() - t < 5  # 10^7 renders once took 55 s and 3.3 GB before it was refused


def test_token_and_object_counts_past_their_bounds_are_refused(tmp_path):
    from trellis2_worker.dataset import limits

    out, _ = build(tmp_path)
    over = limits.MAX_TOKENS[512] + 1  # more tokens than the 32³ latent grid of 512 has cells
    _refused(_with_info(out, tmp_path / "a.zip", lambda i: i["objects"][1].update(pbr_tokens=over)),
             f"declares pbr_tokens = {over:,}; at most 32,768 allowed at resolution 512")
    many = [{"sha256": _sha(i), "shape_tokens": 1, "pbr_tokens": 1, "renders": 1} for i in range(limits.MAX_OBJECTS + 1)]
    _refused(_with_info(out, tmp_path / "b.zip", lambda i: i.update(objects=many)), "lists 10,001 objects; a dataset holds at most 10,000")
    _refused(_with_info(out, tmp_path / "c.zip", lambda i: i["objects"][0].update(renders=True)), "no valid 'renders'")


def _central_entry(data: bytes, name: str) -> int:
    """Offset of `name`'s central directory record in a zip's bytes."""
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n, extra, comment = (int.from_bytes(data[pos + k:pos + k + 2], "little") for k in (28, 30, 32))
        if data[pos + 46:pos + 46 + n] == name.encode():
            return pos
        pos = data.find(b"PK\x01\x02", pos + 46 + n + extra + comment)
    raise AssertionError(name)


def test_a_member_declaring_more_than_its_cap_is_refused_unread(tmp_path):
    out, latents = build(tmp_path)
    name = layout.shape_path(list(latents)[0], 512)
    data = bytearray(out.read_bytes())
    pos = _central_entry(bytes(data), name)
    data[pos + 20:pos + 28] = (2**31).to_bytes(4, "little") * 2  # compressed and uncompressed size: 2 GiB
    bad = tmp_path / "big.zip"
    bad.write_bytes(bytes(data))
    # Refused on the declared size: reading it would have failed differently (the archive holds a few KB).
    _refused(bad, f"dataset member {name} declares 2,147,483,648 bytes, over the 256 MiB a dataset file may hold")


def test_a_member_with_a_bad_crc_is_an_input_error_naming_it(tmp_path, capsys):
    from trellis2_worker.cli import main

    out, latents = build(tmp_path)
    name = layout.ss_path(list(latents)[1])
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo(name)
        assert info.compress_type == zipfile.ZIP_STORED
    data = bytearray(out.read_bytes())
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") \
        + int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[start + info.file_size // 2] ^= 0xFF  # inside the stored npz: still a zip, no longer its CRC
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(data))
    _refused(bad, f"dataset member {name} is corrupt: its CRC-32 does not match its data")
    # through the worker's command line: exit 2, one line naming the member and no path of this machine
    code = main(["preprocess", "--input", str(bad), "--resolution", "512", "--base", "tiny",
                 "--output", str(tmp_path / "out.zip")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert name in err and str(tmp_path) not in err
