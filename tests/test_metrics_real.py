"""Metrics for real models: CLIP score (tiny random CLIP), FID/KID (tiny injected features), unreadable images."""

from __future__ import annotations

import math
import urllib.error

import numpy as np
import pytest
import torch
import torchmetrics.image.fid
from PIL import Image
from torch import nn

from sdprobe.metrics import set_quantities
from sdprobe.metrics.clipscore import CLIPScoreMetric
from sdprobe.metrics.fid import FIDMetric, frechet_distance, load_inception
from sdprobe.metrics.unreadable import UnreadableMetric, neighbour_correlation
from sdprobe.models import ModelLoadError
from sdprobe.world import Scene, render_batch

CLIP_SIDE = 32  # input side of the tiny CLIP vision tower


# --- CLIP score ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_dir(tiny_clip):
    return tiny_clip


PROMPTS = ["a red circle", "a small blue square", "zebra on a beach", "a large green triangle at the top"]


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((len(PROMPTS), 16, 16, 3)).astype(np.float32)


def _manual_cosine(metric: CLIPScoreMetric, prompts, images) -> np.ndarray:
    """Project the pooled outputs of both towers and take the cosine, step by step."""
    model = metric.model
    inputs = metric.processor(text=list(prompts), images=list((images * 255).round().astype(np.uint8)),
                              return_tensors="pt", padding=True)
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output)
        txt = model.text_projection(model.text_model(input_ids=inputs["input_ids"],
                                                     attention_mask=inputs["attention_mask"]).pooler_output)
    img, txt = img.numpy(), txt.numpy()
    return (img * txt).sum(1) / np.linalg.norm(img, axis=1) / np.linalg.norm(txt, axis=1)


def test_clip_score_is_the_cosine_of_the_projected_embeddings(clip_dir, images):
    metric = CLIPScoreMetric(str(clip_dir))
    table = metric.score(PROMPTS, images)
    assert list(table.columns) == ["clip_score"] and len(table) == len(PROMPTS)
    np.testing.assert_allclose(table["clip_score"], _manual_cosine(metric, PROMPTS, images), atol=1e-5)
    assert metric.definition == "cosine" and "cosine" in metric.description
    assert metric.higher_is_better == {"clip_score": True}


def test_clip_score_definitions_and_batching(clip_dir, images):
    cosine = CLIPScoreMetric(clip_dir, batch_size=1).score(PROMPTS, images)["clip_score"].to_numpy()
    percent = CLIPScoreMetric(clip_dir, definition="torchmetrics").score(PROMPTS, images)["clip_score"].to_numpy()
    np.testing.assert_allclose(percent, 100 * np.clip(cosine, 0, None), atol=1e-3)
    assert (percent >= 0).all()
    swapped = CLIPScoreMetric(clip_dir).score(PROMPTS[::-1], images)["clip_score"].to_numpy()
    assert not np.allclose(swapped, cosine)  # each image is scored against its own prompt


def test_clip_score_errors(tmp_path, clip_dir, images):
    with pytest.raises(ModelLoadError, match="--clip-model PATH"):
        CLIPScoreMetric(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="not a CLIP model folder.*--clip-model"):
        CLIPScoreMetric(tmp_path)
    with pytest.raises(ValueError, match="unknown CLIP score definition 'raw'.*cosine, torchmetrics"):
        CLIPScoreMetric(clip_dir, definition="raw")
    with pytest.raises(ValueError, match="4 prompts but 3 images"):
        CLIPScoreMetric(clip_dir).score(PROMPTS, images[:3])


