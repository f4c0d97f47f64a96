"""Is the model any good? Scores computed by an independent judge (:mod:`vae_lib.judges`).

* :func:`conditional_accuracy`: ask a CVAE for class c, let the judge say which class it got.
* :func:`judge_fid`, :func:`model_fid`: the Fréchet distance between real and generated images in
  the judge's penultimate feature space (the FID recipe of Heusel et al. 2017, with our judge in
  place of Inception, so the numbers are *not* comparable with published FIDs; only with each other).
* :func:`factor_transfer`: on ``shapes``, which factors a style-mixed image takes from each source.
* :func:`truncation_fids`: the FID of a StyleGAN-VAE's samples at each truncation psi.
* :func:`mixing_influence`: how much of a style-mixed image the coarse code decides, per crossover
  (no judge: squared pixel distances).
* :func:`reconstruction_scores`: PSNR, SSIM, sharpness and the judge's read-back of each factor, for
  a model's reconstructions of a test set (the measures of notebook 07).
* :func:`latent_probe`: which factors the encoder's code holds, by a linear classifier on the posterior
  means (no judge: the factors' true bins).
* :func:`sample_images`: the generated set (from :mod:`vae_lib.models.sampling`, re-exported here).

The likelihood measures (ELBO, IWAE, bits per dim, active units) are in :mod:`vae_lib.evaluate`;
the judges themselves in :mod:`vae_lib.judges`.

FID protocol (fixed, so numbers compare across runs; :data:`FID_PROTOCOL`)
--------------------------------------------------------------------------
1. Real set: the first ``n = min(10,000, len(test set))`` images of the *test* split, in stored order.
2. Generated set: ``n`` samples from ``z = torch.randn(n, z_dim, generator=Generator().manual_seed(0))``,
   drawn at once and decoded in batches. A CVAE decodes them with the labels of those test images
   (same class mix); the StyleGAN-VAE with truncation_psi = 1 and constant noise (``noise_mode="const"``).
3. Features: the judge's penultimate layer (the hidden ``Linear -> ReLU``, 128-d), in eval mode,
   images mapped linearly onto the judge's pixel range.
4. Statistics in float64: mean and covariance with the unbiased 1/(n-1) normalisation
   (as ``numpy.cov``, which pytorch-fid uses).
5. FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), where
   Tr((S_r S_g)^(1/2)) = sum_i sqrt(lambda_i) and lambda_i are the eigenvalues of the symmetric
   matrix S_r^(1/2) S_g S_r^(1/2) (same eigenvalues as S_r S_g), computed with ``torch.linalg.eigh``;
   round-off negatives are clipped to 0. No scipy.

The judge itself must be fixed too: :func:`vae_lib.judges.judge_settings` names it, and its
settings hash is part of the cache file name.
"""
from __future__ import annotations

import math

import torch

from vae_lib.data import ImageData
from vae_lib.evaluate import edge_ratio, psnr, ssim
from vae_lib.judges import PREDICT_BATCH, Judge, read_back
from vae_lib.models.sampling import TRUNCATION_PSIS, posterior_parameters, prior_codes, sample_images
from vae_lib.utils import evaluation_mode, model_device

FID_SAMPLES = 10_000
FID_SEED = 0
FID_PROTOCOL = {
    "real": "first n images of the test split",
    "n": f"min({FID_SAMPLES}, test size)",
    "generated": "n samples, z = randn(n, z_dim) from torch.Generator().manual_seed(0); CVAE: decoded with "
                 "the test labels; StyleGAN-VAE: truncation_psi=1, noise_mode='const'",
    "features": "judge penultimate layer (hidden Linear -> ReLU), eval mode, judge pixel range",
    "statistics": "float64 mean and covariance, 1/(n-1)",
    "sqrt": "eigh of S_r^1/2 S_g S_r^1/2, eigenvalues clipped at 0",
}

# Style mixing on 'shapes': which factors the early (coarse, low-resolution) style layers should
# control and which the late (fine) ones. 'light' is a brightness ramp across the whole image:
# neither clearly, so it is reported but left out of the two summaries.
COARSE_FACTORS = ("shape", "position_x", "position_y", "scale", "rotation")
FINE_FACTORS = ("object_hue", "background_hue", "texture")
# The split that the headline score of factor_transfer asks for: what a student can see.
TRANSFER_COARSE = ("shape", "position_x", "position_y")
TRANSFER_FINE = ("object_hue", "texture")


