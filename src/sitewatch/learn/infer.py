"""Tiled inference of a trained change network, registered as the pairwise method ``"learned"``.

Importing this module needs PyTorch and registers ``"learned"`` with
:func:`sitewatch.detect.base.register`; the method then runs behind the same interface as the
classic methods of :mod:`sitewatch.detect.pairwise`.

The weights come from the file named by the environment variable ``SITEWATCH_MODEL``, else from
``model.pt`` beside this module when the package ships one (see :func:`model_path`). Images are
processed tile by tile (memory bounded by the tile size, not the image size); overlapping tiles
are blended with raised-cosine weights that fall towards a tile's inner edges, so tile seams do
not show (the usual overlap-tile strategy of Ronneberger et al. 2015, with soft instead of hard
borders). The network runs on the GPU when PyTorch sees one, on the CPU otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sitewatch.detect.base import ChangeResult, binary_map, register
from sitewatch.errors import SitewatchError
from sitewatch.learn.model import SiameseUNet

#: Environment variable naming the weights file to use.
MODEL_ENV = "SITEWATCH_MODEL"
#: Weights shipped inside the package, used when ``SITEWATCH_MODEL`` is not set.
PACKAGED_MODEL = Path(__file__).with_name("model.pt")
#: Version of the weights file layout written by :func:`sitewatch.learn.train.train`.
FORMAT_VERSION = 1
#: Default tile side and overlap between neighbouring tiles (pixels).
TILE, OVERLAP = 256, 32


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
        Per-band reflectance statistics of the training data; inputs are standardised with them.
    threshold
        Probability above which a pixel is called changed.
    pixel_size_m
        Pixel size of the training data (metres).
    path, sha256
        The weights file and its SHA-256 digest (hex).
    device
        Torch device name (``"cpu"`` or ``"cuda"``).
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


def default_device() -> str:
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def model_path() -> Path:
    """The weights file to use: ``$SITEWATCH_MODEL``, else the packaged ``model.pt``."""
    named = os.environ.get(MODEL_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SitewatchError(f"weights file named by {MODEL_ENV} not found", path)
        return path
    if PACKAGED_MODEL.is_file():
        return PACKAGED_MODEL
    raise SitewatchError(
        f"no trained change model: train one with `sitewatch train <dataset> --layout oscd "
        f"--out <dir>` and set {MODEL_ENV}=<dir>/model.pt")


def checkpoint(network: SiameseUNet, bands: Sequence[str], mean: np.ndarray, std: np.ndarray,
               threshold: float, pixel_size_m: float) -> dict:
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
                        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), device=device)


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


def standardise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(bands, rows, cols) reflectance to zero-mean unit-variance inputs; NaN becomes 0 (the
    training mean)."""
    return np.nan_to_num((image - mean[:, None, None]) / std[:, None, None], nan=0.0)


def predict_probability(network: SiameseUNet, before: np.ndarray, after: np.ndarray,
                        valid: np.ndarray, *, mean: np.ndarray, std: np.ndarray,
                        tile: int = TILE, overlap: int = OVERLAP) -> np.ndarray:
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
        Per-band statistics of the training data (reflectance) used to standardise the inputs.
    tile, overlap
        Tile side and minimum overlap of neighbouring tiles (pixels); ``tile`` is rounded up to
        a multiple of the network's stride. Memory use grows with ``tile**2``, not image size.
    """
    stride = network.stride
    device = next(network.parameters()).device
    tile = -(-int(tile) // stride) * stride
    overlap = min(-(-int(overlap) // stride) * stride, tile // 2)
    rows, cols = valid.shape
    total = np.zeros((rows, cols), np.float32)
    weight_sum = np.zeros((rows, cols), np.float32)
    for top in _starts(rows, tile, overlap, stride):
        for left in _starts(cols, tile, overlap, stride):
            window = np.s_[top:top + tile, left:left + tile]
            inside = valid[window]
            pair = [np.where(inside, standardise(image[(slice(None), *window)], mean, std),
                             0.0).astype(np.float32)
                    for image in (before, after)]
            height, width = inside.shape
            padding = ((0, 0), (0, -height % stride), (0, -width % stride))
            tensors = [torch.from_numpy(np.pad(x, padding)[None]).to(device) for x in pair]
            with torch.inference_mode():
                logits = network(*tensors)[0, 0, :height, :width]
            probability = torch.sigmoid(logits).float().cpu().numpy()
            weights = np.outer(_blend_weights(top, height, rows, overlap),
                               _blend_weights(left, width, cols, overlap))
            total[window] += probability * weights
            weight_sum[window] += weights
    return total / weight_sum


@register("learned")
def learned(before: np.ndarray, after: np.ndarray, valid: np.ndarray, band_names: Sequence[str],
            pixel_size_m: float) -> ChangeResult:
    """Change probability from a trained FC-Siam-diff network (:mod:`sitewatch.learn.model`).

    score = probability of change (0..1), NaN where masked; change where it exceeds the
    threshold stored with the weights (chosen on the validation data at training time).
    """
    model = load_model(model_path())
    missing = [b for b in model.bands if b not in band_names]
    if missing:
        raise SitewatchError(f"the change model needs bands {', '.join(model.bands)}; the stack "
                             f"lacks {', '.join(missing)} (it has {', '.join(band_names)})",
                             model.path)
    index = [list(band_names).index(b) for b in model.bands]
    usable = valid & np.isfinite(before[index]).all(axis=0) & np.isfinite(after[index]).all(axis=0)
    probability = predict_probability(model.network, before[index], after[index], usable,
                                      mean=model.mean, std=model.std)
    score = np.where(usable, probability, np.nan).astype(np.float32)
    return ChangeResult(score=score, change=binary_map(score, usable, model.threshold),
                        threshold=model.threshold, method="learned",
                        parameters={"model": str(model.path), "model_sha256": model.sha256,
                                    "bands": model.bands, "tile": TILE, "overlap": OVERLAP,
                                    "device": model.device,
                                    "model_pixel_size_m": model.pixel_size_m,
                                    "pixel_size_m": float(pixel_size_m)})
