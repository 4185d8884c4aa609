"""TRELLIS.2 image-to-3D inference: sparse structure, shape latent (direct or cascade), texture latent, both SC-VAE
decoders and the mesh, computing what the reference `Trellis2ImageTo3DPipeline.run` computes (docs/pipeline.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from trellis2_worker.errors import InputError
from trellis2_worker.models import SparseTensor, SparseUnetVaeDecoder
from trellis2_worker.ovoxel import flexible_dual_grid_to_mesh

from .options import MAX_NUM_TOKENS, PIPELINE_TYPE_NAMES, SAMPLER_STAGES, check_sampler_overrides
from .sampler import SamplerSettings, sample

CASCADE_STEP = 128      # the cascade lowers R by this until the token count fits
UPSAMPLE_TIMES = 4      # the shape decoder's four ×2 subdivisions: a 32³ latent -> a 512³ voxel grid
LR_RESOLUTION = 512     # the resolution of the cascade's low-resolution stage and of `upsample`'s grid
MESH_AABB = ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))



@dataclass(frozen=True)
class PipelineType:
    name: str
    ss_resolution: int              # the sparse-structure occupancy grid the shape latent lives on (32 or 64)
    shape_model: str                # the (high-resolution) shape flow
    tex_model: str
    cond_resolution: int            # image-condition size of the shape (HR) and texture stages
    cascade_from: int | None = None  # the cascade's starting R; None for a direct pipeline

    @property
    def models(self) -> tuple[str, ...]:
        lr = ("shape_slat_flow_model_512",) if self.cascade_from else ()
        return ("sparse_structure_flow_model", "sparse_structure_decoder", *lr, self.shape_model, self.tex_model,
                "shape_slat_decoder", "tex_slat_decoder")

    @property
    def flow_resolution(self) -> int:
        """The resolution of the flows it samples (the adapters' resolution)."""
        return 512 if self.name == "512" else 1024


PIPELINE_TYPES = {
    "512": PipelineType("512", 32, "shape_slat_flow_model_512", "tex_slat_flow_model_512", 512),
    "1024": PipelineType("1024", 64, "shape_slat_flow_model_1024", "tex_slat_flow_model_1024", 1024),
    "1024_cascade": PipelineType("1024_cascade", 32, "shape_slat_flow_model_1024", "tex_slat_flow_model_1024", 1024,
                                 cascade_from=1024),
    "1536_cascade": PipelineType("1536_cascade", 32, "shape_slat_flow_model_1024", "tex_slat_flow_model_1024", 1024,
                                 cascade_from=1536),
}

assert tuple(PIPELINE_TYPES) == PIPELINE_TYPE_NAMES


@dataclass
class Generation:
    """One generated object: the latents, the decoded voxels and the mesh before export."""

    resolution: int                  # the decode resolution (grid of the voxels and of the mesh)
    shape_slat: SparseTensor         # de-normalised
    tex_slat: SparseTensor           # de-normalised
    voxel_coords: np.ndarray         # [V, 3] int32 at `resolution`
    voxel_attrs: np.ndarray          # [V, 6] float32 in ~[0, 1]: base colour 0:3, metallic 3, roughness 4, alpha 5
    vertices: np.ndarray             # [N, 3] float32 in the unit cube [-0.5, 0.5]³ (z up)
    faces: np.ndarray                # [F, 3] int64
    tokens: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


class Trellis2Pipeline:
    """The pipeline over one base (a `models.Base`). `models` may hold replacements for the base's modules (e.g.
    flows with LoRA on them); `sampler_params` = {STAGE: {param: value}} overrides pipeline.json's sampler params.

    `run(conds, seed, pipeline_type)` takes the image conditions ({512: [1, L, C], 1024: ...}); `get_cond` makes
    them from a preprocessed image with the base's DINOv3."""

    def __init__(self, base, device: str | torch.device = "cpu", sampler_params: dict | None = None,
                 models: dict | None = None, progress: bool = False):
        self.base = base
        self.device = torch.device(device)
        self.models = dict(models or {})
        self.progress = progress
        args = base.pipeline.get("args", {})
        self.samplers: dict[str, SamplerSettings] = {}
        overrides = dict(sampler_params or {})
        check_sampler_overrides(overrides)
        for stage, key in SAMPLER_STAGES.items():
            if key not in args:
                raise InputError(f"the base's pipeline.json has no {key}")
            settings = SamplerSettings.from_pipeline_entry(args[key], key)
            self.samplers[stage] = settings.with_params(overrides.get(stage, {}), f"--sampler {stage}")
        self.norm = {k: {s: torch.tensor(base.normalization(k)[s], dtype=torch.float32, device=self.device)[None]
                         for s in ("mean", "std")} for k in ("shape", "tex")}
        self.on_stage: Callable[[str], None] | None = None

    # -- models and conditions ---------------------------------------------------------------------------------
    def model(self, key: str):
        if key not in self.models:
            self.models[key] = self.base.load(key, device=self.device)
        return self.models[key]

    def check_models(self, pipeline_type: PipelineType) -> None:
        missing = [k for k in pipeline_type.models if k not in self.base.model_paths]
        if missing:
            raise InputError(f"pipeline type {pipeline_type.name} needs {', '.join(missing)}, which the base "
                             f"{self.base.model_id} does not list in its pipeline.json")

    @torch.no_grad()
    def get_cond(self, image, resolution: int) -> torch.Tensor:
        """DINOv3 features [1, L, C] of a preprocessed image (premultiplied RGB on black) at 512 or 1024."""
        cond = self.base.image_conditioner(self.device, image_size=resolution)
        return cond([image], image_size=resolution).to(self.device)

    # -- stages ------------------------------------------------------------------------------------------------
    def _sample(self, stage: str, model, noise, cond: torch.Tensor, desc: str, trace: dict | None, prefix: str,
                **kw):
        res = sample(model, noise, cond, torch.zeros_like(cond), self.samplers[stage],
                     desc=desc if self.progress else None, **kw)
        if trace is not None:
            trace[f"{prefix}_samples"] = res.samples.feats if isinstance(res.samples, SparseTensor) else res.samples
        return res.samples

    def sample_sparse_structure(self, cond: torch.Tensor, resolution: int, trace: dict | None = None) -> torch.Tensor:
        flow = self.model("sparse_structure_flow_model")
        r = flow.resolution
        noise = torch.randn(1, flow.in_channels, r, r, r).to(self.device)
        if trace is not None:
            trace["ss_noise"] = noise
        z = self._sample("sparse_structure", flow, noise, cond, "Sampling sparse structure", trace, "ss")
        logits = self.model("sparse_structure_decoder")(z)
        if trace is not None:
            trace["ss_logits"] = logits
        occ = logits > 0
        if resolution != occ.shape[2]:
            ratio = occ.shape[2] // resolution
            occ = F.max_pool3d(occ.float(), ratio, ratio, 0) > 0.5  # OR-pooling
        coords = torch.argwhere(occ)[:, [0, 2, 3, 4]].int()
        if trace is not None:
            trace["ss_coords"] = coords
        return coords

    def _denorm(self, x: SparseTensor, which: str) -> SparseTensor:
        return x * self.norm[which]["std"] + self.norm[which]["mean"]

    def sample_shape_slat(self, cond: torch.Tensor, key: str, coords: torch.Tensor, trace: dict | None = None,
                          prefix: str = "shape") -> SparseTensor:
        flow = self.model(key)
        noise = SparseTensor(torch.randn(coords.shape[0], flow.in_channels).to(self.device), coords)
        if trace is not None:
            trace[f"{prefix}_noise"] = noise.feats
        slat = self._sample("shape", flow, noise, cond, f"Sampling shape SLat ({key[-4:].lstrip('_')})", trace, prefix)
        return self._denorm(slat, "shape")

    def cascade_coords(self, lr_slat: SparseTensor, start: int, max_num_tokens: int,
                       tokens: dict | None = None, trace: dict | None = None) -> tuple[torch.Tensor, int]:
        """The HR coords: `upsample` the LR latent to the 512³ grid, quantise to the R/16 grid, and lower R by 128
        while the tokens are not below `max_num_tokens` (R = 1024 always stops)."""
        hr = self.model("shape_slat_decoder").upsample(lr_slat, upsample_times=UPSAMPLE_TIMES)
        if trace is not None:
            trace["cascade_upsampled_coords"] = hr
        r = start
        per_r = {}
        while True:
            quant = torch.cat([hr[:, :1], ((hr[:, 1:] + 0.5) / LR_RESOLUTION * (r // 16)).int()], dim=1)
            coords = quant.unique(dim=0)
            per_r[str(r)] = int(coords.shape[0])
            if coords.shape[0] < max_num_tokens or r == 1024:
                break
            r -= CASCADE_STEP
        if tokens is not None:
            tokens["cascade_tokens_per_R"] = per_r
        return coords.int(), r

    def sample_tex_slat(self, cond: torch.Tensor, key: str, shape_slat: SparseTensor,
                        trace: dict | None = None) -> SparseTensor:
        flow = self.model(key)
        concat = shape_slat.replace((shape_slat.feats - self.norm["shape"]["mean"]) / self.norm["shape"]["std"])
        channels = flow.in_channels - concat.feats.shape[1]
        noise = concat.replace(torch.randn(concat.coords.shape[0], channels).to(self.device))
        if trace is not None:
            trace["tex_noise"] = noise.feats
            trace["tex_concat_cond"] = concat.feats
        slat = self._sample("texture", flow, noise, cond, "Sampling texture SLat", trace, "tex", concat_cond=concat)
        return self._denorm(slat, "tex")

    def decode(self, shape_slat: SparseTensor, tex_slat: SparseTensor, resolution: int,
               trace: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(voxel coords, attrs, mesh vertices, faces) of the single object."""
        decoder = self.model("shape_slat_decoder")
        decoder.set_resolution(resolution)
        # The raw 7-channel output (before the dual-grid fields) is wanted for the trace, hence the base forward.
        h, subs = SparseUnetVaeDecoder.forward(decoder, shape_slat, return_subs=True)
        fields = decoder.fields(h)[0]
        tex = self.model("tex_slat_decoder")(tex_slat, guide_subs=subs) * 0.5 + 0.5
        if trace is not None:
            for i, s in enumerate(subs):
                trace[f"shape_subs{i}_logits"] = s.feats
                trace[f"shape_subs{i}_coords"] = s.coords
            trace["shape_dec_out_feats"] = h.feats
            trace["shape_dec_out_coords"] = h.coords
            trace["mesh_in_dual_vertices"] = fields.vertices
            trace["mesh_in_intersected"] = fields.intersected
            trace["mesh_in_split_weight"] = fields.quad_lerp
            trace["out_voxel_attrs"] = tex.feats
        coords = fields.coords.cpu().numpy().astype(np.int32)
        vertices, faces = flexible_dual_grid_to_mesh(
            coords, fields.vertices.float().cpu().numpy(), fields.intersected.cpu().numpy(), grid_size=resolution,
            aabb=MESH_AABB, split_weight=fields.quad_lerp.float().cpu().numpy())
        if trace is not None:
            trace["mesh_vertices"] = torch.from_numpy(vertices)
            trace["mesh_faces"] = torch.from_numpy(faces)
        return coords, tex.feats.float().cpu().numpy(), vertices, faces

    # -- the whole run -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, conds: dict[int, torch.Tensor], seed: int = 42, pipeline_type: str = "1024_cascade",
            max_num_tokens: int = MAX_NUM_TOKENS, trace: dict | None = None) -> Generation:
        if pipeline_type not in PIPELINE_TYPES:
            raise InputError(f"unknown pipeline type {pipeline_type!r} (known: {', '.join(PIPELINE_TYPES)})")
        pt = PIPELINE_TYPES[pipeline_type]
        self.check_models(pt)
        timings: dict[str, float] = {}
        tokens: dict = {}
        clock = [time.perf_counter()]

        def phase(name: str) -> None:
            now = time.perf_counter()
            timings[name] = round(timings.get(name, 0.0) + now - clock[0], 3)
            clock[0] = now

        def stage(name: str) -> None:
            if self.on_stage is not None:
                self.on_stage(name)

        cond_512 = conds[512].to(self.device)
        cond_hr = conds[pt.cond_resolution].to(self.device)
        torch.manual_seed(seed)
        stage("sparse_structure")
        coords = self.sample_sparse_structure(cond_512, pt.ss_resolution, trace)
        tokens["sparse_structure"] = int(coords.shape[0])
        if coords.shape[0] == 0:
            raise InputError("the sparse structure is empty: nothing to generate for this image (try another seed)")
        phase("sparse_structure")
        stage("shape")
        if pt.cascade_from is None:
            shape_slat = self.sample_shape_slat(cond_hr, pt.shape_model, coords, trace)
            resolution = pt.flow_resolution
        else:
            lr = self.sample_shape_slat(cond_512, "shape_slat_flow_model_512", coords, trace, prefix="shape_lr")
            if trace is not None:
                trace["cascade_lr_slat_feats"] = lr.feats
            tokens["shape_lr"] = int(lr.feats.shape[0])
            phase("shape_lr")
            hr_coords, resolution = self.cascade_coords(lr, pt.cascade_from, max_num_tokens, tokens, trace)
            shape_slat = self.sample_shape_slat(cond_hr, pt.shape_model, hr_coords, trace)
        tokens["shape"] = int(shape_slat.feats.shape[0])
        if trace is not None:
            trace["shape_slat_feats"] = shape_slat.feats
            trace["shape_slat_coords"] = shape_slat.coords
        phase("shape")
        stage("texture")
        tex_slat = self.sample_tex_slat(cond_hr, pt.tex_model, shape_slat, trace)
        if trace is not None:
            trace["tex_slat_feats"] = tex_slat.feats
        phase("texture")
        stage("decode")
        vcoords, attrs, vertices, faces = self.decode(shape_slat, tex_slat, resolution, trace)
        tokens["decoded_voxels"] = int(vcoords.shape[0])
        phase("decode")
        return Generation(resolution=resolution, shape_slat=shape_slat, tex_slat=tex_slat, voxel_coords=vcoords,
                          voxel_attrs=attrs, vertices=vertices, faces=faces, tokens=tokens, timings=timings)