# --------------------------------------------------------------------------- conditional accuracy
def conditional_accuracy(model, judge: Judge, n_per_class: int = 100, *, seed: int = 0,
                         batch_size: int = PREDICT_BATCH, value_range=None) -> dict:
    """The share of the CVAE's samples for class c that the judge labels c.

    Draws ``n_per_class`` samples per class (z ~ N(0, I), one seeded generator), classifies them.
    ``value_range``: the samples' pixel range (default ``model.data_range``). Returns
    ``{"overall": float, "per_class": [float] * C, "confusion": (C, C) int64 tensor (row: asked,
    column: judged), "n_per_class": int}``; chance is 1/C.
    """
    if not getattr(model, "conditional", False):
        raise ValueError("conditional_accuracy needs a class-conditional model (model.conditional).")
    num_classes = model.num_classes
    if judge.heads_spec[judge.label_head] != num_classes:
        raise ValueError(f"The judge knows {judge.heads_spec[judge.label_head]} classes, the model "
                         f"{num_classes}.")
    asked = torch.arange(num_classes).repeat_interleave(n_per_class)
    images = sample_images(model, len(asked), labels=asked, seed=seed, batch_size=batch_size)
    judged = judge.predict_labels(images, _range(model, value_range), batch_size)
    confusion = torch.bincount(asked * num_classes + judged, minlength=num_classes ** 2)
    confusion = confusion.view(num_classes, num_classes)
    per_class = (confusion.diagonal().double() / n_per_class).tolist()
    return {"overall": sum(per_class) / num_classes, "per_class": per_class, "confusion": confusion,
            "n_per_class": n_per_class}


def _range(model, value_range):
    return value_range if value_range is not None else getattr(model, "data_range", None)


