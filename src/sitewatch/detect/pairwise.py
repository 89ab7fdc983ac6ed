"""Classic unsupervised pairwise change detection: CVA, IR-MAD, PCA-k-means, index differences and
the project's default, an evidence combination of them.

Every method takes ``(before, after, valid, band_names, pixel_size_m)`` (see
:data:`sitewatch.detect.base.PairwiseMethod`): reflectance 0..1 of two co-registered, normalised
dates on one grid, NaN and ``valid == False`` where masked. It returns a
:class:`~sitewatch.detect.base.ChangeResult` whose ``score`` is NaN and ``change`` is ``MASKED`` on
masked pixels; masked pixels never enter a fit, a statistic or a threshold.

- ``"cva"``: change vector analysis (Malila 1980, LARS Symposium; Bovolo & Bruzzone 2007, IEEE
  TGRS 45(1):218-236): score = Euclidean norm of the spectral difference vector (reflectance
  units), Otsu threshold (Otsu 1979).
- ``"irmad"``: IR-MAD (Nielsen 2007, IEEE TIP 16(2):463-478) via :func:`sitewatch.stack.mad.irmad`:
  score = chi-square statistic of the standardised MAD variates (calibrated so that unchanged
  pixels follow chi2(bands)); change where the no-change probability is below ``alpha``.
- ``"pca-kmeans"``: Celik 2009 (IEEE GRSL 6(4):772-776): PCA of the non-overlapping ``h x h``
  blocks of a difference image, every pixel's ``h x h`` neighbourhood projected onto the leading
  eigenvectors, k-means with two clusters; score = distance-based membership of the change cluster.
- ``"index"``: differences of vegetation, built-up and brightness indices
  (:mod:`sitewatch.detect.indices`), each as a robust z-score; score = the largest absolute one;
  ``kinds`` say which index moved and which way.
- ``"default"``: see :func:`default`. On RGB imagery of :data:`VHR_MAX_PIXEL_M` or finer it
  hands over to the learned RGB change model the package ships, when PyTorch is installed
  (:func:`learned_rgb_weights`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.cluster.vq
import scipy.ndimage
import scipy.stats

from sitewatch.detect import nochange, thresholds
from sitewatch.detect.base import ChangeResult, binary_map, register
from sitewatch.detect.indices import band_roles, chroma_change, index_changes, index_formulas
from sitewatch.errors import SitewatchError
from sitewatch.stack.mad import irmad as fit_irmad

#: Sentinel-2 bands sampled at 10 m: the sharpest evidence of small (building-sized) changes.
SENTINEL2_10M = ("B02", "B03", "B04", "B08")


def _usable(before: np.ndarray, after: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels valid and finite in every band of both dates."""
    return valid & np.isfinite(before).all(axis=0) & np.isfinite(after).all(axis=0)


