"""Tests of book/flows.py (chapter 01): inverses, log-determinants against autograd, normalisation."""

import math

import pytest
import torch

from book.datasets import olympic_rings
from book.flows import (
    RINGS_VALIDATION_POINTS,
    RINGS_VALIDATION_SEED,
    AffineCoupling,
    GaussianBaseline,
    NormalizingFlow,
    Permutation,
    coupling_network,
    mean_nll,
    nll_loss,
    standard_normal_log_prob,
    train_rings_flow,
)
from book.training import TrainingRecipe


def randomized(module: torch.nn.Module, scale: float = 0.15, seed: int = 0) -> torch.nn.Module:
    """``module`` in float64 with random (non-identity) weights."""
    module = module.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return module


def autograd_log_abs_det(function, x: torch.Tensor) -> torch.Tensor:
    jacobians = [torch.autograd.functional.jacobian(lambda v: function(v[None])[0][0], point) for point in x]
    return torch.stack([torch.linalg.slogdet(j).logabsdet for j in jacobians])


def points(n: int, d: int, seed: int = 1) -> torch.Tensor:
    return 1.5 * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_coupling_network_shape_and_identity_start():
    network = coupling_network(3, hidden=8, depth=5)
    assert sum(isinstance(m, torch.nn.Linear) for m in network) == 5
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in network) == 4
    assert torch.equal(network(torch.randn(4, 3)), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="depth >= 2"):
        coupling_network(2, depth=1)


def test_new_coupling_and_flow_are_the_identity():
    x = points(20, 2).float()
    z, log_det = NormalizingFlow.build(layers=3).inverse(x)
    assert torch.allclose(z, x) and torch.equal(log_det, torch.zeros(20))


@pytest.mark.parametrize("dim", [2, 5])
def test_coupling_inverts_and_keeps_the_masked_part(dim):
    layer = randomized(AffineCoupling(dim))
    z = points(100, dim)
    x, log_det = layer(z)
    z_back, log_det_inverse = layer.inverse(x)
    assert torch.allclose(z_back, z, atol=1e-12)
    assert torch.allclose(log_det, -log_det_inverse, atol=1e-12)
    kept = layer.mask.bool()
    assert torch.equal(x[:, kept], z[:, kept])
    assert (x[:, ~kept] - z[:, ~kept]).abs().max() > 1e-2  # not the identity


@pytest.mark.parametrize("dim", [2, 5])
def test_coupling_log_det_matches_autograd(dim):
    layer = randomized(AffineCoupling(dim, mask=(torch.arange(dim) % 2 == 0).float()))
    x = points(10, dim, seed=2)
    assert torch.allclose(layer.inverse(x)[1], autograd_log_abs_det(layer.inverse, x), atol=1e-10)
    assert torch.allclose(layer(x)[1], autograd_log_abs_det(layer, x), atol=1e-10)


def test_log_scale_is_clamped():
    layer = randomized(AffineCoupling(2, max_log_scale=0.5), scale=5.0)
    log_scale, _ = layer.scale_and_shift(points(500, 2) * layer.mask)
    assert log_scale.abs().max() <= 0.5
    assert log_scale.abs().max() > 0.4  # the clamp is reached, so the test can fail