# ---------------------------------------------------------------------------------------------- FID
def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64, covariance normalised by N - 1."""
    features = torch.as_tensor(features)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got {tuple(features.shape)}.")
    features = features.double()
    return features.mean(0), torch.cov(features.T, correction=1).reshape(features.shape[1], -1)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2), in float64:

    ||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)).

    Tr((cov1 cov2)^(1/2)) is the sum of the square roots of the eigenvalues of
    cov1^(1/2) cov2 cov1^(1/2), a symmetric PSD matrix similar to cov1 cov2 (eigh, no scipy).
    """
    mu1, mu2 = (torch.as_tensor(m, dtype=torch.float64).reshape(-1) for m in (mu1, mu2))
    cov1, cov2 = (torch.as_tensor(c, dtype=torch.float64) for c in (cov1, cov2))
    d = mu1.numel()
    if mu2.numel() != d or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"Shapes do not match: mu {mu1.numel()} and {mu2.numel()}, covariances "
                         f"{tuple(cov1.shape)} and {tuple(cov2.shape)}.")
    sqrt1 = _psd_sqrt(cov1)
    middle = sqrt1 @ cov2 @ sqrt1
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    value = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * eigenvalues.sqrt().sum()
    return max(value.item(), 0.0)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    eigenvalues, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * eigenvalues.clamp(min=0).sqrt()) @ vectors.T


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two feature sets (N, D) and (M, D): :func:`frechet_distance` of their statistics."""
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"Feature sizes differ: {tuple(real.shape)} and {tuple(fake.shape)}.")
    return frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))


def judge_fid(judge: Judge, real: torch.Tensor, fake: torch.Tensor, *, real_range=None, fake_range=None,
              batch_size: int = PREDICT_BATCH) -> float:
    """FID between two image sets (N, C, H, W) in the judge's penultimate feature space.

    ``real_range``/``fake_range``: their pixel ranges (default: the judge's own). Use the same
    number of images on both sides, as the protocol does; FID is biased upwards for small n.
    """
    return fid_from_features(judge.embed_images(real, real_range, batch_size),
                             judge.embed_images(fake, fake_range, batch_size))


def model_fid(model, judge: Judge, test_data: ImageData, *, n: int = FID_SAMPLES, seed: int = FID_SEED,
              batch_size: int = PREDICT_BATCH, prior=None, truncation_psi: float = 1.0) -> dict:
    """FID of ``model``'s samples against ``test_data`` under the fixed protocol (module docstring).

    With ``prior`` (e.g. ``models.sampling.aggregate_posterior(model, train_data)``), the samples decode
    the same seeded draws as codes of that Gaussian instead of N(0, I); with ``truncation_psi`` != 1,
    truncated ones. Both depart from the protocol's step 2: name them wherever the number is shown.
    Returns ``{"fid": float, "n": int, "seed": int}``; n = min(n, len(test_data)).
    """
    n = _fid_size(test_data, n)
    real = judge.embed_images(test_data.images[:n], test_data.value_range, batch_size)
    fake = _sample_features(model, judge, test_data, n, seed=seed, batch_size=batch_size, prior=prior,
                            truncation_psi=truncation_psi)
    return {"fid": fid_from_features(real, fake), "n": n, "seed": seed}


def _fid_size(test_data: ImageData, n: int) -> int:
    n = min(n, len(test_data))
    if n < 2:
        raise ValueError(f"FID needs at least 2 images on each side, got {n}.")
    return n


def _sample_features(model, judge: Judge, test_data: ImageData, n: int, *, seed: int, batch_size: int, prior,
                     truncation_psi: float) -> torch.Tensor:
    """The judge's features of the protocol's n generated images (a CVAE gets the first n test labels)."""
    labels = test_data.labels[:n] if model.conditional else None
    fake = sample_images(model, n, labels=labels, seed=seed, batch_size=batch_size, prior=prior,
                         truncation_psi=truncation_psi)
    return judge.embed_images(fake, _range(model, None), batch_size)


def truncation_fids(model, judge: Judge, test_data: ImageData, psis=TRUNCATION_PSIS, *, n: int = FID_SAMPLES,
                    prior=None, batch_size: int = PREDICT_BATCH) -> dict[float, float]:
    """What truncation does to a StyleGAN-VAE's samples, as a whole: ``{psi: FID}`` for each truncation psi.

    Each FID is :func:`model_fid` of the same seeded codes (N(0, I), or ``prior``'s) at that psi, against the
    first n test images. Lower psi pulls every w towards ``w_avg``: fewer odd samples, less variety. The FID
    charges for both, so it falls with psi only while the samples' oddity costs more than their lost variety.
    """
    psis = [float(p) for p in psis]
    if not psis:
        raise ValueError("No truncation psi to measure.")
    n = _fid_size(test_data, n)
    real = judge.embed_images(test_data.images[:n], test_data.value_range, batch_size)   # once, for every psi
    return {psi: fid_from_features(real, _sample_features(model, judge, test_data, n, seed=FID_SEED,
                                                          batch_size=batch_size, prior=prior, truncation_psi=psi))
            for psi in psis}


def truncation_curves(runs: dict, judge: Judge, psis=TRUNCATION_PSIS, *, n: int = FID_SAMPLES,
                      batch_size: int = PREDICT_BATCH) -> tuple[dict[str, dict[float, float]], dict[str, float]]:
    """Notebook 08's truncation study of several StyleGAN-VAEs: ``runs`` maps a name to ``(model, test_data,
    fitted)``, ``fitted`` a prior fitted to the model's codes (``models.sampling.aggregate_posterior``) or None.

    Returns ``(curves, marks)``, what ``viz.truncation_fid_curves(curves, references=marks)`` draws: for each run,
    ``"<name>, z ~ N(0, I)"`` and (with ``fitted``) ``"<name>, z ~ fitted q(z)"``, each :func:`truncation_fids`;
    and ``"<name>: reconstructions"``, the FID of its reconstructions of the same test images
    (:func:`fid_yardsticks`), what its decoder draws when the code is right."""
    curves, marks = {}, {}
    for name, (model, test_data, fitted) in runs.items():
        priors = {"N(0, I)": None, **({"fitted q(z)": fitted} if fitted is not None else {})}
        for label, prior in priors.items():
            curves[f"{name}, z ~ {label}"] = truncation_fids(model, judge, test_data, psis, n=n, prior=prior,
                                                             batch_size=batch_size)
        marks[f"{name}: reconstructions"] = fid_yardsticks(model, judge, test_data, n=n, blur_sigmas=(),
                                                           batch_size=batch_size)["reconstructions"]
    return curves, marks


# ---------------------------------------------------------------------------------- factor transfer
def factor_transfer(model, judge: Judge, n: int = 500, *, crossovers=None, seed: int = 0,
                    coarse=TRANSFER_COARSE, fine=TRANSFER_FINE, sources: torch.Tensor | None = None,
                    noise_mode: str = "const", truncation_psi: float = 1.0,
                    batch_size: int = PREDICT_BATCH, prior=None,
                    codes: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[int, dict]:
    """Which factors does a style-mixed image take from each source? Measured by a factor judge.

    Two codes per pair: z1, z2 ~ N(0, I) (n each, seeded; with ``prior``, a fitted Gaussian such as
    :func:`vae_lib.models.sampling.aggregate_posterior`, codes of that instead), or, with ``sources`` (2n images
    (2n, 3, S, S) in the model's range, e.g. test shapes), the posterior means of the first n and
    of the last n images; with ``codes``, a pair (z1, z2) of (n, z_dim) codes given as they are (e.g. the
    true factors of a decoder trained on them). For every crossover k (default 0..L, L = ``model.num_style_layers``)
    the images ``model.mix(z1, z2, k)``: style layers [0, k) from z1 (source 1), the rest from z2
    (source 2). The judge reads every factor of source 1 (``decode(z1)``), source 2 and the mix,
    so that k = L (the mix is source 1) and k = 0 (source 2) agree with the sources exactly.

    * ``from_source1[f]``: among pairs whose sources differ in f, the share where the mix has
      source 1's f; ``from_source2[f]`` likewise;
    * ``coarse_from_source1``, ``fine_from_source2``: their means over ``coarse`` / ``fine``;
    * ``from_source2_by_level[f]``: ``from_source2[f]`` split by the level source 2 has (as the judge
      reads it), ``{level: share}``, with the counts of informative pairs in ``informative_by_level[f]``:
      whether a factor's fine levels (e.g. narrow stripes) follow other layers than its coarse ones;
    * ``as_expected``: among the ``pairs`` whose sources differ in *every* factor of ``coarse`` and
      ``fine``, the share of mixed images that take every coarse factor from source 1 and every fine
      factor from source 2. Only such pairs can tell: a factor the sources share would match both.
      So ``as_expected`` is 0 at k = 0 and at k = L by construction, and 1 for a perfect split.

    Defaults: coarse = shape and position, fine = object hue and texture (``TRANSFER_COARSE``,
    ``TRANSFER_FINE``). Returns ``{k: {"from_source1": {f: share}, "from_source2": {f: share},
    "informative": {f: count}, "from_source2_by_level": {f: {level: share}}, "informative_by_level":
    {f: {level: count}}, "coarse_from_source1", "fine_from_source2", "as_expected", "pairs"}}`` with a
    row for every factor the judge has (levels: those source 2 shows in informative pairs); a share is NaN when no pair is
    informative (e.g. a model whose images do not depend on z). The judge's own errors enter every
    number: read them next to its accuracy on real images.
    """
    reads = _transfer_reads(model, judge, n, crossovers=crossovers, seed=seed, targets=(*coarse, *fine),
                            sources=sources, noise_mode=noise_mode, truncation_psi=truncation_psi,
                            batch_size=batch_size, prior=prior, codes=codes)
    return _transfer_table(reads, coarse, fine)


def _transfer_reads(model, judge: Judge, n: int, *, targets, crossovers=None, seed: int = 0,
                    sources: torch.Tensor | None = None, noise_mode: str = "const", truncation_psi: float = 1.0,
                    batch_size: int = PREDICT_BATCH, prior=None,
                    codes: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """The judge's reads of :func:`factor_transfer`'s images: ``{"source1": {f: (n,)}, "source2": ...,
    "mixed": {k: {f: (n,)}}}``; every decode and judge pass of it (the tables are counts of these)."""
    num_layers = model.num_style_layers
    crossovers = list(range(num_layers + 1)) if crossovers is None else list(crossovers)
    if any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= num_layers for k in crossovers):
        raise ValueError(f"crossovers must be whole numbers in [0, {num_layers}], got {crossovers}.")
    unknown = set(targets) - set(judge.heads_spec)
    if unknown:
        raise ValueError(f"The judge has no heads for {sorted(unknown)} (it has {sorted(judge.heads_spec)}).")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive whole number of pairs, got {n!r}.")
    device = model_device(model)
    if sum(option is not None for option in (sources, prior, codes)) > 1:
        raise ValueError("Give one of sources (images to encode), prior (a Gaussian to draw codes from) and codes "
                         "(the codes themselves), not two.")
    if codes is not None:
        z1, z2 = (c.detach().cpu() for c in codes)
        if z1.ndim != 2 or z1.shape != z2.shape or len(z1) < n:
            raise ValueError(f"codes must be two tensors of shape (n, z_dim) with n >= {n}, got "
                             f"{tuple(z1.shape)} and {tuple(z2.shape)}.")
        z1, z2 = z1[:n], z2[:n]
    elif sources is not None:
        if len(sources) < 2 * n:
            raise ValueError(f"sources must hold 2 n = {2 * n} images (two per pair), got {len(sources)}.")
        with evaluation_mode(model), torch.no_grad():
            codes = torch.cat([model.encode(chunk.to(device))[0].cpu() for chunk in sources[:2 * n].split(batch_size)])
        z1, z2 = codes[:n], codes[n:]
    else:
        generator = torch.Generator().manual_seed(seed)
        z1 = prior_codes(n, model.z_dim, generator=generator, prior=prior)
        z2 = prior_codes(n, model.z_dim, generator=generator, prior=prior)
    value_range = _range(model, None)

    def judged(make) -> dict[str, torch.Tensor]:
        with evaluation_mode(model), torch.no_grad():
            images = torch.cat([make(a.to(device), b.to(device)).cpu()
                                for a, b in zip(z1.split(batch_size), z2.split(batch_size))])
        return judge.predict(images, value_range, batch_size)

    options = {"noise_mode": noise_mode}
    if truncation_psi != 1:
        options["truncation_psi"] = truncation_psi
    return {"source1": judged(lambda a, b: model.decode(a, **options)),
            "source2": judged(lambda a, b: model.decode(b, **options)),
            "mixed": {k: judged(lambda a, b, k=k: model.mix(a, b, k, **options)) for k in crossovers}}


def _transfer_table(reads: dict, coarse, fine) -> dict[int, dict]:
    """:func:`factor_transfer`'s table of ``reads`` (:func:`_transfer_reads`) for the targets ``coarse`` and
    ``fine``."""
    source1, source2 = reads["source1"], reads["source2"]
    factors = list(source1)
    n = len(next(iter(source1.values())))
    informative = torch.ones(n, dtype=torch.bool)
    for f in (*coarse, *fine):
        informative &= source1[f] != source2[f]
    table = {}
    for k, mixed in reads["mixed"].items():
        row = {"from_source1": {}, "from_source2": {}, "informative": {}, "from_source2_by_level": {},
               "informative_by_level": {}}
        for f in factors:
            differ = source1[f] != source2[f]
            count = int(differ.sum())
            row["informative"][f] = count
            for name, source in (("from_source1", source1), ("from_source2", source2)):
                row[name][f] = (mixed[f] == source[f])[differ].double().mean().item() if count else math.nan
            levels = source2[f][differ]
            took = (mixed[f] == source2[f])[differ]
            row["from_source2_by_level"][f] = {int(c): took[levels == c].double().mean().item()
                                               for c in levels.unique().tolist()}
            row["informative_by_level"][f] = {int(c): int((levels == c).sum()) for c in levels.unique().tolist()}
        row["coarse_from_source1"] = _nanmean([row["from_source1"][f] for f in coarse])
        row["fine_from_source2"] = _nanmean([row["from_source2"][f] for f in fine])
        expected = torch.ones(n, dtype=torch.bool)
        for f in coarse:
            expected &= mixed[f] == source1[f]
        for f in fine:
            expected &= mixed[f] == source2[f]
        row["pairs"] = int(informative.sum())
        row["as_expected"] = expected[informative].double().mean().item() if row["pairs"] else math.nan
        table[k] = row
    return table


# ---------------------------------------------------------------------------------- mixing influence
def mixing_influence(model, z_rows: torch.Tensor, z_cols: torch.Tensor, *,
                     noise_mode: str | None = "const") -> torch.Tensor:
    """How much of a style-mixed image the coarse code decides, for each crossover k = 0 .. L: (L + 1,).

    For a StyleGAN-like model (``decode(z, noise_mode)``, ``mix(z1, z2, k, noise_mode)``,
    ``num_style_layers`` L) and every pair of a row code z_rows[i] and a column code z_cols[j]
    (z_rows (R, z), z_cols (K, z)): a = decode(z_rows[i]), b = decode(z_cols[j]),
    m_k = mix(z_rows[i], z_cols[j], k) (layers [0, k) from the row's code). Returns

        influence(k) = sum_ij ||m_k - b||^2 / sum_ij ||a - b||^2,

    0 where the mixed images equal their column's (k = 0) and 1 where they equal their row's (k = L);
    the rise between two crossovers is the share of the picture that the layers in between control
    (it can overshoot 1 when mixed styles clash). ``noise_mode="const"`` fixes the noise injections.
    Runs under ``evaluation_mode``.
    """
    if z_rows.ndim != 2 or z_cols.ndim != 2 or z_rows.shape[1] != z_cols.shape[1]:
        raise ValueError(f"z_rows and z_cols must have shapes (R, z) and (K, z), got {tuple(z_rows.shape)} "
                         f"and {tuple(z_cols.shape)}.")
    device = model_device(model)
    rows, cols = len(z_rows), len(z_cols)
    z1 = z_rows.to(device).repeat_interleave(cols, 0)       # pair (i, j) at index i * K + j
    z2 = z_cols.to(device).repeat(rows, 1)
    with evaluation_mode(model):
        b = model.decode(z2, noise_mode=noise_mode).double()
        spread = (model.decode(z1, noise_mode=noise_mode).double() - b).pow(2).sum()
        if spread == 0:
            raise ValueError("The row and column codes decode to identical images: nothing to attribute.")
        moved = [(model.mix(z1, z2, k, noise_mode=noise_mode).double() - b).pow(2).sum()
                 for k in range(model.num_style_layers + 1)]
    return (torch.stack(moved) / spread).cpu()


def best_crossover(table: dict[int, dict]) -> int:
    """The crossover k of a :func:`factor_transfer` table with the highest ``as_expected``."""
    scored = {k: row["as_expected"] for k, row in table.items() if not math.isnan(row["as_expected"])}
    if not scored:
        raise ValueError("No crossover has an as_expected score (no informative pairs).")
    return max(scored, key=scored.get)


def split_summary(model, judge: Judge, n: int, *, without: str = "texture", **kwargs) -> dict[str, dict]:
    """Style mixing's split at its best crossover, with every target factor and with one left out.

    :func:`factor_transfer`'s tables of one set of mixed images (``n`` pairs, ``kwargs`` as there: ``sources``,
    ``codes``, ``prior``, ...): ``"all"`` with the default coarse and fine factors, ``"without"`` with ``without``
    dropped from them (by default the stripes: does the split fail on that factor alone?). Each entry:
    ``{"table": the factor_transfer table, "best": k, "as_expected": share at k, "pairs": informative pairs at k}``.
    """
    coarse = tuple(kwargs.pop("coarse", TRANSFER_COARSE))
    fine = tuple(kwargs.pop("fine", TRANSFER_FINE))
    if without not in coarse + fine:
        raise ValueError(f"without must be one of the target factors {coarse + fine}, got {without!r}.")
    reads = _transfer_reads(model, judge, n, targets=coarse + fine, **kwargs)
    summary = {}
    for name, (c, f) in {"all": (coarse, fine),
                         "without": (tuple(x for x in coarse if x != without),
                                     tuple(x for x in fine if x != without))}.items():
        table = _transfer_table(reads, c, f)
        k = best_crossover(table)
        summary[name] = {"table": table, "best": k, "as_expected": table[k]["as_expected"], "pairs": table[k]["pairs"]}
    return summary


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


__all__ = ["COARSE_FACTORS", "FID_PROTOCOL", "FID_SAMPLES", "FID_SEED", "FINE_FACTORS", "TRANSFER_COARSE",
           "TRANSFER_FINE", "best_crossover", "conditional_accuracy",
           "factor_transfer", "fid_from_features", "frechet_distance", "gaussian_statistics",
           "judge_fid", "mixing_influence", "model_fid", "reconstruction_scores", "reconstructions",
           "sample_images", "judge_accuracy_per_class", "blurred", "fid_yardsticks", "latent_probe", "posterior_means",
           "split_summary", "truncation_fids"]


def reconstructions(model, data: ImageData, n: int | None = None, batch_size: int = 128) -> torch.Tensor:
    """``model.reconstruct`` of the first ``n`` images of ``data`` (default all; with their labels for a
    conditional model), in eval mode, in batches, on the CPU: (n, C, H, W) in the model's range (decode of
    the posterior mean; constant noise for a StyleGAN-VAE)."""
    n = len(data.images) if n is None else n
    device = model_device(model)
    parts = []
    with evaluation_mode(model), torch.no_grad():
        for start in range(0, n, batch_size):
            x = data.images[start:min(start + batch_size, n)].to(device)
            if getattr(model, "conditional", False):
                out = model.reconstruct(x, data.labels[start:start + len(x)].to(device))
            else:
                out = model.reconstruct(x)
            parts.append(out.float().cpu())
    return torch.cat(parts)


def reconstruction_scores(model, data: ImageData, judge: Judge | None = None, *,
                          images: torch.Tensor | None = None) -> dict:
    """How well ``model`` reconstructs ``data`` (a held-out set), by measures no loss optimises directly.

    Returns means over the images: ``psnr_db`` (dB), ``ssim`` (1: identical), ``edge_ratio`` (the RMS
    image gradient of the reconstructions over the real images': < 1 blurrier), and with a ``judge``
    ``read_back``: {factor: reconstruction accuracy / real accuracy} (``judges.read_back``). ``images``:
    reconstructions already computed (``reconstructions(model, data)``)."""
    recon = reconstructions(model, data) if images is None else images
    real = data.images
    scores = {"psnr_db": psnr(recon, real, data.value_range).mean().item(),
              "ssim": ssim(recon, real, data.value_range).mean().item(),
              "edge_ratio": edge_ratio(recon, real).mean().item()}
    if judge is not None:
        scores["read_back"] = {name: r["ratio"] for name, r in read_back(judge, recon, data).items()}
    return scores


# ------------------------------------------------------------------------- yardsticks for the judge
def judge_accuracy_per_class(judge: Judge, data: ImageData, *, n: int | None = None,
                             batch_size: int = PREDICT_BATCH) -> dict:
    """The judge's own accuracy on each class of real images (the first ``n`` of ``data``, default all).

    The same keys as :func:`conditional_accuracy` (``"overall"`` is the mean over classes, ``"confusion"``
    counts real images: row = true class, column = judged), with ``"n_per_class"`` the number of images of
    each class. Beside the model's conditional accuracy it says which low scores are the judge's doing.
    """
    num_classes = judge.heads_spec[judge.label_head]
    images, labels = data.images[:n], data.labels[:n]
    judged = judge.predict_labels(images, data.value_range, batch_size)
    confusion = torch.bincount(labels * num_classes + judged, minlength=num_classes ** 2).view(num_classes, -1)
    counts = confusion.sum(1)
    per_class = (confusion.diagonal().double() / counts.clamp(min=1)).tolist()
    return {"overall": sum(per_class) / num_classes, "per_class": per_class, "confusion": confusion,
            "n_per_class": counts.tolist()}


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` (N, C, H, W) blurred by a Gaussian of standard deviation ``sigma`` pixels (kernel 2*ceil(3 sigma)+1,
    at most 2 * min(H, W) - 1; reflected edges)."""
    from torchvision.transforms.v2.functional import gaussian_blur
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma}.")
    images = torch.as_tensor(images).float()
    half = min(math.ceil(3 * sigma), min(images.shape[-2:]) - 1)
    return gaussian_blur(images, kernel_size=2 * half + 1, sigma=sigma)


def fid_yardsticks(model, judge: Judge, test_data: ImageData, *, n: int = FID_SAMPLES, blur_sigmas=(0.5, 1.0, 2.0),
                   batch_size: int = PREDICT_BATCH) -> dict[str, float]:
    """FIDs between the first ``n`` test images and sets that are known to be worse by known amounts, to read a
    model's FID (:func:`model_fid`, against the same real images) against:

    ``"reconstructions"``: the model's deterministic reconstructions of those very images (``model.reconstruct``;
    a CVAE gets their labels), what its decoder can draw when the code is right; ``"blur sigma=s"``: the real images
    blurred by a Gaussian of ``s`` pixels. The floor of sampling noise is :func:`judge_fid` of two real sets.
    """
    n = min(n, len(test_data))
    if n < 2:
        raise ValueError(f"FID needs at least 2 images on each side, got {n}.")
    real = test_data.images[:n]
    real_features = judge.embed_images(real, test_data.value_range, batch_size)
    out = {"reconstructions": fid_from_features(
        real_features, judge.embed_images(reconstructions(model, test_data, n, batch_size), _range(model, None),
                                          batch_size))}
    for sigma in blur_sigmas:
        out[f"blur sigma={sigma:g}"] = fid_from_features(
            real_features, judge.embed_images(blurred(real, sigma), test_data.value_range, batch_size))
    return out


# ------------------------------------------------------------------------- what the code holds
def posterior_means(model, data: ImageData, batch_size: int = 128) -> torch.Tensor:
    """mu of ``model.encode`` for every image of ``data`` (with its label for a conditional model), in eval
    mode, in batches: (N, z_dim) float32 on the CPU (:func:`vae_lib.models.sampling.posterior_parameters`)."""
    return posterior_parameters(model, data, batch_size)[0]


def latent_probe(model, train_data: ImageData, test_data: ImageData, factors=None, *,
                 weight_decay: float = 1e-3, max_iter: int = 300) -> dict[str, dict[str, float]]:
    """Which generative factors does the encoder's code hold? A linear probe per factor.

    For each factor (default every factor of ``train_data.factors``, e.g. the 'shapes' factors), a
    multinomial logistic regression from the posterior means mu (standardised with the training
    images' mean and spread) to the factor's bin is fitted on ``train_data`` (L-BFGS from zero weights,
    L2 penalty ``weight_decay``: deterministic) and scored on ``test_data``. A factor the decoder is to
    draw must be in the code first: a probe near ``chance`` says the code does not tell the bins apart
    (at least not linearly), whatever the decoder does.

    Returns ``{factor: {"accuracy": test accuracy, "chance": share of the test set's most common bin}}``.
    """
    if not train_data.factors or not test_data.factors:
        raise ValueError("latent_probe needs data with generative factors (the 'shapes' data set).")
    factors = list(train_data.factors) if factors is None else list(factors)
    unknown = [f for f in factors if f not in train_data.factors or f not in test_data.factors]
    if unknown:
        raise ValueError(f"Unknown factors {unknown}; the data have {sorted(train_data.factors)}.")
    train_codes, test_codes = posterior_means(model, train_data), posterior_means(model, test_data)
    mean, spread = train_codes.mean(0), train_codes.std(0).clamp_min(1e-6)
    train_codes, test_codes = (train_codes - mean) / spread, (test_codes - mean) / spread
    out = {}
    for factor in factors:
        target, truth = train_data.factors[factor], test_data.factors[factor]
        bins = int(max(target.max(), truth.max())) + 1
        probe = torch.nn.Linear(train_codes.shape[1], bins)
        torch.nn.init.zeros_(probe.weight)
        torch.nn.init.zeros_(probe.bias)
        optimiser = torch.optim.LBFGS(probe.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            loss = (torch.nn.functional.cross_entropy(probe(train_codes), target)
                    + weight_decay * probe.weight.pow(2).sum())
            loss.backward()
            return loss

        with torch.enable_grad():
            optimiser.step(closure)
        with torch.no_grad():
            accuracy = (probe(test_codes).argmax(1) == truth).float().mean().item()
        out[factor] = {"accuracy": accuracy, "chance": torch.bincount(truth).max().item() / len(truth)}
    return out
