"""`trellis2-worker voxelize` on an ingest-style folder: files in the toolkit layout, metadata, report, failures."""

from __future__ import annotations

import csv
import json

import numpy as np

from ovoxel_helpers import sphere_mesh, trimesh_to_dump, wavy_plane, write_dump
from trellis2_worker.cli import main
from trellis2_worker.ovoxel import read_vxz, read_vxz_info


def test_voxelize_writes_dual_grid_and_pbr_files_with_shared_coords(shared_dir, tmp_path):
    src = tmp_path / "ingest"
    trimesh_to_dump(shared_dir / "assets" / "real" / "trimesh" / "Duck.glb", src / "dumps" / "duck")
    v, f = wavy_plane(n=20)
    write_dump(src / "dumps" / "plane", v * 7 + 3, f)                        # not normalised: voxelize does it
    (src / "dumps" / "broken").mkdir(parents=True)
    (src / "dumps" / "broken" / "mesh.npz").write_bytes(b"not an npz")
    out = tmp_path / "out"
    report_path = tmp_path / "report.json"
    rc = main(["voxelize", "--input", str(src), "--resolution", "128", "--out", str(out),
               "--workers", "2", "--report", str(report_path)])
    assert rc == 0
    report = json.loads(report_path.read_text())
    assert report["objects"] == 3 and report["succeeded"] == 2
    assert [x["sha256"] for x in report["failed"]] == ["broken"] and "npz" in report["failed"][0]["reason"]
    for sha in ("duck", "plane"):
        c1, shape = read_vxz(out / "dual_grid_128" / f"{sha}.vxz")
        c2, pbr = read_vxz(out / "pbr_voxels_128" / f"{sha}.vxz")
        np.testing.assert_array_equal(c1, c2)                                  # latents can share coords
        assert list(shape) == ["vertices", "intersected"] and shape["intersected"].max() <= 7
        assert list(pbr) == ["base_color", "metallic", "roughness", "alpha"]
        assert c1.min() >= 0 and c1.max() < 128
        assert report["per_object"][["broken", "duck", "plane"].index(sha)]["128"]["num_voxels"] == len(c1)
    # the plane was normalised to the unit cube: it spans the grid in x and y
    c, _ = read_vxz(out / "dual_grid_128" / "plane.vxz")
    assert c[:, 0].min() == 0 and c[:, 0].max() == 127
    with open(out / "dual_grid_128" / "metadata.csv") as fh:
        rows = {r["sha256"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"duck", "plane"} and rows["duck"]["dual_grid_converted"] == "True"
    assert int(rows["duck"]["dual_grid_size"]) == read_vxz_info(out / "dual_grid_128" / "duck.vxz")["num_voxel"]
    # a second run reuses the finished files
    mtime = (out / "dual_grid_128" / "duck.vxz").stat().st_mtime_ns
    assert main(["voxelize", "--input", str(src), "--resolution", "128", "--out", str(out)]) == 0
    assert (out / "dual_grid_128" / "duck.vxz").stat().st_mtime_ns == mtime


def test_voxelize_refuses_bad_input(tmp_path, capsys):
    assert main(["voxelize", "--input", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    v, f = sphere_mesh(2)
    write_dump(tmp_path / "in" / "dumps" / "a", v, f)
    assert main(["voxelize", "--input", str(tmp_path / "in"), "--resolution", "300",
                 "--out", str(tmp_path / "o")]) == 2
    assert "resolution" in capsys.readouterr().err
