"""Tests of book/guidance.py: classifier-free guidance."""

import pytest
import torch

from book.guidance import guided

NULL = 10


def fake_eps(x, t, labels):
    """A noise 'predictor' whose output depends on the label in a known way."""
    return x * (labels.view(-1, 1, 1, 1).float() + 1) + t.view(-1, 1, 1, 1).float() / 1000


def test_guidance_cases():
    x = torch.randn(4, 1, 3, 3)
    t = torch.tensor([1, 2, 3, 4])
    labels = torch.tensor([0, 3, 5, 9])
    null = torch.full_like(labels, NULL)
    conditional, unconditional = fake_eps(x, t, labels), fake_eps(x, t, null)
    assert torch.equal(guided(fake_eps, 0.0, NULL)(x, t, labels), conditional)
    assert torch.equal(guided(fake_eps, -1.0, NULL)(x, t, labels), unconditional)
    for w in [0.5, 2.0, 8.0]:
        expected = (w + 1) * conditional - w * unconditional
        assert torch.allclose(guided(fake_eps, w, NULL)(x, t, labels), expected, atol=1e-5)


def test_guidance_uses_one_doubled_pass():
    calls = []

    def counting(x, t, labels):
        calls.append(x.shape[0])
        return fake_eps(x, t, labels)

    guided(counting, 3.0, NULL)(torch.randn(5, 1, 2, 2), torch.ones(5, dtype=torch.long), torch.arange(5))
    assert calls == [10]


def test_guidance_needs_labels():
    with pytest.raises(ValueError, match="labels"):
        guided(fake_eps, 1.0, NULL)(torch.randn(2, 1, 2, 2), torch.ones(2, dtype=torch.long), None)
