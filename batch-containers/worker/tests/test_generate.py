"""`trellis2-worker generate` on the tiny base: a condition render and a texture adapter from `train` give a GLB
with faces and a base-colour texture; adapters in the wrong slot, at another resolution or for another base are
refused before sampling; the strength scales the adapter; the export bakes the voxels' colours onto the surface."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import make_dataset  # noqa: E402

from trellis2_worker.cli import main  # noqa: E402

FEW_STEPS = ["--sampler", "sparse_structure.steps=2", "--sampler", "shape.steps=2", "--sampler", "texture.steps=2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    """A preprocessed dataset's condition render and a texture adapter trained on that dataset by `train`."""
    root = tmp_path_factory.mktemp("generate")
    dataset = make_dataset(root / "dataset.zip", [40, 64], base=base, views=2)
    with zipfile.ZipFile(dataset) as z:
        render = next(n for n in z.namelist() if n.startswith("renders_cond/") and n.endswith(".png"))
        (root / "render.png").write_bytes(z.read(render))
    adapter = root / "adapters" / "texture.safetensors"
    assert main(["train", "--dataset", str(dataset), "--denoiser", "texture", "--resolution", "512", "--rank", "4",
                 "--learning-rate", "1e-2", "--training-steps", "2", "--base", "tiny", "--output", str(adapter),
                 "--batch-size", "2", "--eval-objects", "0", "--no-progress"]) == 0
    return root / "render.png", adapter


def generate(args, capsys):
    capsys.readouterr()
    rc = main(["generate", "--base", "tiny", *args])
    return rc, capsys.readouterr().err


def test_a_render_and_a_texture_adapter_give_a_textured_glb_and_a_report(trained, tmp_path, capsys):
    import trimesh

    from trellis2_worker.ovoxel import read_vxz

    render, adapter = trained
    out = tmp_path / "out" / "object.glb"
    rc, err = generate(["--image", str(render), "--output", str(out), "--report", str(tmp_path / "report.json"),
                        "--texture-lora", str(adapter), "--texture-scale", "0.8", "--texture-size", "1024",
                        "--vxz", str(tmp_path / "object.vxz"), *FEW_STEPS], capsys)
    assert rc == 0, err[-2000:]
    scene = trimesh.load(str(out), file_type="glb")
    mesh = next(iter(scene.geometry.values()))
    assert len(mesh.faces) > 0
    texture = mesh.visual.material.baseColorTexture
    assert texture is not None and texture.size == (1024, 1024)
    assert mesh.visual.material.metallicRoughnessTexture is not None
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["adapters"] == [{"stage": "texture", "file": "texture.safetensors", "scale": 0.8,
                                   "resolution": 512, "base_checkpoint_sha256": report["adapters"][0][
                                       "base_checkpoint_sha256"]}]
    assert report["pipeline_type"] == "512" and report["resolution_out"] == 512 and report["seed"] == 0
    assert report["glb"]["faces"] == len(mesh.faces) and report["glb"]["file_size"] == out.stat().st_size
    assert report["sampler"]["shape"]["steps"] == 2 and report["sampler"]["shape"]["guidance_strength"] == 7.5
    assert {"sparse_structure", "shape", "texture", "decode", "export"} <= set(report["timings"])
    coords, attrs = read_vxz(str(tmp_path / "object.vxz"))
    assert len(coords) == report["tokens"]["decoded_voxels"] and set(attrs) >= {"base_color", "alpha"}
    assert "Sampling texture SLat" in err and "2/2" in err  # progress per stage and step


def test_the_texture_adapter_given_as_the_geometry_lora_is_refused_naming_both_stages(trained, tmp_path, capsys):
    render, adapter = trained
    rc, err = generate(["--image", str(render), "--output", str(tmp_path / "o.glb"), "--geometry-lora",
                        str(adapter), "--report", str(tmp_path / "r.json"), *FEW_STEPS], capsys)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    assert "texture" in line and "geometry" in line and "Traceback" not in err
    assert "Sampling" not in err and not (tmp_path / "o.glb").exists()
    assert "geometry" in json.loads((tmp_path / "r.json").read_text())["error"]


def _with_header(adapter: Path, out: Path, **changes) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(adapter), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update({k: str(v) for k, v in changes.items()})
    save_file(tensors, str(out), metadata=meta)
    return out


