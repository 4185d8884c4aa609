"""`merge` puts the shards of one preprocess run back together: the dataset a one-shard run writes (the same zip
bytes), one report with every planned object's outcome, and refusal of shard outputs that are not what the run made.
The shards here are written by the dataset writer itself (no Blender, no encoders); test_preprocess_reproducible
merges the shards of real preprocess runs."""

import hashlib
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from trellis2_worker.cli import main
from trellis2_worker.dataset import DatasetStager, layout
from trellis2_worker.errors import InputError
from trellis2_worker.latents.plan import block, fill_shard, index_from_env

FILES = ["a/duck.glb", "b/box.glb", "c/monkey.glb", "d/spider.obj", "e/triangle.stl"]
CHECKPOINTS = {"shape_slat_encoder": "1" * 64}
ENCODERS = {"shape": {"latent_channels": 32}, "pbr": {"latent_channels": 32}}


def _object(i: int, root):
    """One object's latents, renders and metadata row, the same whichever shard writes it."""
    rng = np.random.default_rng(i)
    coords = np.unique(rng.integers(0, 32, (80, 3)), axis=0)[:30 + i]
    shape = (rng.standard_normal((len(coords), 32)).astype(np.float32), coords)
    pbr = (rng.standard_normal((len(coords), 32)).astype(np.float32), coords)
    z = rng.standard_normal(layout.SS_LATENT_SHAPE).astype(np.float32)
    renders = root / f"renders-{i}"
    if not renders.is_dir():
        renders.mkdir(parents=True)
        for v in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8, 4), dtype=np.uint8), "RGBA").save(renders / f"{v:03d}.png")
        (renders / "transforms.json").write_text(json.dumps({"frames": [{"file_path": "000.png"}, {"file_path": "001.png"}]}))
    row = {"file_identifier": FILES[i], "local_path": FILES[i], "num_faces": 10 * i, "dual_grid_size": 100 + i}
    if i % 2:
        row["quality_note"] = f"note {i}"  # a column only some objects have (columns are carried generically)
    return hashlib.sha256(FILES[i].encode()).hexdigest(), z, shape, pbr, renders, row


def _dataset(root, name, indices, resolution=512, base="tiny", checkpoints=CHECKPOINTS):
    stager = DatasetStager(root / f"stage-{name}", resolution, base, checkpoints, ENCODERS, "test")
    for i in indices:
        sha, z, shape, pbr, renders, row = _object(i, root)
        stager.add_object(sha, z, shape, pbr, renders, row)
    stager.finish(root / f"{name}.zip")
    return root / f"{name}.zip"


def _report(index, count, indices, failed=()):
    objects = [{"sha256": _object_sha(i), "file": FILES[i], "seconds": {"load_s": 0.1}} for i in indices]
    return {"kind": "raw", "resolution": 512, "base_model": "tiny", "render_size": 8,
            "objects_succeeded": len(objects), "objects_failed": len(failed),
            "failed": [{"file": FILES[i], "reason": "Blender could not import it"} for i in failed],
            "objects": objects, "shard": {"plan": "plan.json", "shard": f"{index}/{count}", "objects": 0},
            "seconds": 3.5 + index, "timings": {"ingest_s": 1.0}, "device": "cpu"}


def _object_sha(i):
    return hashlib.sha256(FILES[i].encode()).hexdigest()


