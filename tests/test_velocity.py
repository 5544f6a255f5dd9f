"""Tests of book/velocity.py: shapes, time and class inputs, signed outputs."""

import pytest
import torch

from book.velocity import RINGS_CONDITIONAL, VelocityMLP, VelocityMLPConfig


def test_shapes_and_float_or_batched_time():
    model = VelocityMLP(VelocityMLPConfig(hidden=16, layers=3))
    x = torch.randn(9, 2)
    assert model(x, 0.3).shape == (9, 2)
    torch.testing.assert_close(model(x, 0.3), model(x, torch.full((9,), 0.3)))
    assert not torch.allclose(model(x, 0.0), model(x, 1.0)), "time must be an input"


def test_output_layer_is_linear_so_velocities_take_both_signs():
    torch.manual_seed(0)
    model = VelocityMLP(VelocityMLPConfig(hidden=16, layers=3))
    assert isinstance(model.net[-1], torch.nn.Linear)
    out = model(torch.randn(500, 2) * 3, torch.rand(500))
    assert (out < 0).any() and (out > 0).any()


def test_class_conditioning():
    torch.manual_seed(0)
    model = VelocityMLP(VelocityMLPConfig(hidden=16, layers=3, num_classes=5, class_embedding_dim=4))
    x, t = torch.randn(5, 2), torch.rand(5)
    labels = torch.arange(5)
    out = model(x, t, labels)
    assert out.shape == (5, 2)
    # the same point and time with another class gives another velocity
    assert not torch.allclose(out, model(x, t, (labels + 1) % 5))
    with pytest.raises(ValueError, match="class-conditional: pass labels"):
        model(x, t)


def test_unconditional_model_refuses_labels_and_too_few_layers():
    with pytest.raises(ValueError, match="unconditional"):
        model = VelocityMLP(VelocityMLPConfig(hidden=8, layers=2))
        model(torch.zeros(1, 2), 0.0, torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="layers must be at least 2"):
        VelocityMLP(VelocityMLPConfig(layers=1))


def test_layer_count_and_width():
    model = VelocityMLP(VelocityMLPConfig(dim=3, hidden=32, layers=5))
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 5
    assert linears[0].in_features == 4 and linears[-1].out_features == 3
    assert all(isinstance(m, torch.nn.LeakyReLU) for m in model.net[1:-1:2])


def test_the_null_class_has_its_own_embedding_row():
    config = VelocityMLPConfig(hidden=16, layers=3, num_classes=5, class_embedding_dim=4)
    assert config.null_class == 5 and VelocityMLPConfig().null_class is None
    assert RINGS_CONDITIONAL.null_class == 5
    model = VelocityMLP(config)
    assert model.class_embedding.num_embeddings == 6
    x, t = torch.randn(3, 2), torch.rand(3)
    null = model(x, t, torch.full((3,), config.null_class))
    assert not torch.allclose(null, model(x, t, torch.zeros(3, dtype=torch.long)))
    with pytest.raises(IndexError):
        model(x, t, torch.full((3,), 6))
