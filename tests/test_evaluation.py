"""Tests of book/evaluation.py: the Fréchet distance against closed forms, FID, the classifier, the class
spread."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from book.evaluation import (
    MNISTClassifier,
    class_accuracy,
    class_spread,
    classification_loss,
    classifier_features,
    fid,
    fraction_covered,
    frechet_distance,
    gaussian_frechet_distance,
    knn_radii,
    precision_recall,
    predicted_classes,
    symmetric_sqrt,
    trained_classifier,
)
from book.profiles import seeded
from book.training import TrainingRecipe, fit


def random_gaussian(dim: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mean = torch.randn(dim, generator=generator, dtype=torch.float64)
    root = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / math.sqrt(dim)
    return mean, root @ root.T + 0.01 * torch.eye(dim, dtype=torch.float64), root


def test_symmetric_sqrt_squares_back():
    _, cov, _ = random_gaussian(12, torch.Generator().manual_seed(0))
    root = symmetric_sqrt(cov)
    torch.testing.assert_close(root @ root, cov)
    torch.testing.assert_close(root, root.T)


def test_identical_gaussians_have_distance_zero():
    mean, cov, _ = random_gaussian(20, torch.Generator().manual_seed(1))
    assert gaussian_frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-9)
    features = torch.randn(500, 20, generator=torch.Generator().manual_seed(2))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)


def test_one_dimensional_closed_form():
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
    value = gaussian_frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]),
                                      torch.tensor([[0.25]]))
    assert value == pytest.approx(9.0 + 1.5**2, rel=1e-12)


def test_diagonal_closed_form():
    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var_a, var_b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    expected = ((mean_a - mean_b) ** 2).sum() + ((var_a.sqrt() - var_b.sqrt()) ** 2).sum()
    value = gaussian_frechet_distance(mean_a, torch.diag(var_a), mean_b, torch.diag(var_b))
    assert value == pytest.approx(expected.item(), rel=1e-12)


def test_general_covariances_match_scipy_sqrtm():
    generator = torch.Generator().manual_seed(3)
    mean_a, cov_a, _ = random_gaussian(30, generator)
    mean_b, cov_b, _ = random_gaussian(30, generator)
    trace_sqrt = np.trace(scipy.linalg.sqrtm(cov_a.numpy() @ cov_b.numpy()).real)
    expected = ((mean_a - mean_b).pow(2).sum() + torch.trace(cov_a + cov_b)).item() - 2 * trace_sqrt
    assert gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)


def test_distance_from_samples_approaches_the_gaussians():
    generator = torch.Generator().manual_seed(4)
    mean_a, cov_a, root_a = random_gaussian(5, generator)
    mean_b, cov_b, root_b = random_gaussian(5, generator)
    n = 400_000
    a = mean_a + torch.randn(n, 5, generator=generator, dtype=torch.float64) @ root_a.T
    b = mean_b + torch.randn(n, 5, generator=generator, dtype=torch.float64) @ root_b.T
    # the samples lack random_gaussian's 0.01 I: compare with the covariance root @ root.T
    exact = gaussian_frechet_distance(mean_a, root_a @ root_a.T, mean_b, root_b @ root_b.T)
    assert frechet_distance(a, b) == pytest.approx(exact, rel=0.02)


def test_frechet_distance_is_symmetric_non_negative_and_invariant():
    generator = torch.Generator().manual_seed(5)
    a = torch.randn(300, 8, generator=generator)
    b = 0.5 * torch.randn(400, 8, generator=generator) + 0.3
    forward, backward = frechet_distance(a, b), frechet_distance(b, a)
    assert forward > 0 and backward > 0
    assert forward == pytest.approx(backward, rel=1e-9)
    # a rotation and a common shift of the feature space change nothing
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator))
    shift = torch.randn(8, generator=generator)
    assert frechet_distance(a @ rotation + shift, b @ rotation + shift) == pytest.approx(forward, rel=1e-6)


def test_frechet_distance_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(torch.randn(10), torch.randn(10, 2))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.randn(1, 3), torch.randn(10, 3))


def test_classifier_shapes_and_features():
    torch.manual_seed(0)
    classifier = MNISTClassifier().eval()
    images = torch.rand(7, 1, 28, 28)
    assert classifier(images).shape == (7, 10)
    features = classifier_features(classifier, images, batch_size=3)
    assert features.shape == (7, MNISTClassifier.feature_dim) == (7, 84)
    assert (features >= 0).all()  # after a ReLU
    torch.testing.assert_close(features, classifier.features(images).detach())
    assert predicted_classes(classifier, images).shape == (7,)


def synthetic_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes: a bright 7x7 square at one of ten positions, on faint noise, pixel values in [0, 1]."""
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = 0.1 * torch.rand(n, 1, 28, 28, generator=generator)
    for index, label in enumerate(labels.tolist()):
        row, col = divmod(label, 5)
        images[index, 0, 4 + 12 * row: 11 + 12 * row, 1 + 5 * col: 8 + 5 * col] = 1.0
    return images, labels