@pytest.fixture
def run(tmp_path):
    """A planned run of 3 shards over FILES (the plan as Prepare writes it: no sha256, the zip's crc32 and size)."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"objects": [{"file": f, "crc32": 7, "size": 9} for f in FILES]}))
    blocks = [[FILES.index(o["file"]) for o in block([{"file": f} for f in FILES], i, 3)] for i in range(3)]
    return tmp_path, plan, blocks


def _shard(tmp, index, count, indices, failed=(), **dataset):
    if indices:
        _dataset(tmp, f"shard-{index}", indices, **dataset)
    (tmp / f"shard-{index}.json").write_text(json.dumps(_report(index, count, indices, failed)))


def _merge(tmp, plan, count=3, code=0):
    out, report = tmp / "merged.zip", tmp / "merged.json"
    got = main(["merge", "--plan", str(plan), "--shard-count", str(count), "--resolution", "512", "--base", "tiny",
                "--shard-outputs", str(tmp / "shard-{shard}.zip"), "--shard-reports", str(tmp / "shard-{shard}.json"),
                "--output", str(out), "--report", str(report)])
    rep = json.loads(report.read_text())
    assert got == code, rep
    return out, rep


def test_three_shards_merge_into_the_zip_of_a_one_shard_run(run):
    tmp, plan, blocks = run
    for i, b in enumerate(blocks):
        _shard(tmp, i, 3, b)
    whole = _dataset(tmp, "whole", range(len(FILES)))
    out, rep = _merge(tmp, plan)
    assert out.read_bytes() == whole.read_bytes()  # every member, its order, metadata.csv's rows and columns
    assert rep["objects_succeeded"] == 5 and rep["objects_failed"] == 0 and rep["failed"] == []
    assert [o["file"] for o in rep["objects"]] == FILES and [o["shard"] for o in rep["objects"]] == [0, 1, 1, 2, 2]
    assert [s["status"] for s in rep["shards"]] == ["ok"] * 3 and rep["shards"][2]["seconds"] == 5.5
    assert rep["objects"][0]["seconds"] == {"load_s": 0.1}  # the shard report's per-object details are kept
    with zipfile.ZipFile(out) as zf:  # run details stay in the report
        assert "seconds" not in zf.read(layout.INFO_FILE).decode()


def test_a_missing_shard_and_one_whose_objects_all_failed_fail_their_objects_only(run):
    tmp, plan, blocks = run
    _shard(tmp, 0, 3, blocks[0])
    _shard(tmp, 2, 3, [], failed=blocks[2])  # a shard whose objects all failed: a report, no dataset
    out, rep = _merge(tmp, plan)
    assert out.read_bytes() == _dataset(tmp, "survivors", blocks[0]).read_bytes()
    reasons = {f["file"]: f["reason"] for f in rep["failed"]}
    assert reasons == {FILES[1]: "shard 1 of 3 did not finish (it left no report)",
                       FILES[2]: "shard 1 of 3 did not finish (it left no report)",
                       FILES[3]: "Blender could not import it", FILES[4]: "Blender could not import it"}
    assert rep["objects_succeeded"] == 1 and rep["objects_failed"] == 4
    assert [s["status"] for s in rep["shards"]] == ["ok", "missing", "empty"]


def test_no_survivor_anywhere_fails_the_run_in_one_line(run, capsys):
    tmp, plan, blocks = run
    _shard(tmp, 0, 3, [], failed=blocks[0])
    (tmp / "shard-1.json").write_text(json.dumps({"error": "the archive is not the one inspected"}))
    _, rep = _merge(tmp, plan, code=2)
    assert rep["error"].startswith("no object could be preprocessed in any of the 3 shards (5 planned): a/duck.glb:")
    assert "shard 1 of 3 failed: the archive is not the one inspected" in rep["error"]
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("hostile, message", [
    ({"resolution": 1024}, "shard 1's dataset is refused: dataset was prepared at resolution 1024"),
    ({"base": "other/base"}, "shard 1's dataset is refused: dataset was prepared for base model 'other/base'"),
    ({"checkpoints": {"shape_slat_encoder": "2" * 64}}, "shard 1's dataset differs from shard 0's in "
                                                        "prepared_dataset.json 'checkpoints'"),
])
def test_shard_datasets_unlike_the_run_are_refused(run, hostile, message):
    tmp, plan, blocks = run
    for i, b in enumerate(blocks):
        _shard(tmp, i, 3, b, **(hostile if i == 1 else {}))
    _, rep = _merge(tmp, plan, code=2)
    assert rep["error"].startswith(message), rep["error"]


def test_shard_outputs_that_are_not_their_block_are_refused(run):
    tmp, plan, blocks = run
    _shard(tmp, 0, 3, blocks[0])
    _shard(tmp, 1, 3, blocks[1] + blocks[2][:1])  # holds an object of shard 2's block
    _shard(tmp, 2, 3, blocks[2])
    _, rep = _merge(tmp, plan, code=2)
    assert rep["error"] == (f"shard 1's dataset holds object {_object_sha(3)[:12]} (d/spider.obj), which is not "
                            "in its block of the plan")
    _shard(tmp, 1, 3, blocks[1])
    (tmp / "shard-1.json").write_text(json.dumps(_report(2, 3, blocks[1])))  # another shard's report
    _, rep = _merge(tmp, plan, code=2)
    assert rep["error"] == "shard 1's report is for shard 2/3, not 1/3 (wrong --shard-reports?)"
    (tmp / "shard-1.zip").write_bytes(b"not a zip")
    (tmp / "shard-1.json").write_text(json.dumps(_report(1, 3, blocks[1])))
    _, rep = _merge(tmp, plan, code=2)
    assert rep["error"].startswith("shard 1's dataset is refused: shard-1.zip is not a readable zip archive")


def test_merge_arguments_are_checked(run):
    tmp, plan, _ = run
    out, report = tmp / "m.zip", tmp / "m.json"
    args = ["merge", "--plan", str(plan), "--resolution", "512", "--output", str(out), "--report", str(report)]
    assert main([*args, "--shard-count", "3", "--shard-outputs", "x.zip", "--shard-reports", "{shard}.json"]) == 2
    assert "--shard-outputs must hold {shard}" in json.loads(report.read_text())["error"]
    assert main([*args, "--shard-count", "6", "--shard-outputs", "{shard}", "--shard-reports", "{shard}"]) == 2
    assert json.loads(report.read_text())["error"] == "--shard-count 6 is more than the plan's 5 objects"


def test_the_array_index_comes_from_the_batch_environment():
    assert index_from_env(4, {"AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == 3
    assert index_from_env(1, {}) == 0  # Batch arrays have 2+ children: a one-shard run is a plain job
    for env, message in [({}, "--shard-count 4 needs AWS_BATCH_JOB_ARRAY_INDEX"),
                         ({"AWS_BATCH_JOB_ARRAY_INDEX": "4"}, "must be an integer in [0, 4), got '4'"),
                         ({"AWS_BATCH_JOB_ARRAY_INDEX": "-1"}, "got '-1'"),
                         ({"AWS_BATCH_JOB_ARRAY_INDEX": " 1"}, "got ' 1'"),
                         ({"AWS_BATCH_JOB_ARRAY_INDEX": "1e3"}, "got '1e3'")]:
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            index_from_env(4, env)
    with pytest.raises(InputError, match="between 1 and"):
        index_from_env(0, {})
    assert fill_shard("s3://b/run/shards/{shard}/out.zip", 7, "--output") == "s3://b/run/shards/7/out.zip"
    with pytest.raises(InputError, match=r"--report holds \{shard\} but no shard is given"):
        fill_shard("r-{shard}.json", None, "--report")


def test_a_child_writes_its_report_where_its_index_says(tmp_path, monkeypatch, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"objects": [{"file": f} for f in FILES]}))
    args = ["preprocess", "--input", str(tmp_path / "absent.zip"), "--resolution", "512", "--base", "tiny",
            "--objects-from", str(plan), "--shard-count", "3",
            "--output", str(tmp_path / "{shard}.zip"), "--report", str(tmp_path / "{shard}.json")]
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "2")
    assert main(args) == 2  # the input is missing: the error report lands at shard 2's URI
    assert "no such file" in json.loads((tmp_path / "2.json").read_text())["error"]
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "three")
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "trellis2-worker: AWS_BATCH_JOB_ARRAY_INDEX must be an integer in [0, 3), got 'three'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.json", "plan.json"]
    plain = [a.replace("{shard}", "plain") for a in args if a not in ("--shard-count", "3")]
    assert main([*plain, "--shard", "3/3"]) == 2  # a report without {shard} still gets the error
    assert json.loads((tmp_path / "plain.json").read_text())["error"].startswith("--shard must be I/N")


def test_a_shard_whose_objects_all_fail_succeeds_and_the_merge_fails_the_run(tmp_path):
    """Only the merge fails a run: a child whose objects all fail exits 0 with its failures (an array job fails as
    soon as one child does); the same input without a shard is the input's fault, exit 2."""
    raw = tmp_path / "raw.zip"
    with zipfile.ZipFile(raw, "w") as zf:  # ASCII FBX fails before Blender starts
        for name in ("a.fbx", "b.fbx"):
            zf.writestr(name, f"; FBX 7.4.0 project file\n; {name}\n")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"objects": [{"file": "a.fbx", "size": 1}, {"file": "b.fbx", "size": 1}]}))
    common = ["--input", str(raw), "--resolution", "512", "--base", "tiny", "--render-size", "8",
              "--cache-dir", str(tmp_path / "cache"), "--objects-from", str(plan)]
    for i in range(2):
        assert main(["preprocess", *common, "--shard", f"{i}/2", "--output", str(tmp_path / f"shard-{i}.zip"),
                     "--report", str(tmp_path / f"shard-{i}.json")]) == 0
        rep = json.loads((tmp_path / f"shard-{i}.json").read_text())
        assert rep["objects_succeeded"] == 0 and rep["output"] is None and "unsupported ASCII FBX" in rep["failed"][0]["reason"]
    assert not list(tmp_path.glob("shard-*.zip"))
    assert main(["preprocess", *common, "--output", str(tmp_path / "one.zip"), "--report", str(tmp_path / "one.json")]) == 2
    _, rep = _merge(tmp_path, plan, count=2, code=2)
    assert rep["error"].startswith("no object could be preprocessed in any of the 2 shards (2 planned): a.fbx: "
                                   "unsupported ASCII FBX")
