"""Tiled inference of a trained change network, registered as the pairwise method ``"learned"``.

Importing this module needs PyTorch and registers ``"learned"`` with
:func:`sitewatch.detect.base.register`; the method then runs behind the same interface as the
classic methods of :mod:`sitewatch.detect.pairwise`.

The weights come from the file named by the environment variable ``SITEWATCH_MODEL``, else from
the weights the package ships for the pair's bands (see :func:`model_path`). A pair whose pixels
differ from the model's training pixel size by more than a quarter is resampled to it for the
prediction and the probability brought back onto the pair's grid, so one model serves imagery
of 0.3 to 2 m. Images are
processed tile by tile (memory bounded by the tile size, not the image size); overlapping tiles
are blended with raised-cosine weights that fall towards a tile's inner edges, so tile seams do
not show (the usual overlap-tile strategy of Ronneberger et al. 2015, with soft instead of hard
borders). The network runs on the GPU when PyTorch sees one, on the CPU otherwise.
:func:`predict_to_raster` streams two rasters on disk block by block into a probability GeoTIFF,
for images too large for memory (a whole Sentinel-2 granule).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import skimage.transform
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from sitewatch.detect.base import ChangeResult, binary_map, register
from sitewatch.errors import SitewatchError
from sitewatch.learn.model import SiameseUNet

#: Environment variable naming the weights file to use.
MODEL_ENV = "SITEWATCH_MODEL"
#: Weights shipped inside the package, used when ``SITEWATCH_MODEL`` is not set, by the bands
#: they read (see ``weights/*.md`` for each one's data, recipe, scores and reproduce command).
PACKAGED_MODELS = {("red", "green", "blue"): Path(__file__).with_name("weights") / "vhr-rgb.pt"}
#: Largest ratio between a pair's pixel size and the model's that is predicted without
#: resampling.
PIXEL_SIZE_TOLERANCE = 1.25
#: Version of the weights file layout written by :func:`sitewatch.learn.train.train`.
FORMAT_VERSION = 1
#: Default tile side and overlap between neighbouring tiles (pixels).
TILE, OVERLAP = 256, 32
#: Default side of the blocks :func:`predict_to_raster` reads and writes (pixels).
BLOCK = 1024
#: Input standardisations: ``"dataset"`` subtracts the training data's per-band mean and divides
#: by its standard deviation; ``"date"`` uses each date's own per-band mean and standard deviation
#: over the pixels usable on both dates (invariant to per-band gain and offset differences
#: between the dates, e.g. season or atmosphere).
NORMALISATIONS = ("dataset", "date")
#: Pixels per side of the subsampled image :func:`predict_to_raster` takes date statistics from.
STATISTICS_SIDE = 1024


@dataclass
class TrainedModel:
    """A change network ready for inference.

    Attributes
    ----------
    network
        The network in evaluation mode, on ``device``.
    bands
        Band names the network reads, in order.
    mean, std
        Per-band reflectance statistics of the training data; with ``normalise="dataset"``
        inputs are standardised with them.
    threshold
        Probability above which a pixel is called changed.
    pixel_size_m
        Pixel size of the training data (metres).
    path, sha256
        The weights file and its SHA-256 digest (hex).
    device
        Torch device name (``"cpu"`` or ``"cuda"``).
    tta
        Whether predictions average the 8 flips and 90-degree rotations of the input (see
        :func:`predict_probability`).
    normalise
        Input standardisation, one of :data:`NORMALISATIONS`.
    """

    network: SiameseUNet
    bands: list[str]
    mean: np.ndarray
    std: np.ndarray
    threshold: float
    pixel_size_m: float
    path: Path
    sha256: str
    device: str
    tta: bool = False
    normalise: str = "dataset"


def default_device() -> str:
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def packaged_model(band_names: Sequence[str]) -> Path | None:
    """The shipped weights whose bands ``band_names`` all has, if any."""
    for bands, path in PACKAGED_MODELS.items():
        if set(bands) <= set(band_names) and path.is_file():
            return path
    return None


def model_path(band_names: Sequence[str] = ()) -> Path:
    """The weights file to use: ``$SITEWATCH_MODEL``, else the packaged weights for
    ``band_names`` (:func:`packaged_model`)."""
    named = os.environ.get(MODEL_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SitewatchError(f"weights file named by {MODEL_ENV} not found", path)
        return path
    packaged = packaged_model(band_names)
    if packaged is not None:
        return packaged
    raise SitewatchError(
        f"no trained change model for bands {', '.join(band_names) or '(none)'}: train one "
        f"with `sitewatch train <dataset> --layout oscd --out <dir>` and set "
        f"{MODEL_ENV}=<dir>/model.pt")


def checkpoint(network: SiameseUNet, bands: Sequence[str], mean: np.ndarray, std: np.ndarray,
               threshold: float, pixel_size_m: float, tta: bool = False,
               normalise: str = "dataset") -> dict:
    """Everything a weights file holds (what :func:`load_model` reads back)."""
    return {
        "format_version": FORMAT_VERSION,
        "architecture": {"name": "fc-siam-diff", "in_bands": network.in_bands,
                         "widths": list(network.widths)},
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "bands": list(bands),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "threshold": float(threshold),
        "pixel_size_m": float(pixel_size_m),
        "tta": bool(tta),
        "normalise": normalise,
    }


def load_model(path: str | Path, device: str | None = None) -> TrainedModel:
    """Load a weights file written by :func:`sitewatch.learn.train.train` (cached per file
    version and device)."""
    path = Path(path)
    if not path.is_file():
        raise SitewatchError("weights file not found", path)
    return _load(path.resolve(), path.stat().st_mtime_ns, device or default_device())


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int, device: str) -> TrainedModel:
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (any unreadable file is the user's to fix)
        raise SitewatchError(f"not a sitewatch weights file ({error})", path) from error
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        raise SitewatchError(f"not a sitewatch weights file of format {FORMAT_VERSION}", path)
    architecture = record["architecture"]
    network = SiameseUNet(architecture["in_bands"], architecture["widths"])
    network.load_state_dict(record["state_dict"])
    network.to(device).eval()
    return TrainedModel(network=network, bands=list(record["bands"]),
                        mean=np.asarray(record["mean"], np.float32),
                        std=np.asarray(record["std"], np.float32),
                        threshold=float(record["threshold"]),
                        pixel_size_m=float(record["pixel_size_m"]), path=path,
                        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), device=device,
                        tta=bool(record.get("tta", False)),
                        normalise=str(record.get("normalise", "dataset")))


def _starts(size: int, tile: int, overlap: int, stride: int) -> list[int]:
    """Tile origins along one axis covering ``size`` pixels, neighbours overlapping by at least
    ``overlap`` pixels; origins are multiples of ``stride`` so that every tile sees the pooling
    grid of the whole image (the last tile may extend past the image by less than ``stride``)."""
    if size <= tile:
        return [0]
    step = max(stride, (tile - overlap) // stride * stride)
    last = -(-(size - tile) // stride) * stride
    return list(range(0, last, step)) + [last]


def _blend_weights(start: int, length: int, size: int, overlap: int) -> np.ndarray:
    """1-D blending weights of a tile: raised-cosine ramps over ``overlap`` pixels at its edges
    inside the image, 1 elsewhere (never 0, so every pixel gets weight)."""
    weights = np.ones(length, np.float32)
    ramp_length = min(overlap, length)
    ramp = np.sin(0.5 * np.pi * (np.arange(ramp_length) + 0.5) / ramp_length) ** 2
    if start > 0:
        weights[:ramp_length] = ramp
    if start + length < size:
        weights[length - ramp_length:] = np.minimum(weights[length - ramp_length:], ramp[::-1])
    return weights


def image_statistics(image: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation (floored at 1e-6) of a (bands, rows, cols) image
    over its ``usable`` pixels."""
    samples = image[:, usable]
    if not samples.shape[1]:
        return np.zeros(len(image), np.float32), np.ones(len(image), np.float32)
    return (samples.mean(axis=1, dtype=np.float64).astype(np.float32),
            np.maximum(samples.std(axis=1, dtype=np.float64), 1e-6).astype(np.float32))


