"""`trellis2-worker make-samples` and `trellis2-worker ingest` as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trellis2_worker.ingest import ingest, make_samples

SRC = Path(__file__).resolve().parents[1] / "src"


def _worker(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-m", "trellis2_worker", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def test_make_samples_is_deterministic_and_holds_textured_and_coloured_objects(tmp_path):
    first = make_samples(tmp_path / "a.zip", count=6)
    make_samples(tmp_path / "b.zip", count=6)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert len(first["objects"]) == 6
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    suffixes = {Path(n).suffix for n in names}
    assert {".glb", ".obj", ".mtl", ".png"} <= suffixes
    assert any("textured" in n for n in names) and any("torus" in n for n in names)


@pytest.mark.slow
def test_ingest_cli_on_the_sample_zip(tmp_path):
    made = _worker("make-samples", "--out", str(tmp_path / "samples.zip"), "--count", "3")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "out"
    run = _worker("ingest", "--input", str(tmp_path / "samples.zip"), "--out", str(out), "--render-size", "24",
                  "--render-samples", "1", "--denoise", "fast", "--workers", "2",
                  "--report", str(tmp_path / "report.json"))
    assert run.returncode == 0, run.stderr
    assert "[3/3]" in run.stderr and "ETA" in run.stderr  # per-asset progress with a count and an ETA
    report = json.loads((out / "ingest_report.json").read_text())
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["objects_found"] == 3 and report["succeeded"] == 3 and report["failed"] == []
    rows = list(csv.DictReader(open(out / "metadata.csv")))
    assert [r["cond_rendered"] for r in rows] == ["True"] * 3
    for row in rows:
        sha = row["sha256"]
        materials = json.loads((out / "dumps" / sha / "materials.json").read_text())
        mesh = np.load(out / "dumps" / sha / "mesh.npz", allow_pickle=False)
        assert len(mesh["faces"]) == int(row["num_faces"])
        if "textured" in row["local_path"] or row["format"] == "obj":
            # The samples' image textures survive the round trip, UV-mapped.
            assert int(row["num_basecolor_tex"]) == 1 and mesh["has_uv"].all()
            (tex,) = [m["baseColorTexture"] for m in materials if m["baseColorTexture"]]
            assert Image.open(out / "dumps" / sha / tex["image"]).size == (128, 128)
        frames = json.loads((out / "renders_cond" / sha / "transforms.json").read_text())["frames"]
        assert len(frames) == 16
        alpha = np.stack([np.asarray(Image.open(out / "renders_cond" / sha / f["file_path"]))[..., 3]
                          for f in frames])
        assert (alpha.reshape(16, -1) > 0).any(1).all()


@pytest.mark.slow
def test_when_no_asset_survives_the_step_fails_with_exit_2_and_reasons(tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n")
        zf.writestr("box.fbx", "; FBX 7.4.0 project file\n")
    from trellis2_worker.cli import main  # in-process: the subprocess start-up is already covered above

    code = main(["ingest", "--input", str(tmp_path / "bad.zip"), "--out", str(tmp_path / "out"), "--no-render",
                 "--report", str(tmp_path / "report.json")])
    assert code == 2
    assert "none of the 2 objects" in json.loads((tmp_path / "report.json").read_text())["error"]
    report = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    reasons = {f["file"]: f["reason"] for f in report["failed"]}
    assert "no faces" in reasons["points.obj"] and "ASCII FBX" in reasons["box.fbx"]


@pytest.mark.slow
def test_a_blender_pass_over_its_time_limit_is_stopped_and_reported(tmp_path):
    make_samples(tmp_path / "s.zip", count=1)
    with pytest.raises(Exception, match="none of the 1 objects"):
        ingest(str(tmp_path / "s.zip"), tmp_path / "out", render=False, timeout_s=0.2, progress=False)
    report = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    assert report["failed"][0]["reason"].startswith("timeout")
    assert not list((tmp_path / "out" / "dumps").iterdir())  # no half-written dump is left behind


@pytest.mark.slow
def test_a_blender_pass_over_its_memory_cap_fails_with_that_reason(tmp_path):
    make_samples(tmp_path / "s.zip", count=1)
    with pytest.raises(Exception, match="none of the 1 objects"):
        # 150 MB is too little even to load Blender's libraries.
        ingest(str(tmp_path / "s.zip"), tmp_path / "out", render=False, memory_mb=150, progress=False)
    report = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    assert report["failed"][0]["reason"].startswith("out of memory (cap 150 MB)")


_MAKE_BLEND = """
import sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add()
text = bpy.data.texts.new("autorun.py")
text.write("open(%r, 'w').write('ran')\\n" % sys.argv[2])
text.use_module = True  # registered, i.e. run, when the file is opened with Python auto-execution on
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])
"""
_OPEN_TRUSTED = """
import sys, bpy
bpy.context.preferences.filepaths.use_scripts_auto_execute = True
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False, use_scripts=True)
"""


@pytest.mark.slow
def test_scripts_inside_a_blend_file_never_run(tmp_path):
    blend, marker = tmp_path / "trap.blend", tmp_path / "marker.txt"
    made = subprocess.run([sys.executable, "-c", _MAKE_BLEND, str(blend), str(marker)], capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0 and blend.is_file(), made.stderr
    assert not marker.exists()
    # Proof the trap works: opened the trusting way, the script runs.
    subprocess.run([sys.executable, "-c", _OPEN_TRUSTED, str(blend)], capture_output=True, timeout=300)
    assert marker.read_text() == "ran"
    marker.unlink()
    report = ingest(str(blend), tmp_path / "out", render=False, progress=False)
    assert report["succeeded"] == 1 and report["objects"][0]["num_faces"] == 12
    assert not marker.exists()