def test_adapters_for_another_resolution_or_base_checkpoint_are_refused_naming_both(trained, tmp_path, capsys):
    render, adapter = trained
    common = ["--image", str(render), "--output", str(tmp_path / "o.glb"), *FEW_STEPS]
    rc, err = generate([*common, "--resolution", "1024", "--texture-lora", str(adapter)], capsys)
    assert rc == 2 and "512" in err and "1024" in err
    other = _with_header(adapter, tmp_path / "other_base.safetensors", base_checkpoint_sha256="ab" * 32)
    rc, err = generate([*common, "--texture-lora", str(other)], capsys)
    assert rc == 2 and "abababababab" in err and "base checkpoint" in err
    assert not (tmp_path / "o.glb").exists()


@pytest.mark.parametrize("problem", ["no_adapter", "unknown_sampler_param", "opaque_image", "not_an_image",
                                     "not_glb", "pipeline_type", "not_an_adapter"])
def test_bad_requests_end_with_exit_2_and_one_line(trained, tmp_path, capsys, problem):
    render, adapter = trained
    image, out, extra = str(render), str(tmp_path / "o.glb"), ["--texture-lora", str(adapter)]
    expect = {"no_adapter": "--allow-base-only", "unknown_sampler_param": "guidance_scale",
              "opaque_image": "transparent", "not_an_image": "image", "not_glb": ".glb",
              "pipeline_type": "1024_cascade", "not_an_adapter": "junk.safetensors"}[problem]
    if problem == "no_adapter":
        extra = []
    elif problem == "unknown_sampler_param":
        extra += ["--sampler", "shape.guidance_scale=3"]
    elif problem == "opaque_image":
        Image.new("RGB", (64, 64), (120, 30, 200)).save(tmp_path / "opaque.png")
        image = str(tmp_path / "opaque.png")
    elif problem == "not_an_image":
        (tmp_path / "x.png").write_bytes(b"not a png")
        image = str(tmp_path / "x.png")
    elif problem == "not_an_adapter":
        (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
        extra = ["--texture-lora", str(tmp_path / "junk.safetensors")]
    elif problem == "not_glb":
        out = str(tmp_path / "o.obj")
    else:
        extra += ["--pipeline-type", "1024_cascade"]  # at --resolution 512
    rc, err = generate(["--image", image, "--output", out, *extra, *FEW_STEPS], capsys)
    assert rc == 2, err[-1500:]
    last = err.strip().splitlines()[-1]  # after any progress lines
    assert last.startswith("trellis2-worker: ") and expect in last and "Traceback" not in err
    assert "trellis2-generate-" not in last  # no internal (temporary) path
    assert not Path(out).exists()


def test_the_strength_scales_the_adapter_and_the_base_comes_back_afterwards(base, trained):
    from trellis2_worker.generate import PIPELINE_TYPES, Trellis2Pipeline
    from trellis2_worker.generate.adapters import AdapterRequest, adapters_applied, check_adapters
    from trellis2_worker.models import SparseTensor

    _, adapter = trained
    pipe = Trellis2Pipeline(base, sampler_params={"texture": {"steps": 2}})
    g = torch.Generator().manual_seed(0)
    coords = torch.tensor([[0, x, y, z] for x in range(4) for y in range(3) for z in range(3)], dtype=torch.int32)
    shape = SparseTensor(torch.randn(len(coords), 32, generator=g), coords)
    cond = torch.randn(1, 9, 64, generator=g)

    def texture():
        torch.manual_seed(1)
        with torch.no_grad():
            return pipe.sample_tex_slat(cond, "tex_slat_flow_model_512", shape).feats

    def checked(scale):
        return check_adapters([AdapterRequest("texture", str(adapter), scale)], Path, base, PIPELINE_TYPES["512"], 512)

    plain = texture()
    with adapters_applied(pipe, checked(0.0)):
        off = texture()
    with adapters_applied(pipe, checked(1.0)):
        full = texture()
    with adapters_applied(pipe, checked(2.0)):
        double = texture()
    after = texture()
    torch.testing.assert_close(off, plain, rtol=0, atol=1e-6)
    torch.testing.assert_close(after, plain, rtol=0, atol=0)
    d1, d2 = (full - plain).abs().mean().item(), (double - plain).abs().mean().item()
    assert d1 > 1e-4 and 1.5 < d2 / d1 < 2.5


def test_the_export_bakes_each_voxels_colour_onto_the_surface_and_simplifies():
    import trimesh
    from scipy.spatial import cKDTree

    from trellis2_worker.generate.export import to_glb

    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.3)  # 20480 faces
    res = 64
    grid = np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (grid + 0.5) / res - 0.5
    shell = np.abs(np.linalg.norm(centres, axis=1) - 0.3) < 1.5 / res
    coords, centres = grid[shell].astype(np.int32), centres[shell]
    attrs = np.zeros((len(coords), 6), np.float32)
    attrs[:, 0] = centres[:, 0] > 0          # red on +x
    attrs[:, 2] = centres[:, 2] > 0.1        # blue on top
    attrs[:, 3:5] = (0.2, 0.7)
    attrs[:, 5] = 1.0
    glb = to_glb(sphere.vertices, sphere.faces, coords, attrs, res, texture_size=1024, decimate=4000)
    assert 3000 <= glb.faces <= 4000
    mesh = next(iter(trimesh.load(io.BytesIO(glb.data), file_type="glb").geometry.values()))
    img = np.asarray(mesh.visual.material.baseColorTexture.convert("RGBA"))
    mr = np.asarray(mesh.visual.material.metallicRoughnessTexture.convert("RGB"))
    # face centroids' uv -> texel, against the nearest voxel of the centroid's position (GLB is y-up: z = y)
    uv = mesh.visual.uv[mesh.faces].mean(axis=1)
    texel = np.clip((np.stack([uv[:, 0], 1 - uv[:, 1]], 1) * 1024).astype(int), 0, 1023)
    p = mesh.vertices[mesh.faces].mean(axis=1)
    p = np.stack([p[:, 0], -p[:, 2], p[:, 1]], 1)
    _, nearest = cKDTree(centres).query(p)
    got = img[texel[:, 1], texel[:, 0]]
    want = np.clip(attrs[nearest] * 255, 0, 255).round()
    agree = (np.abs(got[:, :3] - want[:, :3]) <= 1).all(axis=1).mean()
    assert agree > 0.95, agree
    assert (got[:, 3] == 255).all()
    assert np.abs(mr[texel[:, 1], texel[:, 0]][:, 1:] - [178, 51]).max() <= 1  # roughness G, metallic B