def input_statistics(model: TrainedModel, before: np.ndarray, after: np.ndarray,
                     usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, bands) mean and standard deviation to standardise ``before`` and ``after`` with, as
    the model's normalisation (:data:`NORMALISATIONS`) asks."""
    if model.normalise == "date":
        stats = [image_statistics(image, usable) for image in (before, after)]
        return np.stack([m for m, _ in stats]), np.stack([s for _, s in stats])
    return np.stack([model.mean, model.mean]), np.stack([model.std, model.std])


def standardise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(bands, rows, cols) reflectance to zero-mean unit-variance inputs; NaN becomes 0 (the
    training mean)."""
    return np.nan_to_num((image - mean[:, None, None]) / std[:, None, None], nan=0.0)


def _dihedral_logits(network: SiameseUNet, before: torch.Tensor,
                     after: torch.Tensor) -> torch.Tensor:
    """Mean logits over the 8 symmetries of the square (4 rotations, each with and without a
    flip): each transformed pair is predicted and transformed back, in one batch."""
    variants = [(turns, flip) for turns in range(4) for flip in (False, True)]

    def forward(x, turns, flip):
        x = torch.rot90(x, turns, dims=(-2, -1))
        return torch.flip(x, dims=(-1,)) if flip else x

    def inverse(x, turns, flip):
        x = torch.flip(x, dims=(-1,)) if flip else x
        return torch.rot90(x, -turns, dims=(-2, -1))

    square = max(before.shape[-2:])
    padding = (0, square - before.shape[-1], 0, square - before.shape[-2])
    before, after = (F.pad(x, padding) for x in (before, after))
    logits = network(torch.cat([forward(before, *v) for v in variants]),
                     torch.cat([forward(after, *v) for v in variants]))
    restored = [inverse(logits[k:k + 1], *v) for k, v in enumerate(variants)]
    return torch.cat(restored).mean(dim=0, keepdim=True)


def predict_probability(network: SiameseUNet, before: np.ndarray, after: np.ndarray,
                        valid: np.ndarray, *, mean: np.ndarray, std: np.ndarray,
                        tile: int = TILE, overlap: int = OVERLAP,
                        tta: bool = False) -> np.ndarray:
    """Change probability (rows, cols) float32 of an image pair, computed tile by tile.

    Parameters
    ----------
    network
        The network, in evaluation mode, on the device to run on.
    before, after
        (bands, rows, cols) reflectance 0..1 of the network's bands, in order; invalid pixels are
        set to the training mean.
    valid
        (rows, cols) bool, True where both dates are usable.
    mean, std
        Per-band reflectance statistics the inputs are standardised with: (bands,) for both
        dates or (2, bands), one row per date (see :func:`input_statistics`).
    tile, overlap
        Tile side and minimum overlap of neighbouring tiles (pixels); ``tile`` is rounded up to
        a multiple of the network's stride. Memory use grows with ``tile**2``, not image size.
    tta
        Test-time augmentation: average the logits over the 8 flips and 90-degree rotations
        of each tile (8 times the computation). Averaging predictions over flipped inputs is
        the test-time augmentation of Krizhevsky, Sutskever & Hinton (2012, NeurIPS) and
        Simonyan & Zisserman (2015, ICLR); overhead imagery has no preferred orientation, so
        all 8 symmetries of the square apply.
    """
    stride = network.stride
    device = next(network.parameters()).device
    tile = -(-int(tile) // stride) * stride
    overlap = min(-(-int(overlap) // stride) * stride, tile // 2)
    rows, cols = valid.shape
    means = np.broadcast_to(np.asarray(mean, np.float32), (2, len(before)))
    stds = np.broadcast_to(np.asarray(std, np.float32), (2, len(before)))
    total = np.zeros((rows, cols), np.float32)
    weight_sum = np.zeros((rows, cols), np.float32)
    for top in _starts(rows, tile, overlap, stride):
        for left in _starts(cols, tile, overlap, stride):
            window = np.s_[top:top + tile, left:left + tile]
            inside = valid[window]
            pair = [np.where(inside, standardise(image[(slice(None), *window)], m, s),
                             0.0).astype(np.float32)
                    for image, m, s in zip((before, after), means, stds, strict=True)]
            height, width = inside.shape
            padding = ((0, 0), (0, -height % stride), (0, -width % stride))
            tensors = [torch.from_numpy(np.pad(x, padding)[None]).to(device) for x in pair]
            with torch.inference_mode():
                logits = (_dihedral_logits(network, *tensors) if tta
                          else network(*tensors))[0, 0, :height, :width]
            probability = torch.sigmoid(logits).float().cpu().numpy()
            weights = np.outer(_blend_weights(top, height, rows, overlap),
                               _blend_weights(left, width, cols, overlap))
            total[window] += probability * weights
            weight_sum[window] += weights
    return total / weight_sum


@register("learned")
def learned(before: np.ndarray, after: np.ndarray, valid: np.ndarray, band_names: Sequence[str],
            pixel_size_m: float, *, weights: str | Path | None = None) -> ChangeResult:
    """Change probability from a trained FC-Siam-diff network (:mod:`sitewatch.learn.model`).

    score = probability of change (0..1), NaN where masked; change where it exceeds the
    threshold stored with the weights (chosen on the validation data at training time). A pair
    whose ``pixel_size_m`` (metres) differs from the model's by more than
    :data:`PIXEL_SIZE_TOLERANCE` is predicted at the model's pixel size
    (:func:`predict_resampled`). ``weights`` names the weights file (default:
    :func:`model_path`).
    """
    model = load_model(weights or model_path(band_names))
    missing = [b for b in model.bands if b not in band_names]
    if missing:
        raise SitewatchError(f"the change model needs bands {', '.join(model.bands)}; the stack "
                             f"lacks {', '.join(missing)} (it has {', '.join(band_names)})",
                             model.path)
    index = [list(band_names).index(b) for b in model.bands]
    usable = valid & np.isfinite(before[index]).all(axis=0) & np.isfinite(after[index]).all(axis=0)
    probability = predict_resampled(model, before[index], after[index], usable, pixel_size_m)
    score = np.where(usable, probability, np.nan).astype(np.float32)
    return ChangeResult(score=score, change=binary_map(score, usable, model.threshold),
                        threshold=model.threshold, method="learned",
                        parameters={"model": str(model.path), "model_sha256": model.sha256,
                                    "bands": model.bands, "tile": TILE, "overlap": OVERLAP,
                                    "device": model.device, "tta": model.tta,
                                    "normalise": model.normalise,
                                    "model_pixel_size_m": model.pixel_size_m,
                                    "pixel_size_m": float(pixel_size_m)})


def predict_resampled(model: TrainedModel, before: np.ndarray, after: np.ndarray,
                      usable: np.ndarray, pixel_size_m: float) -> np.ndarray:
    """Change probability (rows, cols) of a pair of the model's bands with pixels of
    ``pixel_size_m`` metres: predicted on the model's pixel size when the two differ by more
    than :data:`PIXEL_SIZE_TOLERANCE` (images bilinear, area-averaged first when coarsening),
    the probability brought back bilinearly."""
    scale = float(pixel_size_m) / model.pixel_size_m
    if 1 / PIXEL_SIZE_TOLERANCE <= scale <= PIXEL_SIZE_TOLERANCE:
        mean, std = input_statistics(model, before, after, usable)
        return predict_probability(model.network, before, after, usable, mean=mean, std=std,
                                   tta=model.tta)
    shape = tuple(max(1, round(n * scale)) for n in usable.shape)
    images = [skimage.transform.resize(np.where(usable, x, np.nan), (len(x), *shape), order=1,
                                       anti_aliasing=scale < 1, preserve_range=True)
              .astype(np.float32) for x in (before, after)]
    coarse_usable = np.isfinite(images[0]).all(axis=0) & np.isfinite(images[1]).all(axis=0)
    mean, std = input_statistics(model, images[0], images[1], coarse_usable)
    probability = predict_probability(model.network, images[0], images[1], coarse_usable,
                                      mean=mean, std=std, tta=model.tta)
    return skimage.transform.resize(probability, usable.shape, order=1,
                                    preserve_range=True).astype(np.float32)


def _band_indexes(src, bands: Sequence[str], path: Path) -> list[int]:
    """1-based indexes of ``bands`` in a raster, by band description; a raster without
    descriptions must have exactly the model's bands, in its order."""
    names = list(src.descriptions)
    if all(names):
        missing = [b for b in bands if b not in names]
        if missing:
            raise SitewatchError(f"the change model needs bands {', '.join(bands)}; the raster "
                                 f"lacks {', '.join(missing)} (it has {', '.join(names)})", path)
        return [names.index(b) + 1 for b in bands]
    if src.count != len(bands):
        raise SitewatchError(f"the raster has {src.count} unnamed bands; the change model needs "
                             f"{len(bands)} ({', '.join(bands)})", path)
    return list(range(1, len(bands) + 1))