def test_bad_mask_is_refused():
    with pytest.raises(ValueError, match="transform at least one"):
        AffineCoupling(2, mask=torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="0/1 tensor of shape"):
        AffineCoupling(3, mask=torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("seed", [None, 0, 7])
def test_permutation_inverts_with_zero_log_det(seed):
    permutation = Permutation(6, seed=seed)
    v = points(5, 6)
    permuted, log_det = permutation(v)
    assert torch.equal(permutation.inverse(permuted)[0], v)
    assert torch.equal(log_det, torch.zeros(5))
    assert sorted(permutation.permutation.tolist()) == list(range(6))
    assert torch.equal(permuted[:, 0], v[:, permutation.permutation[0]])


def test_two_dimensional_default_permutation_is_the_swap():
    assert Permutation(2).permutation.tolist() == [1, 0]


@pytest.mark.parametrize("dim", [2, 5])
def test_flow_inverts_and_its_log_det_matches_autograd(dim):
    flow = randomized(NormalizingFlow.build(dim=dim, layers=5, seed=3))
    z = points(200, dim)
    x, log_det = flow(z)
    z_back, log_det_inverse = flow.inverse(x)
    assert torch.allclose(z_back, z, atol=1e-10)
    assert torch.allclose(log_det, -log_det_inverse, atol=1e-10)
    few = x[:10]
    assert torch.allclose(flow.inverse(few)[1], autograd_log_abs_det(flow.inverse, few), atol=1e-9)
    assert (flow.inverse(few)[1] - flow.inverse(few)[1].mean()).abs().max() > 1e-3  # varies with x


def test_flow_density_integrates_to_one():
    flow = randomized(NormalizingFlow.build(layers=6, seed=1))
    axis = torch.linspace(-10, 10, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        integral = flow.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(integral.item() - 1) < 5e-3


def test_log_prob_is_the_sum_of_its_parts_and_matches_a_linear_flow():
    flow = randomized(NormalizingFlow.build(layers=4, seed=2))
    x = points(50, 2)
    log_p_z, log_det = flow.log_prob_parts(x)
    assert torch.allclose(flow.log_prob(x), log_p_z + log_det)
    assert torch.allclose(log_p_z, standard_normal_log_prob(flow.inverse(x)[0]))
    # An empty flow of one permutation is a standard normal: compare with torch.distributions.
    swap = NormalizingFlow([Permutation(2)]).double()
    reference = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                                                       torch.eye(2, dtype=torch.float64))
    assert torch.allclose(swap.log_prob(x), reference.log_prob(x))


def test_nll_loss_and_mean_nll_agree():
    flow = randomized(NormalizingFlow.build(layers=3, seed=4))
    x = points(300, 2)
    expected = -flow.log_prob(x).mean().item()
    assert nll_loss(flow, x).item() == pytest.approx(expected, rel=1e-12)
    assert mean_nll(flow.log_prob, x, batch_size=7) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least one point"):
        mean_nll(flow.log_prob, x[:0])


def test_sampling_is_seeded_and_follows_the_flow():
    flow = randomized(NormalizingFlow.build(layers=3, seed=5)).float()
    first = flow.sample(100, generator=torch.Generator().manual_seed(0))
    again = flow.sample(100, generator=torch.Generator().manual_seed(0))
    other = flow.sample(100, generator=torch.Generator().manual_seed(1))
    assert first.shape == (100, 2) and torch.equal(first, again) and not torch.equal(first, other)
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(first, flow(z)[0])


def test_intermediate_states_in_the_data_order():
    flow = randomized(NormalizingFlow.build(layers=4, seed=6))
    z = points(30, 2)
    forward = flow.intermediate_states(z, "forward")
    assert len(forward) == 5
    assert torch.allclose(forward[-1], flow(z)[0])
    x = forward[-1]
    inverse = flow.intermediate_states(x, "inverse")
    assert len(inverse) == 5 and torch.equal(inverse[0], x)
    # The last inverse state is z in the data's coordinate order: an odd number of swaps (3) reverses it.
    assert torch.allclose(inverse[-1], flow.inverse(x)[0].flip(-1), atol=1e-10)
    # Every coupling moves one coordinate of the data only: consecutive states share the other.
    for before, after in zip(inverse[:-1], inverse[1:], strict=True):
        assert torch.equal(before[:, 0], after[:, 0]) or torch.equal(before[:, 1], after[:, 1])
    # States met forward and backward are the same points.
    for a, b in zip(forward, reversed(inverse), strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    with pytest.raises(ValueError, match="unknown direction"):
        flow.intermediate_states(x, "sideways")


def test_build_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = NormalizingFlow.build(seed=3), NormalizingFlow.build(seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="at least one coupling"):
        NormalizingFlow.build(layers=0)


def test_gaussian_baseline_is_the_maximum_likelihood_gaussian():
    generator = torch.Generator().manual_seed(0)
    mean, cholesky = torch.tensor([1.0, -2.0]), torch.tensor([[2.0, 0.0], [0.6, 0.5]])
    data = mean + torch.randn(20_000, 2, generator=generator) @ cholesky.T
    baseline = GaussianBaseline(data)
    assert torch.allclose(baseline.mean.float(), data.mean(dim=0), atol=1e-5)
    assert torch.allclose(baseline.covariance.float(), cholesky @ cholesky.T, atol=0.06)
    # At the maximum-likelihood fit, the mean NLL on the training data is the Gaussian's entropy.
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * baseline.covariance).item()
    assert mean_nll(baseline.log_prob, data) == pytest.approx(entropy, abs=1e-4)
    sampled = baseline.sample(20_000, generator=generator)
    assert torch.allclose(sampled.mean(dim=0), mean, atol=0.05)


def test_rings_flow_records_its_validation_and_is_trained_once(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    cpu = torch.device("cpu")
    recipe = TrainingRecipe(epochs=2, batch_size=64, lr=1e-2)
    run = train_rings_flow(recipe, 256, layers=2, device=cpu)
    history = run.history
    assert len(history["loss"]) == 2 * 4 and len(history["epoch_loss"]) == 2
    for key in ("validation_nll", "validation_log_p_z", "validation_log_det"):
        assert len(history[key]) == 2, key
    for nll, log_p_z, log_det in zip(history["validation_nll"], history["validation_log_p_z"],
                                     history["validation_log_det"], strict=True):
        assert nll == pytest.approx(-(log_p_z + log_det), rel=1e-5)
    # the last entry is the held-out NLL of the returned flow on the documented validation points
    validation = olympic_rings(RINGS_VALIDATION_POINTS,
                               generator=torch.Generator().manual_seed(RINGS_VALIDATION_SEED)).points
    assert history["validation_nll"][-1] == pytest.approx(mean_nll(run.model.log_prob, validation), rel=1e-5)
    assert history["validation_nll"][-1] < history["validation_nll"][0]  # it learned something
    again = train_rings_flow(recipe, 256, layers=2, device=cpu)
    assert again.from_cache and not run.from_cache
    pairs = zip(run.model.parameters(), again.model.parameters(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)
    assert not train_rings_flow(recipe, 256, layers=3, device=cpu).from_cache
    assert not train_rings_flow(recipe, 128, layers=2, device=cpu).from_cache