def test_an_image_is_cropped_to_its_object_and_premultiplied():
    from trellis2_worker.errors import InputError
    from trellis2_worker.generate.image import preprocess

    img = np.zeros((100, 200, 4), np.uint8)
    img[20:61, 50:131] = (200, 100, 40, 255)     # an 81 x 41 opaque block
    img[61:70, 50:131] = (200, 100, 40, 100)      # a faint strip below it, outside the 0.8-alpha bbox
    out = preprocess(Image.fromarray(img, "RGBA"))
    assert out.mode == "RGB" and out.size == (80, 80)  # square of the longest bbox side
    arr = np.asarray(out)
    assert tuple(arr[40, 40]) == (200, 100, 40) and tuple(arr[0, 0]) == (0, 0, 0)
    assert tuple(arr[65, 40]) == (78, 39, 15)  # premultiplied by its alpha 100/255
    with pytest.raises(InputError, match="transparent"):
        preprocess(Image.fromarray(img[:, :, :3], "RGB"))


def test_sampler_overrides_parse_from_one_or_several_flags_and_unknown_names_are_refused():
    from trellis2_worker.cli import build_parser
    from trellis2_worker.errors import InputError
    from trellis2_worker.generate.cli import parse_sampler_overrides

    def parsed(*argv):
        args = build_parser().parse_args(["generate", "--image", "i.png", "--output", "o.glb", *argv])
        return parse_sampler_overrides(args.sampler)

    want = {"shape": {"steps": 8}, "sparse_structure": {"guidance_interval": [0.5, 1.0]}}
    assert parsed("--sampler", "shape.steps=8", "sparse_structure.guidance_interval=[0.5, 1.0]") == want
    assert parsed("--sampler", "shape.steps=8", "--sampler", "sparse_structure.guidance_interval=[0.5, 1.0]") == want
    for bad in ("geometry.steps=8", "shape.steps", "shape=8", "shape.steps=eight"):
        with pytest.raises(InputError):
            parsed("--sampler", bad)
