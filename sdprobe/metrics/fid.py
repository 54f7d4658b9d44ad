"""FID and KID of generated images against the unpruned model's images or a folder of real images.

Papers: FID, Heusel et al. 2017, https://arxiv.org/abs/1706.08500; KID, Binkowski et al. 2018,
https://arxiv.org/abs/1801.01401. The statistics are torchmetrics' (``FrechetInceptionDistance``,
``KernelInceptionDistance``); the features are the FID Inception-v3 of torch-fidelity by default.

**Set metrics.** FID and KID describe a *set* of images, not one image. They declare themselves per set
(:class:`~sdprobe.metrics.Quantity`), so a sweep calls :meth:`FIDMetric.score_set` once per level and stores one
value per level, with a standard error: for FID from a bootstrap over the generated images (``n_boot``
resamples; the reference statistics stay fixed), for KID the spread of its subsets over the square root of their
number. FID is unbounded, so collapse detection analyses it on a log scale. FID is biased upwards for small sets,
so compare levels at equal N.

**Weights.** No download is attempted beyond torch's own cache logic: the Inception weights
(``pt_inception-2015-12-05-6726825d.pth``) are read from ``--inception-weights PATH`` or from torch's hub cache
(``$TORCH_HOME/hub/checkpoints``). When they cannot be loaded, the error says where to put them.

Cost (measured on one busy CPU core, 2,048-d features): the FID statistics take 6 to 12 s per set, whatever its
size (an eigendecomposition of a 2,048 x 2,048 matrix in float64); KID adds about 13 s for 100 subsets of 512
images. They run where the features are, so ``device="cuda"`` moves them to the GPU too. The Inception forward
pass (about 5.7 GFLOPs per 299 x 299 image) comes on top; it was not timed, as its weights cannot be downloaded
on the development machine.

Example:
    >>> metric = FIDMetric(real_images="data/coco_val_512")
    >>> metric.score_set(images)
    {'fid': 41.2, 'fid_se': 0.8, 'kid': 0.031, 'kid_se': 0.0002, 'kid_std': 0.002, 'n_images': 512, 'n_real': 5000}
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from sdprobe.metrics.base import Quantity, directions
from sdprobe.models import ModelLoadError

log = logging.getLogger(__name__)

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # torch-fidelity's port of the TF FID Inception
INCEPTION_FEATURES = 2048  # pool3 features, the standard FID layer
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_KID_SUBSET_SIZE = 1000  # images per KID subset (capped by the set sizes), as in the KID paper
DEFAULT_KID_SUBSETS = 100  # KID subsets averaged
DEFAULT_BATCH_SIZE = 64  # images per feature-extractor call
DEFAULT_FID_BOOT = 20  # bootstrap resamples of the generated images for FID's standard error
MIN_IMAGES = 2  # both statistics need a covariance / an unbiased MMD


class InceptionFeatures(nn.Module):
    """The FID Inception-v3 (torch-fidelity's port, via torchmetrics) on float images in [0, 1].

    Args:
        weights (str | Path | None): the ``pt_inception-2015-12-05-6726825d.pth`` file; ``None`` reads torch's
            hub cache. Default: ``None``.

    Raises:
        ModelLoadError: torch-fidelity is missing or the weights cannot be loaded (the message says what to do).
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        self.net = load_inception(weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0, 1] -> (B, 2048)
        return self.net((images * 255).round().clamp(0, 255).to(torch.uint8))


def load_inception(weights: str | Path | None = None) -> nn.Module:
    """Load the FID Inception network offline, or fail with an error that says how to provide it."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    how = f"copy {INCEPTION_FILE} into {cache} (set TORCH_HOME to move it) or pass --inception-weights PATH"
    if weights is not None and not Path(weights).expanduser().is_file():
        raise ModelLoadError(f"--inception-weights {weights} is not a file; {how}")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        return NoTrainInceptionV3(
            name="inception-v3-compat", features_list=[str(INCEPTION_FEATURES)],
            feature_extractor_weights_path=None if weights is None else str(Path(weights).expanduser()),
        )
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"FID's Inception network needs torch-fidelity (pip install torch-fidelity): {exc}. Then {how}"
        ) from exc
    except (OSError, RuntimeError) as exc:  # no network (URLError is an OSError) or a corrupt file
        raise ModelLoadError(f"could not load the FID Inception weights offline ({exc}); {how}") from exc


def load_image_folder(folder: str | Path) -> list[np.ndarray]:
    """All images of a folder as float32 (H, W, 3) arrays in [0, 1], in file-name order (sizes may differ)."""
    from PIL import Image

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"real-image folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < MIN_IMAGES:
        raise ValueError(f"{folder} holds {len(files)} images ({', '.join(IMAGE_SUFFIXES)}); FID needs at least "
                         f"{MIN_IMAGES}")
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    return out


class _Precomputed(nn.Identity):
    """Hands already-extracted features to torchmetrics, which then only does the statistics."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


class FIDMetric:
    """FID and KID of a set of generated images against reference images.

    Args:
        real_images (str | Path | np.ndarray | Sequence[np.ndarray] | None): a folder of real images, or images
            in [0, 1]; ``None`` compares against the ``reference`` images passed to :meth:`score_set` (in sweeps, the
            unpruned model's images for the same prompts and other seeds). Default: ``None``.
        feature_extractor (nn.Module | None): maps (B, 3, H, W) float images in [0, 1] to (B, D) features;
            ``None`` loads the FID Inception-v3. Default: ``None``.
        inception_weights (str | Path | None): the Inception weights file, when ``feature_extractor`` is ``None``.
            Default: ``None`` (torch's hub cache).
        kid (bool): also compute KID. Default: ``True``.
        kid_subset_size (int): images per KID subset, capped by the set sizes. Default: 1000.
        kid_subsets (int): KID subsets. Default: 100.
        seed (int): seeds KID's subset draws and FID's bootstrap. Default: 0.
        n_boot (int): bootstrap resamples of the generated images for FID's standard error (0: none, NaN).
            Default: 20.
        batch_size (int): images per feature-extractor call. Default: 64.
        device (str | torch.device): where features are computed. Default: ``"cpu"``.

    Raises:
        ModelLoadError: the Inception network cannot be loaded offline.

    Example:
        >>> FIDMetric(feature_extractor=my_net).score_set(images, reference=unpruned)["fid"]
    """

    name = "fid"
    quantities = {"fid": Quantity(False, per="set", scale="log"), "kid": Quantity(False, per="set")}
    higher_is_better = directions(quantities)
    cost = "per set: 6-12 s of FID statistics + ~13 s of KID (CPU core), plus Inception-v3 at ~5.7 GFLOPs per image"

    def __init__(self, real_images: str | Path | np.ndarray | Sequence[np.ndarray] | None = None,
                 feature_extractor: nn.Module | None = None, inception_weights: str | Path | None = None,
                 kid: bool = True, kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE,
                 kid_subsets: int = DEFAULT_KID_SUBSETS, seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str | torch.device = "cpu", n_boot: int = DEFAULT_FID_BOOT) -> None:
        if kid_subset_size < MIN_IMAGES or kid_subsets < 1 or batch_size < 1 or n_boot < 0:
            raise ValueError(f"need kid_subset_size >= {MIN_IMAGES}, kid_subsets >= 1, batch_size >= 1 and "
                             f"n_boot >= 0; got {kid_subset_size}, {kid_subsets}, {batch_size}, {n_boot}")
        self.n_boot = n_boot
        self.device = torch.device(device)
        self.extractor = (feature_extractor or InceptionFeatures(inception_weights)).to(self.device).eval()
        if isinstance(real_images, (str, Path)):
            real_images = load_image_folder(real_images)
        self.real_images = real_images
        self._real_features: torch.Tensor | None = None
        self.kid, self.kid_subset_size, self.kid_subsets = kid, kid_subset_size, kid_subsets
        self.seed, self.batch_size = seed, batch_size

    @torch.no_grad()
    def features(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """(N, D) float64 features, on ``device``, of N images (H, W, 3) in [0, 1]; NaN pixels count as 0."""
        if not isinstance(images, np.ndarray) and len({im.shape for im in images}) == 1:
            images = np.stack(images)
        if isinstance(images, np.ndarray):
            batches = [images[s : s + self.batch_size] for s in range(0, len(images), self.batch_size)]
        else:  # real images of different sizes: one at a time (the Inception network resizes each to 299)
            batches = [im[None] for im in images]
        rows = []
        for batch in batches:
            x = torch.from_numpy(np.nan_to_num(batch.astype(np.float32), nan=0.0)).permute(0, 3, 1, 2)  # (B, 3, H, W)
            rows.append(self.extractor(x.to(self.device)).double())  # (B, D)
        return torch.cat(rows)

    @property
    def needs_reference(self) -> bool:
        """Whether :meth:`score_set` needs the unpruned images (no real images were given)."""
        return self.real_images is None

    def _reference_features(self, reference: np.ndarray | None) -> torch.Tensor:
        if self.real_images is None:
            if reference is None:
                raise ValueError("FID needs reference images: pass real_images to FIDMetric or the unpruned "
                                 "images as reference")
            return self.features(reference)
        if self._real_features is None:  # real images do not change between calls: extract once
            self._real_features = self.features(self.real_images)
        return self._real_features

    def score_set(self, images: np.ndarray, reference: np.ndarray | None = None) -> dict[str, float]:
        """FID (and KID with its spread over subsets) of ``images`` against the real or reference images.

        Args:
            images (np.ndarray): (N, H, W, 3) generated images in [0, 1], N >= 2.
            reference (np.ndarray | None): (M, H, W, 3) images, used when no ``real_images`` were given.

        Returns:
            dict[str, float]: ``fid``, ``fid_se`` (bootstrap over the generated images; NaN when ``n_boot`` is 0),
            ``kid``, ``kid_se``, ``kid_std`` (NaN when ``kid`` is off), ``n_images``, ``n_real``.
        """
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        if len(images) < MIN_IMAGES:
            raise ValueError(f"FID needs at least {MIN_IMAGES} images, got {len(images)}")
        real = self._reference_features(reference)
        fake = self.features(images)
        if len(real) < MIN_IMAGES:
            raise ValueError(f"FID needs at least {MIN_IMAGES} reference images, got {len(real)}")
        fid = FrechetInceptionDistance(feature=_Precomputed(real.shape[1])).to(self.device)
        fid.update(real, real=True)
        fid.update(fake, real=False)
        out = {"fid": float(fid.compute()), "fid_se": _fid_bootstrap_se(real, fake, self.n_boot, self.seed),
               "kid": float("nan"), "kid_se": float("nan"), "kid_std": float("nan"),
               "n_images": len(fake), "n_real": len(real)}
        if self.kid:
            subset = min(self.kid_subset_size, len(real), len(fake))
            with warnings.catch_warnings():  # torchmetrics warns that KID keeps all features: they are ours already
                warnings.simplefilter("ignore", UserWarning)
                kid = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=self.kid_subsets,
                                              subset_size=subset).to(self.device)
            kid.update(real, real=True)
            kid.update(fake, real=False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                mean, std = kid.compute()
            out["kid"], out["kid_std"] = float(mean), float(std)
            out["kid_se"] = float(std) / self.kid_subsets ** 0.5
        log.info("FID %.4g over %d images against %d", out["fid"], len(fake), len(real))
        return out


def _gaussian(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of (N, D) features."""
    return features.mean(0), torch.cov(features.T)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with the trace of the root from the eigenvalues of S1 S2
    (real and non-negative for covariance matrices; tiny negative rounding is clipped)."""
    eig = torch.linalg.eigvals(sigma1 @ sigma2).real.clamp(min=0)
    return float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * eig.sqrt().sum())


def _fid_bootstrap_se(real: torch.Tensor, fake: torch.Tensor, n_boot: int, seed: int) -> float:
    """Standard deviation of FID over ``n_boot`` resamples (with replacement) of the generated features."""
    if n_boot < 2:
        return float("nan")
    mu_r, sigma_r = _gaussian(real)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(n_boot):
        pick = torch.randint(len(fake), (len(fake),), generator=generator).to(fake.device)
        values.append(frechet_distance(mu_r, sigma_r, *_gaussian(fake[pick])))
    return float(np.std(values, ddof=1))