def test_classifier_learns_a_tiny_synthetic_task_and_fid_sees_the_difference():
    generator = torch.Generator().manual_seed(6)
    images, labels = synthetic_task(600, generator)
    classifier = MNISTClassifier()
    fit(classifier, classification_loss, (images, labels), TrainingRecipe(epochs=2, batch_size=30, lr=3e-3),
        device=torch.device("cpu"), desc="synthetic classifier")
    classifier.eval()
    test_images, test_labels = synthetic_task(500, generator)
    assert class_accuracy(classifier, test_images, test_labels) > 0.95
    assert class_accuracy(classifier, test_images, (test_labels + 1) % 10) < 0.05
    # FID: two draws of the same task are close; the task against noise is far
    other_images, _ = synthetic_task(500, generator)
    same = fid(classifier, test_images, other_images)
    noise = fid(classifier, torch.rand(500, 1, 28, 28, generator=generator), other_images)
    assert 0 <= same < noise / 10


def test_trained_classifier_is_seeded_and_cached_per_dataset(tmp_path, monkeypatch):
    # Whichever chapter trains the classifier first, with whatever random draws before the call, the network
    # must be the same: two empty caches, two different global RNG states, identical weights.
    images, labels = synthetic_task(64, torch.Generator().manual_seed(7))
    recipe = TrainingRecipe(epochs=1, batch_size=16, lr=3e-3)
    cpu = torch.device("cpu")
    weights = []
    for run, draws in enumerate([0, 5]):
        monkeypatch.setenv("BOOK_CACHE", str(tmp_path / f"cache{run}"))
        torch.manual_seed(123)
        torch.randn(draws)
        classifier = trained_classifier(images, labels, recipe, dataset="fashion-mnist", device=cpu)
        assert not classifier.training
        weights.append(classifier.state_dict())
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name
    with seeded(recipe.seed):
        initial = MNISTClassifier().state_dict()  # the recipe's seed gives the initial weights ...
    assert not torch.equal(weights[0]["output.weight"], initial["output.weight"])  # ... which were trained
    stored = list((tmp_path / "cache0").glob("*.pt"))
    assert len(stored) == 1 and stored[0].name.startswith("fashion-mnist-classifier-")
    # the cache returns the same network; another data set, or other images, train another
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path / "cache0"))
    again = trained_classifier(images, labels, recipe, dataset="fashion-mnist", device=cpu)
    assert all(torch.equal(tensor, again.state_dict()[name]) for name, tensor in weights[0].items())
    trained_classifier(images, labels, recipe, device=cpu)
    trained_classifier(images, (labels + 1) % 10, recipe, device=cpu)
    names = sorted(path.name.rsplit("-", 1)[0] for path in (tmp_path / "cache0").glob("*.pt"))
    assert names == ["fashion-mnist-classifier", "mnist-classifier", "mnist-classifier"]


def test_class_spread():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(20_000) % 2
    features = torch.randn(20_000, 4, generator=generator)
    features[labels == 1] = 3 * features[labels == 1] + 100  # class 1: spread 3x, far away
    # sqrt(tr Cov) is sqrt(4) = 2 for class 0 and 6 for class 1: mean 4
    assert class_spread(features, labels) == pytest.approx(4.0, rel=0.02)
    # identical images have no spread; the shift between classes does not count
    assert class_spread(torch.ones(6, 3) * labels[:6, None], labels[:6]) == 0.0
    with pytest.raises(ValueError, match="at least two"):
        class_spread(torch.randn(3, 2), torch.tensor([0, 1, 2]))


def test_knn_radii_and_coverage_on_a_line():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # neighbours of 0: 1, 3, 7; of 1: 0 (1), 3 (2), 7; of 3: 1 (2), 0 (3), 7 (4); of 7: 3, 1, 0
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(points, k=2, batch_size=3).tolist() == [3.0, 2.0, 3.0, 6.0]
    queries = torch.tensor([[-0.5], [5.0], [12.0]])
    assert fraction_covered(queries, points, knn_radii(points, k=1)) == pytest.approx(2 / 3)


def test_precision_and_recall_separate_fidelity_from_coverage():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 2, generator=generator)
    same = precision_recall(real, torch.randn(2000, 2, generator=generator))
    assert same.precision > 0.9 and same.recall > 0.9
    collapsed = precision_recall(real, 0.1 * torch.randn(2000, 2, generator=generator))  # one mode only
    assert collapsed.precision > 0.99 and collapsed.recall < 0.2
    far = precision_recall(real, torch.randn(2000, 2, generator=generator) + 20.0)  # nothing realistic
    assert far.precision == 0.0 and far.recall == 0.0

