"""The training recipe's math and bookkeeping, without a model: what the denoiser is trained to predict, how t is
drawn per stage, how a batch is cut into micro-batches, which objects a step sees, and the image condition."""

import numpy as np
import pytest
import torch
from PIL import Image

from trellis2_worker.train.batching import plan_micro_batches
from trellis2_worker.train.condition import prepare_view
from trellis2_worker.train.recipe import STAGES, SIGMA_MIN, AdaptiveGradClipper, noisy, sample_t, velocity
from trellis2_worker.train.data import batch_indices, step_generators


def test_noising_runs_from_data_to_noise_and_the_target_is_its_velocity():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 8, 4, generator=g), torch.randn(3, 8, 4, generator=g)
    zeros, ones = torch.zeros(3), torch.ones(3)
    assert torch.allclose(noisy(x0, zeros, eps), x0 + SIGMA_MIN * eps)
    assert torch.allclose(noisy(x0, ones, eps), eps)
    # v is the time derivative of x_t along the path, whatever t is.
    t, h = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), 1e-6
    x0, eps = x0.double(), eps.double()
    numeric = (noisy(x0, t + h, eps) - noisy(x0, t, eps)) / h
    assert torch.allclose(numeric, velocity(x0, eps), atol=1e-6)


def test_sparse_structure_draws_t_logit_normal_and_the_slat_stages_uniform():
    g = torch.Generator().manual_seed(1)
    t = sample_t(STAGES["sparse_structure"], 40000, g)
    logit = torch.log(t / (1 - t))
    assert abs(float(logit.mean()) - 1.0) < 0.03 and abs(float(logit.std()) - 1.0) < 0.03
    for name in ("geometry", "texture"):
        u = sample_t(STAGES[name], 40000, g)
        assert 0 <= float(u.min()) and float(u.max()) <= 1
        assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.003


def test_each_stage_trains_the_model_the_pipeline_uses():
    assert STAGES["sparse_structure"].model_key(1024) == "sparse_structure_flow_model"
    assert STAGES["geometry"].model_key(512) == "shape_slat_flow_model_512"
    assert STAGES["texture"].model_key(1024) == "tex_slat_flow_model_1024"
    assert STAGES["sparse_structure"].image_size(1024) == 512 and STAGES["texture"].image_size(1024) == 1024
    assert STAGES["geometry"].max_object_tokens(512) == 8192 and STAGES["texture"].max_object_tokens(1024) == 32768


@pytest.mark.parametrize("seed", range(5))
def test_micro_batches_fit_the_budget_hold_every_object_once_and_are_balanced(seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(100, 8192, size=8).tolist()
    budget = 12000
    groups = plan_micro_batches(tokens, budget)
    assert sorted(i for g in groups for i in g) == list(range(8))
    loads = [sum(tokens[i] for i in g) for g in groups]
    assert max(loads) <= budget
    assert len(groups) <= 8
    # Balanced: no group could give its smallest object to the lightest group and lower the heaviest load.
    assert max(loads) - min(loads) <= max(tokens)


def test_a_batch_that_fits_stays_one_micro_batch_and_an_object_over_budget_is_refused():
    assert plan_micro_batches([4096] * 8, 32768) == [list(range(8))]
    assert len(plan_micro_batches([4096] * 8, 16384)) == 2
    with pytest.raises(ValueError, match="exceeds"):
        plan_micro_batches([100, 9000], 8192)


def test_steps_walk_through_every_object_once_per_epoch_and_repeat_exactly():
    n, b = 5, 3
    seen = [i for s in range(5) for i in batch_indices(s, b, n, seed=7)]  # 15 draws = 3 epochs
    for epoch in range(3):
        assert sorted(seen[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert batch_indices(4, b, n, seed=7) == batch_indices(4, b, n, seed=7)
    assert batch_indices(4, b, n, seed=7) != batch_indices(4, b, n, seed=8) or n < 3
    a, ga = step_generators(3, 10)
    c, gc = step_generators(3, 10)
    assert a.integers(1 << 30) == c.integers(1 << 30) and torch.equal(torch.rand(4, generator=ga), torch.rand(4, generator=gc))


def test_gradient_clipping_starts_at_one_then_follows_the_95th_percentile():
    clip = AdaptiveGradClipper(max_norm=1.0, percentile=95, buffer=100)
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 2.0)  # norm 4
    assert clip([p]) == pytest.approx(4.0)
    assert float(p.grad.norm()) == pytest.approx(1.0, rel=1e-5)
    clip.norms = [0.01 * (i + 1) for i in range(100)]  # 0.01 .. 1.00
    assert clip.threshold() == pytest.approx(np.percentile(clip.norms, 95))
    p.grad = torch.full((4,), float("nan"))
    assert not np.isfinite(clip([p])) and len(clip.norms) == 100  # non-finite norms are not remembered


def test_the_condition_view_is_cropped_square_around_the_object_and_premultiplied_on_black():
    img = np.zeros((100, 120, 4), np.uint8)
    img[20:40, 30:70] = (200, 100, 50, 128)  # a 40×20 half-transparent box off-centre
    out = prepare_view(Image.fromarray(img, "RGBA"), 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    solid = out.sum(0) > 0.1  # above LANCZOS ringing
    rows = solid.any(1).nonzero().flatten()
    cols = solid.any(0).nonzero().flatten()
    assert cols.min() <= 1 and cols.max() >= 62  # the long side fills the frame
    assert 14 <= rows.min() <= 18 and 45 <= rows.max() <= 49  # the short side is centred
    centre = out[:, 32, 32]
    assert torch.allclose(centre, torch.tensor([200, 100, 50]) / 255 * (128 / 255), atol=2e-3)
    assert float(out[:, 2, 32].abs().max()) < 1e-3  # outside the box: black