def _masked(values: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``values`` as float32 with NaN outside ``usable``."""
    return np.where(usable, values, np.nan).astype(np.float32)


@register("cva")
def cva(before: np.ndarray, after: np.ndarray, valid: np.ndarray, band_names: Sequence[str],
        pixel_size_m: float) -> ChangeResult:
    """Change vector analysis: magnitude ``||after - before||_2`` (reflectance), Otsu threshold."""
    usable = _usable(before, after, valid)
    score = _masked(np.sqrt(np.sum((after - before) ** 2, axis=0)), usable)
    threshold = thresholds.otsu(score[usable])
    return ChangeResult(score=score, change=binary_map(score, usable, threshold),
                        threshold=threshold, method="cva",
                        parameters={"bands": list(band_names), "threshold_rule": "otsu"})


def _irmad_chi2(before: np.ndarray, after: np.ndarray, usable: np.ndarray,
                max_samples: int, seed: int) -> tuple[np.ndarray, dict]:
    """IR-MAD chi-square statistic (rows, cols), NaN outside ``usable``; df = number of bands.

    Also returns the fit's :meth:`~sitewatch.stack.mad.MADResult.summary`. When the re-weighting
    collapses onto a degenerate set of pixels (saturated or flat areas identical on both dates
    make the weighted covariance singular), the un-iterated MAD (Nielsen, Conradsen & Simpson
    1998) is used instead and the summary says so.
    """
    x, y = before[:, usable], after[:, usable]
    try:
        fit = fit_irmad(x, y, max_samples=max_samples, seed=seed)
    except SitewatchError:
        fit = fit_irmad(x, y, max_samples=max_samples, seed=seed, max_iter=1)
    chi2 = np.full(usable.shape, np.nan, np.float32)
    chi2[usable] = fit.chi2
    return chi2, fit.summary()


@register("irmad")
def irmad(before: np.ndarray, after: np.ndarray, valid: np.ndarray, band_names: Sequence[str],
          pixel_size_m: float, *, alpha: float = 0.01, max_samples: int = 200_000,
          seed: int = 0) -> ChangeResult:
    """IR-MAD chi-square (unitless, ~chi2(bands) where unchanged); change where P(no change) <
    ``alpha``. The canonical fit uses at most ``max_samples`` random usable pixels."""
    usable = _usable(before, after, valid)
    score, fit = _irmad_chi2(before, after, usable, max_samples, seed)
    threshold = thresholds.chi2_threshold(before.shape[0], alpha)
    return ChangeResult(score=score, change=binary_map(score, usable, threshold),
                        threshold=threshold, method="irmad",
                        parameters={"bands": list(band_names), "alpha": alpha,
                                    "max_samples": max_samples, "seed": seed,
                                    "threshold_rule": "chi2 quantile", "fit": fit})


@register("pca-kmeans")
def pca_kmeans(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
               band_names: Sequence[str], pixel_size_m: float, *, block: int = 4,
               variance: float = 0.9, seed: int = 0) -> ChangeResult:
    """Celik (2009) PCA-k-means on the CVA magnitude difference image.

    ``block`` is Celik's ``h`` (pixels); the eigenvectors kept explain ``variance`` of the block
    variance. Score = ``d_nc / (d_nc + d_c)`` with ``d`` the feature-space distances to the
    no-change and change centroids: 0..1, above 0.5 exactly where k-means assigns change.
    """
    usable = _usable(before, after, valid)
    difference = np.sqrt(np.sum((after - before) ** 2, axis=0))
    difference = np.where(usable, difference, np.median(difference[usable]))
    rows, cols = difference.shape
    # eigenvector space from non-overlapping h x h blocks made only of usable pixels
    br, bc = rows // block, cols // block
    tiles = difference[:br * block, :bc * block].reshape(br, block, bc, block).swapaxes(1, 2)
    tile_ok = usable[:br * block, :bc * block].reshape(br, block, bc, block).all(axis=(1, 3))
    samples = tiles[tile_ok].reshape(-1, block * block).astype(np.float64)
    mean = samples.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(np.cov(samples - mean, rowvar=False))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    keep = int(np.searchsorted(np.cumsum(eigval) / eigval.sum(), variance) + 1)
    # every pixel's h x h neighbourhood (centred as far as an even h allows) projected
    before_pad = (block - 1) // 2
    padded = np.pad(difference, ((before_pad, block - 1 - before_pad),) * 2, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (block, block))
    features = (windows.reshape(rows, cols, -1) - mean) @ eigvec[:, :keep]
    fit = features[usable]
    centroids, labels = scipy.cluster.vq.kmeans2(fit, 2, minit="++", seed=seed)
    change_label = int(np.argmax([difference[usable][labels == k].mean() if np.any(labels == k)
                                  else -np.inf for k in (0, 1)]))
    distance = np.linalg.norm(features[..., None, :] - centroids, axis=-1)
    d_change, d_no_change = distance[..., change_label], distance[..., 1 - change_label]
    with np.errstate(invalid="ignore", divide="ignore"):
        membership = np.where(d_change + d_no_change > 0,
                              d_no_change / (d_change + d_no_change), 0.5)
    score = _masked(membership, usable)
    return ChangeResult(score=score, change=binary_map(score, usable, 0.5), threshold=0.5,
                        method="pca-kmeans",
                        parameters={"bands": list(band_names), "difference": "cva magnitude",
                                    "block": block, "variance": variance,
                                    "components": keep, "seed": seed})


def _standardised_index_changes(before: np.ndarray, after: np.ndarray, usable: np.ndarray,
                                band_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Robust z-scores (median / 1.4826 MAD over usable pixels) of each index change the bands
    allow; NaN outside ``usable``."""
    changes = {}
    for name, delta in index_changes(before, after, band_names).items():
        if np.isfinite(delta[usable]).any():
            changes[name] = _masked(thresholds.robust_z(delta, delta[usable]), usable)
    return changes


def change_kinds(z: dict[str, np.ndarray], change: np.ndarray,
                 k: float = 2.0) -> dict[str, np.ndarray]:
    """Kinds of change from standardised index changes ``z``, inside the bool ``change`` map.

    A changed pixel is ``vegetation_loss`` / ``vegetation_gain`` where the vegetation index fell /
    rose by more than ``k`` robust standard deviations, ``new_bright_surface`` where brightness or
    the built-up index rose by more than ``k`` (new roofs, pavement, cleared bare ground) and
    ``darkening`` where brightness fell by more than ``k`` (burn scars, debris, water, shadow).
    The layers may overlap: a field cleared to bare soil is both vegetation loss and new bright
    surface.
    """
    nan = np.full(change.shape, np.nan, np.float32)
    veg = np.nan_to_num(z.get("vegetation", nan), nan=0.0)
    bright = np.nan_to_num(z.get("brightness", nan), nan=0.0)
    built = np.nan_to_num(z.get("built_up", nan), nan=0.0)
    return {
        "vegetation_loss": change & (veg < -k),
        "vegetation_gain": change & (veg > k),
        "new_bright_surface": change & ((bright > k) | (built > k)) & ~(veg > k),
        "darkening": change & (bright < -k),
    }


@register("index")
def index(before: np.ndarray, after: np.ndarray, valid: np.ndarray, band_names: Sequence[str],
          pixel_size_m: float, *, cut: float = 4.0, kind_cut: float = 2.0) -> ChangeResult:
    """Index differences: score = largest |robust z| of the vegetation, built-up and brightness
    changes (unitless, robust standard deviations); change above ``cut``; ``kinds`` from
    :func:`change_kinds` with ``kind_cut``."""
    usable = _usable(before, after, valid)
    z = _standardised_index_changes(before, after, usable, band_names)
    score = _masked(np.abs(np.nan_to_num(np.stack(list(z.values())))).max(axis=0), usable)
    change = binary_map(score, usable, cut)
    return ChangeResult(score=score, change=change, threshold=cut, method="index",
                        parameters={"bands": list(band_names), "cut": cut,
                                    "kind_cut": kind_cut, "indices": index_formulas(band_names),
                                    "standardisation": "robust z (median, 1.4826 MAD)"},
                        kinds=change_kinds(z, change == 1, kind_cut))


def wilson_hilferty(chi2: np.ndarray, df: int) -> np.ndarray:
    """Standard-normal equivalent of a chi-square(``df``) statistic (Wilson & Hilferty 1931):
    ``((chi2/df)^(1/3) - (1 - 2/(9 df))) / sqrt(2/(9 df))``; puts statistics of different
    ``df`` on one scale."""
    v = 2.0 / (9.0 * df)
    return ((chi2 / df) ** (1.0 / 3.0) - (1.0 - v)) / np.sqrt(v)


#: Gaussian sigma of a sensor's point spread function, in pixels: a system sampled near Nyquist,
#: as Sentinel-2 and Landsat are, has an MTF of ~0.2-0.3 at the Nyquist frequency, which a
#: Gaussian PSF of sigma ~0.5 px gives.
PSF_SIGMA_PX = 0.5
#: Gaussian sigma matching the smallest change object of interest, a ~10 m wide building, metres:
#: sigma = half the width (full width at half maximum 1.2 x the width).
OBJECT_SIGMA_M = 5.0


def gaussian_noise_gain(sigma_px: float) -> float:
    """Standard deviation of unit-variance white noise after ``scipy.ndimage.gaussian_filter``
    with ``sigma_px`` (pixels, the default 4-sigma kernel): the 2-D kernel's root sum of squares,
    which for a separable kernel is the 1-D kernel's sum of squares."""
    radius = int(4.0 * sigma_px + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    weights /= weights.sum()
    return float(np.sum(weights**2))


def _smooth(values: np.ndarray, usable: np.ndarray, fill: float, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing (``sigma_px`` pixels) with ``fill`` standing in outside ``usable``."""
    return scipy.ndimage.gaussian_filter(np.where(usable, values, fill).astype(np.float64),
                                         sigma_px)


#: Coarsest pixel (metres) of the RGB imagery the default reads with the learned RGB model:
#: the 0.3-2 m of aerial and commercial satellite imagery it is trained for, with margin.
VHR_MAX_PIXEL_M = 5.0
#: Smallest change object the default keeps (square metres): three 10 m Sentinel-2 pixels for
#: the classic evidence, a small house (7 x 7 m) for the learned RGB model.
MIN_AREA_M2, VHR_MIN_AREA_M2 = 300.0, 50.0
#: Robust z of an index change (brightness, built-up, vegetation) from which a pixel counts as
#: strong evidence of change when the learned model is checked for silence (3 sigma).
STRONG_INDEX_Z = 3.0


def is_vhr_rgb(band_names: Sequence[str], pixel_size_m: float) -> bool:
    """Whether imagery is what the learned RGB model reads: red, green and blue but no
    near-infrared band, pixels of :data:`VHR_MAX_PIXEL_M` metres or finer."""
    roles = band_roles(band_names)
    return ("nir" not in roles and {"red", "green", "blue"} <= set(roles)
            and 0 < pixel_size_m <= VHR_MAX_PIXEL_M)


def learned_rgb_weights(band_names: Sequence[str], pixel_size_m: float) -> Path | None:
    """The shipped weights of the learned RGB change model if :func:`default` should use them:
    :func:`is_vhr_rgb` imagery, PyTorch installed (the ``ml`` extra) and the weights in the
    package. None otherwise."""
    if not is_vhr_rgb(band_names, pixel_size_m):
        return None
    roles = band_roles(band_names)
    try:  # the learned model is a plug-in of this stage: found at run time, not imported
        infer = importlib.import_module("sitewatch.learn.infer")
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        return None
    return infer.packaged_model([band_names[i] for i in (roles["red"], roles["green"],
                                                         roles["blue"])])


def _learned_default(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                     band_names: Sequence[str], pixel_size_m: float, weights: Path,
                     min_area_m2: float, kind_cut: float) -> ChangeResult:
    """:func:`default` on VHR RGB imagery: the learned model's probability, cut at the threshold
    stored with its weights, objects smaller than ``min_area_m2`` dropped. Its diagnostics warn
    when it calls almost nothing while many pixels show an index change beyond
    :data:`STRONG_INDEX_Z` (:func:`sitewatch.detect.nochange.silent_warning`): debris and burn
    scars look nothing like the new buildings it learned."""
    from sitewatch.detect.base import pairwise_methods

    result = pairwise_methods()["learned"](before, after, valid, band_names, pixel_size_m,
                                           weights=weights)
    usable = np.isfinite(result.score) & valid
    detected = thresholds.minimum_mapping_unit(result.change == 1, min_area_m2, pixel_size_m)
    change = binary_map(np.where(detected, 1.0, 0.0), usable, 0.5)
    called = float(detected[usable].mean()) if usable.any() else 0.0
    z_index = _standardised_index_changes(before, after, usable, band_names)
    strong = np.zeros(usable.shape, bool)
    for z in z_index.values():
        strong |= np.abs(np.nan_to_num(z)) > STRONG_INDEX_Z
    evidence = float(strong[usable].mean()) if usable.any() else 0.0
    warnings = [w for w in (nochange.widespread_warning(called), nochange.silent_warning(
        called, evidence, f"an index change beyond {STRONG_INDEX_Z:g} robust standard "
                          f"deviations ({', '.join(sorted(z_index))})")) if w]
    return ChangeResult(
        score=result.score, change=change, threshold=result.threshold, method="default",
        parameters={**result.parameters, "evidence": ["learned RGB change model"],
                    "min_area_m2": min_area_m2, "kind_cut": kind_cut,
                    "indices": index_formulas(band_names)},
        kinds=change_kinds(z_index, change == 1, kind_cut),
        diagnostics={"valid_pixels": int(usable.sum()), "called_fraction": called,
                     "threshold": result.threshold, "strong_index_change_fraction": evidence,
                     "warnings": warnings})


@register("default")
def default(before: np.ndarray, after: np.ndarray, valid: np.ndarray, band_names: Sequence[str],
            pixel_size_m: float, *, psf_sigma_px: float = PSF_SIGMA_PX,
            object_sigma_m: float = OBJECT_SIGMA_M, alpha: float = 0.01,
            min_area_m2: float | None = None, max_samples: int = 100_000,
            kind_cut: float = 2.0, seed: int = 0, learned_vhr: bool = True) -> ChangeResult:
    """The project's default: IR-MAD evidence (plus colour for RGB-only imagery), smoothed at the
    scale of the smallest object the pixels resolve, cut by the threshold rule the histogram's
    shape calls for, kept where IR-MAD says the change is significant, small objects removed.

    1. Evidence, each a robust z-score (median / 1.4826 MAD over usable pixels, Rousseeuw &
       Croux 1993) so that they share one unit whatever the sensor:
       (a) the IR-MAD chi-square of all bands (Nielsen 2007), mapped to a normal deviate by
       Wilson-Hilferty: every band counts, including the Sentinel-2 red-edge and SWIR bands
       where built-up surfaces differ most from soil and vegetation; IR-MAD is blind to linear
       radiometric differences between the dates (sun, haze, calibration) that a raw
       difference, of brightness for instance, mistakes for change;
       (b) for Sentinel-2, the IR-MAD chi-square of the 10 m bands alone: the 20/60 m bands
       smear building-sized changes over their coarse pixels, the 10 m bands keep them sharp;
       (c) for imagery with red, green and blue but no near-infrared band, the CIELAB chroma
       change (:func:`sitewatch.detect.indices.chroma_change`): three visible bands are so
       correlated that their IR-MAD is mostly brightness, and hue and saturation are what tell
       a grey roof from the lawn or soil it replaced.
       Score = their mean (the evidence combination of Bruzzone & Prieto 2000, averaged rather
       than picking the strongest so that one noisy statistic cannot fire alone), Gaussian
       smoothed, then robust-z standardised once more.
    2. Smoothing sigma = ``max(psf_sigma_px pixels, object_sigma_m metres)``: the matched filter
       of the smallest change that can be seen, which is the sensor's point spread function
       (~0.5 px) for decametric pixels and a small building (~10 m wide, sigma 5 m) once pixels
       are finer than that. Change objects are spatially coherent, pixel noise and
       co-registration residue are not.
    3. Threshold: the larger of two cuts, so that neither a histogram rule nor a null model
       alone decides.
       (a) The unimodal rule of Rosin (2001, :func:`sitewatch.detect.thresholds.rosin`): the
       corner where the tail leaves the no-change mode. Change between two dates is a minority
       of the pixels, so the histogram is a mode with a tail; a rule that splits it into two
       populated classes (Otsu's) calls half of any pair whose histogram is nearly symmetric,
       which is what a pair without change, or with change hidden in a wide null, gives.
       (b) The no-change model of the pair (:mod:`sitewatch.detect.nochange`): Efron's
       empirical null, centred on the score's mode, its spread read from the left of the mode
       where change does not reach; the cut where its no-change probability is ``alpha``. The
       share of unchanged pixels called changed is then at most ``alpha`` by construction,
       whatever the city or the sensor, and the result records the estimated rate.
       ``threshold`` in the result is this cut, in standardised score units.
    4. Significance: a pixel is change only if the IR-MAD statistic of all bands, smoothed
       alike, exceeds its no-change distribution at level ``alpha``. Calibrated IR-MAD makes
       unchanged pixels' Wilson-Hilferty deviates standard normal (Nielsen 2007), so after the
       smoothing they are normal with the standard deviation :func:`gaussian_noise_gain`. This
       is an absolute test where the histogram rule is relative: a pair with no change at all
       has a histogram that still has a corner.
    5. Objects smaller than ``min_area_m2`` (8-connected, computed with ``pixel_size_m``) are
       dropped: a minimum mapping unit of :data:`MIN_AREA_M2` by default
       (:data:`VHR_MIN_AREA_M2` for the learned RGB model).
    6. ``kinds`` from the robust-z index changes (:func:`change_kinds`) inside the change map.
    7. ``diagnostics`` (:func:`sitewatch.detect.nochange.diagnose`): the called share of the
       valid pixels, the null fit, the expected false-alarm share and false-discovery
       proportion, and warnings when the result is implausible (widespread change, no
       no-change majority, no compact no-change mode).

    Every constant is physical or from the cited method (PSF ~0.5 px, a 10 m building,
    ``alpha`` 0.01 as for ``irmad``, 300 m^2) and the same for every image; none was chosen by
    looking at a benchmark's scores.

    On RGB imagery of :data:`VHR_MAX_PIXEL_M` or finer, with ``learned_vhr`` and the learned RGB
    model available (:func:`learned_rgb_weights`), steps 1-4 are the model's change probability
    cut at its stored threshold instead: on such imagery every pixel statistic above is at or
    below the all-change floor under held-out folds (``bench/vhr.py``), because what changes
    there is objects (a roof, a lot), not radiometry. Steps 5-7 are the same; the diagnostics
    hold the called share and the widespread-change warning.
    """
    weights = learned_rgb_weights(band_names, pixel_size_m) if learned_vhr else None
    if weights is not None:
        return _learned_default(before, after, valid, band_names, pixel_size_m, weights,
                                VHR_MIN_AREA_M2 if min_area_m2 is None else min_area_m2,
                                kind_cut)
    min_area_m2 = MIN_AREA_M2 if min_area_m2 is None else min_area_m2
    without_model = learned_vhr and is_vhr_rgb(band_names, pixel_size_m)
    usable = _usable(before, after, valid)
    names = list(band_names)
    chi2, fits = _irmad_chi2(before, after, usable, max_samples, seed)
    fits = {"irmad_all_bands": fits}
    irmad_deviate = wilson_hilferty(chi2, len(names))
    evidence = {"irmad_all_bands": irmad_deviate}
    fine = [names.index(b) for b in SENTINEL2_10M if b in names]
    if len(fine) == len(SENTINEL2_10M) and len(fine) < len(names):
        chi2, fits["irmad_10m_bands"] = _irmad_chi2(before[fine], after[fine], usable,
                                                    max_samples, seed)
        evidence["irmad_10m_bands"] = wilson_hilferty(chi2, len(fine))
    if "nir" not in band_roles(names):
        chroma = chroma_change(before, after, names)
        if chroma is not None:
            evidence["chroma_change"] = chroma
    combined = np.mean([thresholds.robust_z(e, e[usable]) for e in evidence.values()], axis=0)
    sigma_px = max(psf_sigma_px, object_sigma_m / pixel_size_m)
    smoothed = _smooth(combined, usable, float(np.median(combined[usable])), sigma_px)
    score = _masked(thresholds.robust_z(smoothed, smoothed[usable]), usable)
    null = nochange.fit_null(score[usable], seed=seed)
    threshold = max(thresholds.rosin(score[usable]), null.threshold(alpha))
    significant = (_smooth(irmad_deviate, usable, 0.0, sigma_px)
                   > scipy.stats.norm.isf(alpha) * gaussian_noise_gain(sigma_px))
    detected = (score > threshold) & significant & usable
    detected = thresholds.minimum_mapping_unit(detected, min_area_m2, pixel_size_m)
    change = binary_map(np.where(detected, 1.0, 0.0), usable, 0.5)
    z_index = _standardised_index_changes(before, after, usable, band_names)
    return ChangeResult(
        score=score, change=change, threshold=threshold, method="default",
        parameters={"bands": names, "evidence": list(evidence),
                    "smoothing_sigma_px": sigma_px, "psf_sigma_px": psf_sigma_px,
                    "object_sigma_m": object_sigma_m,
                    "threshold_rule": "max(rosin, empirical null at alpha)", "alpha": alpha,
                    "min_area_m2": min_area_m2,
                    "max_samples": max_samples, "kind_cut": kind_cut, "seed": seed,
                    "indices": index_formulas(band_names),
                    "standardisation": "robust z (median, 1.4826 MAD)", "fits": fits},
        kinds=change_kinds(z_index, change == 1, kind_cut),
        diagnostics=_without_model_warning(nochange.diagnose(detected, usable, null, threshold),
                                           without_model))


def _without_model_warning(diagnostics: dict, without_model: bool) -> dict:
    """``diagnostics`` with a warning that VHR RGB imagery was read without its learned model."""
    if without_model:
        diagnostics["warnings"].append(
            "very-high-resolution RGB imagery read on classic evidence: the learned RGB change "
            "model needs PyTorch (pip install 'sitewatch[ml]'); on such imagery classic "
            "evidence scores near the all-change floor (bench/vhr.py)")
    return diagnostics
