"""`trellis2-worker evaluate --pred A --gt B`: JSON figures for mesh files in every accepted format, compared as
given; exit 2 with one line for anything that is not a mesh."""

from __future__ import annotations

import json

import pytest
import trimesh

from trellis2_worker.cli import main


def _box(shift: float = 0.0) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.apply_translation((0.5 + shift, 0.5, 0.5))
    return box


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply", "stl"])
def test_evaluate_prints_the_figures_for_each_mesh_format(tmp_path, capsys, fmt):
    pred, gt = tmp_path / f"pred.{fmt}", tmp_path / "gt.stl"
    _box(0.1).export(pred)
    _box().export(gt)
    report_path = tmp_path / "report.json"
    rc = main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--samples", "4000", "--report", str(report_path)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(report_path.read_text())
    assert set(printed) == {"chamfer_l1", "chamfer_l2", "fscore", "normal_consistency", "samples"}
    assert set(printed["fscore"]) == {"0.01", "0.02"} and printed["samples"] == 4000
    # not re-normalised: the 0.1 shift shows (0.0336 for exact surfaces; 4000 samples give a few % of noise)
    assert printed["chamfer_l1"] == pytest.approx(0.0336, rel=0.1)
    assert 0.5 < printed["fscore"]["0.02"] < 0.75


def test_a_scaled_copy_is_not_rescaled_to_match(tmp_path, capsys):
    small = _box()
    small.apply_scale(0.5)
    small.export(tmp_path / "small.ply")
    _box().export(tmp_path / "gt.ply")
    assert main(["evaluate", "--pred", str(tmp_path / "small.ply"), "--gt", str(tmp_path / "gt.ply"),
                 "--samples", "2000"]) == 0
    assert json.loads(capsys.readouterr().out)["chamfer_l1"] > 0.1


@pytest.mark.parametrize("name, content, says", [
    ("notes.txt", b"hello", "not a mesh file"),
    ("broken.glb", b"glTF but not really", "not a readable glb mesh"),
    ("points.ply", trimesh.PointCloud([[0, 0, 0], [1, 0, 0], [0, 1, 0]]).export(file_type="ply"), "no triangles"),
    ("empty.obj", b"# nothing here\n", "no triangles"),
])
def test_a_file_that_is_not_a_mesh_exits_2_with_one_line(tmp_path, monkeypatch, capsys, name, content, says):
    (tmp_path / name).write_bytes(content)
    _box().export(tmp_path / "gt.glb")
    monkeypatch.chdir(tmp_path)                       # the user names the file relative to where they stand
    rc = main(["evaluate", "--pred", name, "--gt", "gt.glb", "--samples", "100"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and says in err and name in err
    assert "Traceback" not in err and str(tmp_path) not in err


def test_missing_file_and_bad_sample_count_exit_2(tmp_path, capsys):
    _box().export(tmp_path / "gt.glb")
    assert main(["evaluate", "--pred", str(tmp_path / "absent.glb"), "--gt", str(tmp_path / "gt.glb")]) == 2
    assert "absent.glb: no such file" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path / "gt.glb"), "--gt", str(tmp_path / "gt.glb"),
                 "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err
