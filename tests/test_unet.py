"""Tests of book/unet.py: shapes, the baseline's parameter count, the time embedding, the null class."""

import math

import pytest
import torch

from book.unet import (
    BaselineUNet,
    DoubleConv,
    ResidualBlock,
    UNet,
    UNetConfig,
    count_parameters,
    sinusoidal_embedding,
)


def conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def test_baseline_parameter_count_by_hand():
    # Written out layer by layer from DESIGN.md, independently of the chapter's formula.
    layers = [
        conv(2, 32, 3), conv(32, 32, 3),  # DoubleConv(2 -> 32)
        conv(32, 64, 3), conv(64, 64, 3),  # DoubleConv(32 -> 64)
        conv(64, 64, 3), conv(64, 64, 3),  # DoubleConv(64 -> 64)
        conv(64, 64, 2),  # ConvTranspose(64 -> 64, k2 s2)
        conv(64, 32, 3), conv(32, 32, 3),  # DoubleConv(64 -> 32)
        conv(32, 32, 2),  # ConvTranspose(32 -> 32, k2 s2)
        conv(32, 32, 3), conv(32, 32, 3),  # DoubleConv(32 -> 32)
        conv(32, 1, 1),  # 1x1 to one channel
    ]
    assert sum(layers) == 205_953
    assert count_parameters(BaselineUNet()) == 205_953
    assert count_parameters(BaselineUNet(out_channels=3)) == 205_953 + 2 * 33


def test_baseline_layers_are_exactly_the_specified_ones():
    model = BaselineUNet()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    shapes = [(m.in_channels, m.out_channels, m.kernel_size) for m in convs]
    three = (3, 3)
    assert shapes == [(2, 32, three), (32, 32, three), (32, 64, three), (64, 64, three), (64, 64, three),
                      (64, 64, three), (64, 32, three), (32, 32, three), (32, 32, three), (32, 32, three),
                      (32, 1, (1, 1))]
    transposed = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in transposed] == [
        (64, 64, (2, 2), (2, 2)), (32, 32, (2, 2), (2, 2))]
    assert isinstance(model.encoder1, DoubleConv)
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 10  # none after the 1x1 head


@pytest.mark.parametrize("t", [0.3, torch.tensor(0.3), torch.full((5,), 0.3)])
def test_baseline_shapes_and_time_forms(t):
    torch.manual_seed(0)
    model = BaselineUNet()
    x = torch.randn(5, 1, 28, 28)
    out = model(x, t)
    assert out.shape == (5, 1, 28, 28)
    torch.testing.assert_close(out, model(x, torch.full((5,), 0.3)))


def test_baseline_time_is_a_constant_input_channel():
    torch.manual_seed(0)
    model = BaselineUNet()
    x = torch.randn(2, 1, 28, 28)
    first = model.encoder1[0]
    features = first(torch.cat([x, torch.full((2, 1, 28, 28), 0.7)], dim=1))
    captured = {}
    first.register_forward_hook(lambda module, inputs, output: captured.setdefault("out", output))
    model(x, 0.7)
    torch.testing.assert_close(captured["out"], features)


def test_sinusoidal_embedding_formula():
    t = torch.tensor([0.0, 0.25, 1.0])
    dim = 8
    embedding = sinusoidal_embedding(t, dim)
    assert embedding.shape == (3, dim) and embedding.dtype == torch.float32
    for b, time in enumerate(t.tolist()):
        for i in range(dim // 2):
            angle = 1000 * time * 10_000 ** (-i / (dim // 2))
            assert embedding[b, i].item() == pytest.approx(math.sin(angle), abs=1e-4)
            assert embedding[b, i + dim // 2].item() == pytest.approx(math.cos(angle), abs=1e-4)
    # t = k / 1000 gives the integer-step encoding of DDPM's step k
    torch.testing.assert_close(sinusoidal_embedding(torch.tensor([0.007]), dim),
                               sinusoidal_embedding(torch.tensor([7.0]), dim, scale=1.0))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(t, 7)


def test_unet_shapes_unconditional_and_conditional():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    assert UNet()(x, torch.rand(4)).shape == (4, 1, 28, 28)
    model = UNet(UNetConfig(num_classes=10, out_channels=2))
    assert model(x, 0.5, torch.tensor([0, 3, 9, 10])).shape == (4, 2, 28, 28)
    assert model.config.null_class == 10 and UNet().config.null_class is None


def test_untrained_unet_outputs_zero():
    x = torch.randn(2, 1, 28, 28)
    assert torch.count_nonzero(UNet(UNetConfig(num_classes=10))(x, torch.rand(2))) == 0


def _randomize_head(model: UNet) -> UNet:
    with torch.no_grad():
        for p in model.head[-1].parameters():
            p.normal_(0, 0.1)
    return model


def test_null_class_is_used_when_labels_are_none():
    torch.manual_seed(0)
    model = _randomize_head(UNet(UNetConfig(num_classes=10)))
    x, t = torch.randn(3, 1, 28, 28), torch.rand(3)
    without = model(x, t)
    torch.testing.assert_close(without, model(x, t, torch.full((3,), 10)), rtol=0, atol=0)
    assert not torch.allclose(without, model(x, t, torch.full((3,), 4)))
    # changing the null row changes the unconditional output, changing another row does not
    with torch.no_grad():
        model.class_embedding.weight[4] += 1.0
    torch.testing.assert_close(model(x, t), without, rtol=0, atol=0)
    with torch.no_grad():
        model.class_embedding.weight[10] += 1.0
    assert not torch.allclose(model(x, t), without)


def test_labels_on_an_unconditional_unet_are_refused():
    with pytest.raises(ValueError, match="unconditional"):
        UNet()(torch.randn(2, 1, 28, 28), 0.5, torch.tensor([1, 2]))


def test_time_changes_the_unet_output():
    torch.manual_seed(0)
    model = _randomize_head(UNet())
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(model(x, 0.1), model(x, 0.9))


def test_bad_configs_and_sizes_are_refused():
    with pytest.raises(ValueError, match="divisible by groups"):
        UNet(UNetConfig(channels=(30, 60)))
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet()(torch.randn(1, 1, 30, 30), 0.5)


def test_residual_block_is_identity_plus_residual():
    block = ResidualBlock(8, 8, embedding_dim=4, groups=2)
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    x = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(block(x, torch.randn(2, 4)), x)
