"""Two `preprocess` runs of the same real assets, each with its own cache (so Blender and the encoders run twice),
give byte-identical dataset members: the renders, the latents, the transforms and the objects' metadata.csv rows.
Shards cut from a plan (`--objects-from`, `--shard-count N` as array children) hold exactly the members of the
one-shard run, and `merge` makes them its very zip."""

import csv
import io
import json
import os
import zipfile

import pytest

from trellis2_worker.cli import main

pytestmark = pytest.mark.slow

# The textured multi-material OBJ and a one-triangle STL by default; TRELLIS2_SLOW_TESTS=1 adds a vertex-coloured PLY.
ASSETS = ["assimp/OBJ/spider.obj", "assimp/STL/triangle.stl"]
if os.environ.get("TRELLIS2_SLOW_TESTS"):
    ASSETS += ["assimp/PLY/float-color.ply"]
COMPANIONS = ["assimp/OBJ/spider.mtl", "assimp/OBJ/SpiderTex.jpg", "assimp/OBJ/drkwood2.jpg",
              "assimp/OBJ/engineflare1.jpg", "assimp/OBJ/wal67ar_small.jpg", "assimp/OBJ/wal69ar_small.jpg"]


def _preprocess(tmp, raw, name, *extra, cache=None, code=0, output=None, report=None, read=True):
    out, report = output or tmp / f"{name}.zip", report or tmp / f"{name}.json"
    got = main(["preprocess", "--input", str(raw), "--resolution", "512", "--base", "tiny", "--output", str(out),
                "--report", str(report), "--render-size", "16", "--cache-dir", str(cache or tmp / f"cache-{name}"),
                *extra])
    if not read:  # the caller reads the report where {shard} put it
        assert got == code
        return out, None
    rep = json.loads(report.read_text())
    assert got == code, rep
    return out, rep


def _members(path):
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: (zf.read(i), i.date_time, i.compress_type) for i in zf.infolist()}
        rows = list(csv.reader(io.StringIO(zf.read("metadata.csv").decode())))
    return members, rows


@pytest.fixture(scope="module")
def first(tmp_path_factory, shared_dir):
    tmp = tmp_path_factory.mktemp("reproducible")
    raw = tmp / "raw.zip"
    with zipfile.ZipFile(raw, "w") as zf:
        for rel in [*ASSETS, *COMPANIONS]:
            zf.write(shared_dir / "assets/real" / rel, rel)
    return (tmp, raw, *_preprocess(tmp, raw, "first"))


def test_two_runs_give_the_same_member_bytes(first):
    tmp_path, raw, first, rep1 = first
    second, rep2 = _preprocess(tmp_path, raw, "second")
    assert rep1["objects_succeeded"] == len(ASSETS) and rep2["objects_from_cache"] == {"ingest": 0, "latents": 0}
    a, rows_a = _members(first)
    b, rows_b = _members(second)
    assert a.keys() == b.keys()
    renders = [n for n in a if n.endswith(".png")]
    assert len(renders) == 16 * len(ASSETS)
    differing = sorted(n for n in a if a[n] != b[n])
    assert differing == [], differing[:5]
    assert rows_a == rows_b and len(rows_a) == 1 + len(ASSETS)
    # the run's details are in its report, not in the dataset
    assert rep1["created_at"] and "created_at" not in json.loads(a["prepared_dataset.json"][0])


@pytest.fixture(scope="module")
def shards(first):
    """The two shards of a plan as Prepare writes it (the zip's directory: paths, no sha256), run as array children."""
    tmp, raw, whole, rep = first
    plan = tmp / "plan.json"
    plan.write_text(json.dumps({"objects": [{"file": o["file"], "crc32": 0, "size": 1} for o in rep["objects"]]}))
    cache = tmp / "cache-first"  # as a retried shard: the Blender passes and latents come from the cache
    out = []
    for i in range(2):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_BATCH_JOB_ARRAY_INDEX", str(i))
            _preprocess(tmp, raw, "shard", "--objects-from", str(plan), "--shard-count", "2", cache=cache,
                        output=tmp / "shard{shard}.zip", report=tmp / "shard{shard}.json", read=False)
        out.append((tmp / f"shard{i}.zip", json.loads((tmp / f"shard{i}.json").read_text())))
    return plan, out


def test_shards_of_a_plan_hold_the_members_of_one_run(first, shards):
    tmp, raw, whole, rep = first
    plan, parts = shards
    members, rows = _members(whole)
    seen = set()
    for i, (out, rep_i) in enumerate(parts):
        assert rep_i["shard"] == {"plan": str(plan), "shard": f"{i}/2", "objects": 1}
        assert rep_i["objects_found"] == 1  # the other shard's file was not even hashed
        part, part_rows = _members(out)
        (sha,) = [o["sha256"] for o in rep_i["objects"]]
        seen.add(sha)
        mine = {n for n in part if sha in n}
        assert mine and all(part[n] == members[n] for n in mine)
        assert part_rows[0] == rows[0] and part_rows[1] in rows[1:]
    assert seen == {o["sha256"] for o in rep["objects"]}


def test_the_merge_of_the_shards_is_the_one_run_dataset(first, shards):
    tmp, _, whole, rep = first
    plan, _ = shards
    out, report = tmp / "merged.zip", tmp / "merged.json"
    assert main(["merge", "--plan", str(plan), "--shard-count", "2", "--resolution", "512", "--base", "tiny",
                 "--shard-outputs", str(tmp / "shard{shard}.zip"), "--shard-reports", str(tmp / "shard{shard}.json"),
                 "--output", str(out), "--report", str(report)]) == 0
    assert out.read_bytes() == whole.read_bytes()
    merged = json.loads(report.read_text())
    assert merged["tokens"] == rep["tokens"] and merged["objects_succeeded"] == rep["objects_succeeded"]
    assert [o["file"] for o in merged["objects"]] == [o["file"] for o in rep["objects"]]


def test_a_plan_that_does_not_match_the_input_is_refused(first, tmp_path):
    tmp, raw, _, rep = first
    bad = tmp_path / "plan.json"
    obj = rep["objects"][0]
    bad.write_text(json.dumps({"objects": [{"file": obj["file"], "sha256": "0" * 64}]}))
    _, err = _preprocess(tmp_path, raw, "bad", "--objects-from", str(bad), code=2, cache=tmp / "cache-first")
    assert "not the object the plan names" in err["error"]
    bad.write_text(json.dumps({"objects": [{"file": "no/such.obj", "sha256": obj["sha256"]}]}))
    _, err = _preprocess(tmp_path, raw, "absent", "--objects-from", str(bad), code=2, cache=tmp / "cache-first")
    assert "not in the input, e.g. no/such.obj" in err["error"]
    _, err = _preprocess(tmp_path, raw, "noplan", "--shard", "0/2", code=2)
    assert "--shard needs --objects-from" in err["error"]
    _, err = _preprocess(tmp_path, raw, "badshard", "--objects-from", str(bad), "--shard", "2/2", code=2)
    assert "--shard must be I/N" in err["error"]


def test_cpu_encoding_runs_on_one_thread_whatever_the_process_was_given():
    # a local shard gets fewer threads than a one-shard run; the encoders' sums must not depend on it
    import torch

    from trellis2_worker.latents.preprocess import CPU_ENCODE_THREADS, _encode_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _encode_threads("cpu"):
            assert torch.get_num_threads() == CPU_ENCODE_THREADS == 1
        assert torch.get_num_threads() == 2
        with _encode_threads("cuda"):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