# --- FID / KID ----------------------------------------------------------------------------------------------------
class ChannelMeans(nn.Module):
    """Features = the mean of each color channel: FID reduces to Gaussian statistics of three numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3)
        self.calls += 1
        return x.mean(dim=(2, 3))


def _random_set(n: int, low: float, high: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=(n, 8, 8, 3)).astype(np.float32)


def test_fid_of_a_shifted_set_is_the_squared_shift():
    real = _random_set(40, 0.2, 0.7, seed=1)
    metric = FIDMetric(feature_extractor=ChannelMeans(), kid=False)
    shift = 0.1
    result = metric.score_set(real + shift, reference=real)
    assert result["fid"] == pytest.approx(3 * shift**2, abs=1e-6)  # equal covariances: only the means move
    assert metric.score_set(real, reference=real)["fid"] == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(result["kid"]) and result["n_images"] == result["n_real"] == 40


def test_fid_of_a_scaled_set_matches_the_gaussian_formula():
    real = _random_set(50, 0.35, 0.65, seed=2)
    fake = 2 * (real - 0.5) + 0.5  # features: mu_f = 2 mu - 0.5, cov_f = 4 cov
    feats = real.mean(axis=(1, 2)).astype(np.float64)  # (N, 3)
    mu, cov = feats.mean(0), np.cov(feats, rowvar=False)
    # commuting covariances: Tr(S + 4S - 2 sqrt(4 S^2)) = Tr(S)
    expected = np.sum((mu - (2 * mu - 0.5)) ** 2) + np.trace(cov)
    got = FIDMetric(feature_extractor=ChannelMeans(), kid=False).score_set(fake, reference=real)["fid"]
    assert got == pytest.approx(expected, rel=1e-5)


def _poly_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the KID kernel k(a, b) = (a.b / d + 1)^3."""
    d, m = x.shape[1], len(x)

    def k(a, b):
        return (a @ b.T / d + 1) ** 3

    def off_diagonal_sum(q):
        return q.sum() - np.trace(q)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (off_diagonal_sum(kxx) + off_diagonal_sum(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_matches_the_unbiased_polynomial_mmd():
    real, fake = _random_set(30, 0.2, 0.7, seed=3), _random_set(30, 0.3, 0.9, seed=4)
    metric = FIDMetric(feature_extractor=ChannelMeans(), kid_subset_size=1000, kid_subsets=5)
    result = metric.score_set(fake, reference=real)
    expected = _poly_mmd(real.mean(axis=(1, 2)).astype(np.float64), fake.mean(axis=(1, 2)).astype(np.float64))
    assert result["kid"] == pytest.approx(expected, rel=1e-6)  # subsets capped at 30 = the whole sets
    assert result["kid_std"] == pytest.approx(0.0, abs=1e-9)
    assert expected > 0


def test_fid_against_a_folder_of_real_images(tmp_path):
    real = (_random_set(12, 0.1, 0.6, seed=5) * 255).round().astype(np.uint8)
    for i, im in enumerate(real):
        Image.fromarray(im).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    fake = _random_set(10, 0.2, 0.8, seed=6)
    extractor = ChannelMeans()
    from_folder = FIDMetric(real_images=tmp_path, feature_extractor=extractor, kid_subsets=3, batch_size=4)
    first = from_folder.score_set(fake)
    calls_after_first = extractor.calls
    second = from_folder.score_set(fake)
    assert extractor.calls - calls_after_first == 3  # only the 10 fake images again, in batches of 4
    assert first == second and first["n_real"] == 12
    direct = FIDMetric(feature_extractor=ChannelMeans(), kid_subsets=3).score_set(fake, reference=real / 255.0)
    assert first["fid"] == pytest.approx(direct["fid"], rel=1e-6)
    assert first["kid"] == pytest.approx(direct["kid"], rel=1e-6)


def test_fid_is_a_set_metric_with_a_bootstrap_standard_error():
    real, fake = _random_set(20, 0.2, 0.7, seed=7), _random_set(20, 0.25, 0.75, seed=8)
    metric = FIDMetric(feature_extractor=ChannelMeans(), kid_subsets=3, n_boot=30)
    result = metric.score_set(fake, reference=real)
    assert metric.quantities["fid"].per == "set" and metric.quantities["fid"].scale == "log"
    assert metric.higher_is_better == {"fid": False, "kid": False} and set_quantities(metric) == ["fid", "kid"]
    assert not hasattr(metric, "score")  # never copied onto image rows
    # the standard error is the spread of FID over resamples of the generated images, by the same formula
    feats_r, feats_f = metric.features(real), metric.features(fake)
    assert frechet_distance(*_moments(feats_r), *_moments(feats_f)) == pytest.approx(result["fid"], rel=1e-6)
    assert 0 < result["fid_se"] < result["fid"]
    assert result["kid_se"] == pytest.approx(result["kid_std"] / 3 ** 0.5)
    assert math.isnan(FIDMetric(feature_extractor=ChannelMeans(), kid=False, n_boot=0).score_set(
        fake, reference=real)["fid_se"])


def _moments(features):
    return features.mean(0), torch.cov(features.T)


def test_fid_input_errors(tmp_path):
    metric = FIDMetric(feature_extractor=ChannelMeans())
    with pytest.raises(ValueError, match="needs reference images"):
        metric.score_set(_random_set(4, 0, 1, seed=0))
    with pytest.raises(ValueError, match="at least 2 images"):
        metric.score_set(_random_set(1, 0, 1, seed=0), reference=_random_set(4, 0, 1, seed=1))
    with pytest.raises(ValueError, match="holds 0 images"):
        FIDMetric(real_images=tmp_path, feature_extractor=ChannelMeans())


def test_inception_weights_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelLoadError, match="--inception-weights .* is not a file.*TORCH_HOME"):
        FIDMetric(inception_weights=tmp_path / "nope.pth")


@pytest.mark.parametrize(("raised", "message"), [
    (ModuleNotFoundError("No module named 'torch_fidelity'"), "pip install torch-fidelity.*--inception-weights"),
    (urllib.error.URLError("no network"), "offline.*pt_inception-2015-12-05-6726825d.pth.*--inception-weights"),
])
def test_inception_that_cannot_load_says_how_to_provide_it(monkeypatch, raised, message):
    def refuse(*args, **kwargs):
        raise raised

    monkeypatch.setattr(torchmetrics.image.fid, "NoTrainInceptionV3", refuse)
    with pytest.raises(ModelLoadError, match=message):
        load_inception()


# --- unreadable images --------------------------------------------------------------------------------------------
def test_blank_and_noise_are_unreadable_and_drawings_are_not():
    rng = np.random.default_rng(0)
    blank = np.full((32, 32, 3), 0.4, dtype=np.float32)
    faint = blank + rng.normal(0, 0.003, size=blank.shape).astype(np.float32)
    noise = rng.random((32, 32, 3), dtype=np.float32)
    scenes = [Scene("red", "circle", "top left", "large"), Scene("blue", "square", "bottom right", "small")]
    shapes = render_batch(scenes, rng)
    gradient = np.repeat(np.linspace(0, 1, 32, dtype=np.float32)[None, :, None], 32, axis=0).repeat(3, axis=2)
    images = np.stack([blank, faint, noise, *shapes, gradient])
    table = UnreadableMetric().score(["p"] * len(images), images)
    assert table["unreadable"].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert table["unreadable_score"].iloc[0] == pytest.approx(1.0, abs=1e-4)  # float32 rounding leaves ~1e-8 std
    assert table["smoothness"].iloc[2] < 0.1 and (table["smoothness"].iloc[3:] > 0.8).all()
    assert (table["unreadable_score"].iloc[3:] == 0.0).all()


def test_unreadable_threshold_is_where_the_score_reaches_one_half():
    threshold = 2.0**-6  # exactly representable, so the pixel std lands exactly on it
    metric = UnreadableMetric(min_contrast=threshold)
    step = np.full((2, 32, 32, 3), 0.5, dtype=np.float32)
    step[0, :, :16] -= threshold  # half the pixels down, half up: std exactly the threshold
    step[0, :, 16:] += threshold
    step[1, :, :16] -= 1.5 * threshold  # std 1.5 x the threshold: score 1 - 1.5 / 2
    step[1, :, 16:] += 1.5 * threshold
    table = metric.score(["p", "p"], step)
    np.testing.assert_allclose(table["contrast"], [threshold, 1.5 * threshold], rtol=1e-6)
    np.testing.assert_allclose(table["unreadable_score"], [0.5, 0.25], atol=1e-6)
    assert table["unreadable"].tolist() == [1.0, 0.0]


def test_neighbour_correlation_of_stripes():
    columns = np.arange(32)
    stripes_1 = np.tile(np.where(columns % 2 == 0, 1.0, -1.0), (32, 1))  # +-+-: left/right -1, up/down +1
    stripes_2 = np.tile(np.where((columns // 2) % 2 == 0, 1.0, -1.0), (32, 1))  # ++--: left/right 1/31 net
    rho = neighbour_correlation(np.stack([stripes_1, stripes_2, np.zeros((32, 32))]))
    np.testing.assert_allclose(rho, [0.0, 0.5 * (1 / 31 + 1), 1.0], atol=1e-12)


def test_non_finite_images_are_unreadable_and_bad_input_is_refused():
    images = np.random.default_rng(1).random((2, 16, 16, 3)).astype(np.float32)
    images[1, 3, 4, 0] = np.nan
    table = UnreadableMetric().score(["p", "p"], images)
    assert table["unreadable"].iloc[1] == 1.0 and np.isnan(table["contrast"].iloc[1])
    with pytest.raises(ValueError, match="shape \\(N, H, W, 3\\)"):
        UnreadableMetric().score(["p"], images[0])
    with pytest.raises(ValueError, match="lag 16 needs images larger"):
        UnreadableMetric(lag=16).score(["p", "p"], images)
    with pytest.raises(ValueError, match="min_contrast must be positive"):
        UnreadableMetric(min_contrast=0)