def _read_reflectance(src, indexes: list[int], window: Window | None = None,
                      shape: tuple[int, int] | None = None) -> np.ndarray:
    """(bands, rows, cols) float32 reflectance of a window (default: the whole raster, resampled
    to ``shape`` when given): stored value x scale + offset (the GDAL band scale and offset),
    NaN at the nodata value."""
    out_shape = (len(indexes), *shape) if shape else None
    data = src.read(indexes, window=window, out_shape=out_shape, masked=True)
    scales = np.array([src.scales[i - 1] for i in indexes], np.float32)[:, None, None]
    offsets = np.array([src.offsets[i - 1] for i in indexes], np.float32)[:, None, None]
    return (data.astype(np.float32) * scales + offsets).filled(np.nan)


def predict_to_raster(before_path: str | Path, after_path: str | Path, out_path: str | Path,
                      model: TrainedModel | None = None, *, block: int = BLOCK,
                      tile: int = TILE, overlap: int = OVERLAP) -> Path:
    """Change probability of two co-registered rasters, streamed block by block to a GeoTIFF.

    Memory is bounded by ``block`` (a few hundred MB for 13 bands at the default), not by the
    raster size: each block is read from both files with a margin of ``overlap`` pixels of
    context on every side, predicted tile by tile (:func:`predict_probability`) and its interior
    written out.

    Parameters
    ----------
    before_path, after_path
        Rasters on the same grid (size, transform, CRS) holding the model's bands: found by band
        description, else all bands in the model's order. Reflectance is the stored value times
        the band's scale plus its offset (e.g. Sentinel-2 digital numbers with scale 1e-4);
        nodata pixels are not predicted. With the ``"date"`` normalisation the per-date
        statistics come from both rasters subsampled to about :data:`STATISTICS_SIDE` pixels a
        side.
    out_path
        Output GeoTIFF (replaced atomically): one float32 band, probability of change 0..1, NaN
        where either date has no data; the model's threshold is in the tag ``threshold``.
    model
        The network to run (default: :func:`load_model` of :func:`model_path`).
    block, tile, overlap
        Side of the blocks read and written, side of the network's tiles and their overlap
        (pixels).
    """
    before_path, after_path, out_path = Path(before_path), Path(after_path), Path(out_path)
    model = model or load_model(model_path())
    with rasterio.open(before_path) as before, rasterio.open(after_path) as after:
        if (before.shape, before.transform, before.crs) != (after.shape, after.transform,
                                                            after.crs):
            raise SitewatchError(f"not on the grid of {before_path.name} (size, transform or "
                                 "CRS differ)", after_path)
        indexes = [_band_indexes(src, model.bands, path)
                   for src, path in ((before, before_path), (after, after_path))]
        statistics = _raster_statistics(model, (before, after), indexes)
        profile = {"driver": "GTiff", "width": before.width, "height": before.height,
                   "count": 1, "dtype": "float32", "crs": before.crs,
                   "transform": before.transform, "nodata": float("nan"), "tiled": True,
                   "blockxsize": 256, "blockysize": 256, "compress": "deflate",
                   "BIGTIFF": "IF_SAFER"}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.",
                                           suffix=".tif")
        os.close(handle)
        try:
            with rasterio.open(partial, "w", **profile) as dst:
                dst.update_tags(threshold=model.threshold, model_sha256=model.sha256)
                for row in range(0, before.height, block):
                    for col in range(0, before.width, block):
                        inner = Window(col, row, min(block, before.width - col),
                                       min(block, before.height - row))
                        dst.write(_predict_window(model, before, after, indexes, statistics,
                                                  inner, tile, overlap), 1, window=inner)
            os.chmod(partial, 0o644)  # mkstemp makes 0600 files
            os.replace(partial, out_path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return out_path


def _raster_statistics(model: TrainedModel, sources, indexes) -> tuple[np.ndarray, np.ndarray]:
    """Input statistics of two rasters (:func:`input_statistics`), from subsampled reads."""
    if model.normalise != "date":
        return np.stack([model.mean, model.mean]), np.stack([model.std, model.std])
    factor = max(1, -(-max(sources[0].shape) // STATISTICS_SIDE))
    shape = (-(-sources[0].height // factor), -(-sources[0].width // factor))
    images = [_read_reflectance(src, index, shape=shape)
              for src, index in zip(sources, indexes, strict=True)]
    usable = np.isfinite(images[0]).all(axis=0) & np.isfinite(images[1]).all(axis=0)
    return input_statistics(model, *images, usable)


def _predict_window(model: TrainedModel, before, after, indexes, statistics, inner: Window,
                    tile: int, overlap: int) -> np.ndarray:
    """Probability of the ``inner`` window, predicted with ``overlap`` pixels of context."""
    col0, row0 = max(0, inner.col_off - overlap), max(0, inner.row_off - overlap)
    col1 = min(before.width, inner.col_off + inner.width + overlap)
    row1 = min(before.height, inner.row_off + inner.height + overlap)
    outer = Window(col0, row0, col1 - col0, row1 - row0)
    images = [_read_reflectance(src, index, outer)
              for src, index in ((before, indexes[0]), (after, indexes[1]))]
    usable = np.isfinite(images[0]).all(axis=0) & np.isfinite(images[1]).all(axis=0)
    probability = predict_probability(model.network, *images, usable, mean=statistics[0],
                                      std=statistics[1], tile=tile, overlap=overlap,
                                      tta=model.tta)
    probability[~usable] = np.nan
    top, left = inner.row_off - row0, inner.col_off - col0
    return probability[top:top + inner.height, left:left + inner.width]
