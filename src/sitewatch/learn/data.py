"""Labelled change pairs for training: readers of two public layouts, patch sampling, augmentation.

Layouts
-------
- ``"oscd"``: the Onera Satellite Change Detection dataset (Caye Daudt et al. 2018, IGARSS):
  ``<root>/<city>/imgs_1|imgs_2/*_<band>.tif``, one GeoTIFF per Sentinel-2 L1C band (digital
  numbers, reflectance x 10000, at 10, 20 or 60 m), and ``<root>/<city>/cm/<city>-cm.tif``,
  1 = no change, 2 = change, without georeference, on the grid of ``imgs_1/*B02.tif``. Every band of
  both dates is brought onto that grid by its coordinates (bilinear), since some cities' second
  date is a few pixels smaller.
- ``"levir"``: LEVIR-CD (Chen & Shi 2020, Remote Sensing 12(10):1662): ``<root>/A/<name>.png``
  (before), ``B/<name>.png`` (after), ``label/<name>.png`` (0 no change, 255 change), RGB 0.5 m.
- ``"sztaki"``: SZTAKI AirChange (Benedek & Sziranyi 2009, IEEE TGRS 47(10)):
  ``<root>/<site>/im1.png``, ``im2.png``, ``gt.png`` (255 change), RGB aerial photographs at
  1.5 m; its labels also count fresh plough-land and groundwork.
- ``"xbd"``: xBD (Gupta et al. 2019, CVPRW) tiles: ``<root>/images/<tile>_pre_disaster.png`` and
  ``_post_disaster.png``, ``<root>/labels/<tile>_post_disaster.json`` with building polygons in
  pixel coordinates and damage classes. Truth is 1 on buildings labelled destroyed or
  major-damage, 0 on buildings with no or minor damage, -1 elsewhere (the ground between
  buildings is not labelled), at the nominal 0.5 m of the WorldView pan-sharpened tiles.

Both give :class:`ChangePair` objects: reflectance 0..1 (NaN where a date has no data) and
``truth`` 1 change, 0 no change, -1 unlabelled.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
import skimage.draw
import skimage.io
import skimage.transform
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import Resampling, reproject

from sitewatch.errors import SitewatchError

#: Sentinel-2 band names in OSCD file names, in the order the readers return them by default.
SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                   "B11", "B12")
#: Band names of LEVIR-CD images (the names the ingest stage gives RGB rasters).
RGB_BANDS = ("red", "green", "blue")
#: Supported dataset layouts.
LAYOUTS = ("oscd", "levir", "sztaki", "xbd")
#: How the patch sampler weighs pairs (see :class:`PatchSampler`).
BALANCES = ("pixels", "source")
#: xBD damage classes that count as change (the building is gone or its roof is).
XBD_CHANGED = ("destroyed", "major-damage")
#: xBD damage classes that count as no change.
XBD_UNCHANGED = ("no-damage", "minor-damage")
#: Sentinel-2 L1C digital numbers per unit of reflectance.
_S2_SCALE = 10_000.0


@dataclass
class ChangePair:
    """One labelled image pair on one grid.

    Attributes
    ----------
    name
        City (OSCD) or tile name (LEVIR).
    before, after
        (bands, rows, cols) float32 reflectance 0..1, NaN where there is no data.
    truth
        (rows, cols) int8: 1 change, 0 no change, -1 unlabelled.
    bands
        Band names, one per band of ``before``/``after``.
    pixel_size_m
        Nominal pixel size (metres).
    source
        The dataset the pair comes from (``"levir"``, ``"sztaki"``...); with
        ``balance="source"`` the patch sampler gives every source the same share of patches.
    """

    name: str
    before: np.ndarray
    after: np.ndarray
    truth: np.ndarray
    bands: list[str]
    pixel_size_m: float
    source: str = ""

    @property
    def usable(self) -> np.ndarray:
        """Labelled pixels where both dates have data in every band."""
        return ((self.truth >= 0) & np.isfinite(self.before).all(axis=0)
                & np.isfinite(self.after).all(axis=0))


def read_pairs(dataset_dir: str | Path, layout: str,
               bands: Sequence[str] | None = None) -> list[ChangePair]:
    """All labelled pairs of a dataset folder in ``layout`` (one of :data:`LAYOUTS`).

    ``bands`` selects and orders bands (default: all bands of the layout).
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise SitewatchError("dataset folder not found", root)
    if layout == "oscd":
        cities = sorted(p.parent.parent.name for p in root.glob("*/cm/*-cm.tif"))
        if not cities:
            raise SitewatchError("no OSCD city found (expected <city>/cm/<city>-cm.tif)", root)
        return [read_oscd_city(root / city, bands) for city in cities]
    if layout == "levir":
        return read_levir(root, bands)
    if layout == "sztaki":
        return read_sztaki(root, bands)
    if layout == "xbd":
        return read_xbd(root, bands)
    raise SitewatchError(f"unknown dataset layout {layout!r}; use one of {', '.join(LAYOUTS)}",
                         root)


def _band_file(folder: Path, band: str) -> Path:
    matches = sorted(folder.glob(f"*{band}.tif"))
    if len(matches) != 1:
        raise SitewatchError(f"expected one file ending in {band}.tif, found {len(matches)}",
                             folder)
    return matches[0]


def read_oscd_city(city_dir: str | Path, bands: Sequence[str] | None = None) -> ChangePair:
    """One OSCD city, every band of both dates on the grid of ``imgs_1/*B02.tif``."""
    city_dir = Path(city_dir)
    bands = list(bands or SENTINEL2_BANDS)
    unknown = sorted(set(bands) - set(SENTINEL2_BANDS))
    if unknown:
        raise SitewatchError(f"not Sentinel-2 band names: {', '.join(unknown)}", city_dir)
    with rasterio.open(_band_file(city_dir / "imgs_1", "B02")) as reference:
        grid_transform, grid_crs, shape = reference.transform, reference.crs, reference.shape
        pixel_size_m = 10.0 if reference.crs.is_geographic else abs(reference.transform.a)
    dates = []
    for folder in ("imgs_1", "imgs_2"):
        image = np.full((len(bands), *shape), np.nan, np.float32)
        for index, band in enumerate(bands):
            with rasterio.open(_band_file(city_dir / folder, band)) as src:
                reproject(src.read(1).astype(np.float32) / _S2_SCALE, image[index],
                          src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                          dst_transform=grid_transform, dst_crs=grid_crs, dst_nodata=np.nan,
                          resampling=Resampling.bilinear)
        dates.append(image)
    label_path = city_dir / "cm" / f"{city_dir.name}-cm.tif"
    if not label_path.is_file():
        raise SitewatchError("OSCD change map missing", label_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(label_path) as src:
            labels = src.read(1)
    if labels.shape != shape:
        raise SitewatchError(f"change map is {labels.shape[0]}x{labels.shape[1]} pixels but "
                             f"imgs_1 B02 is {shape[0]}x{shape[1]}", label_path)
    truth = np.where(labels == 2, 1, np.where(labels == 1, 0, -1)).astype(np.int8)
    return ChangePair(city_dir.name, dates[0], dates[1], truth, bands, pixel_size_m, "oscd")


def _read_rgb(path: Path) -> np.ndarray:
    image = skimage.io.imread(path)
    if image.ndim != 3 or image.shape[2] < 3:
        raise SitewatchError("expected an RGB image", path)
    return np.moveaxis(image[..., :3], -1, 0).astype(np.float32) / 255


def read_levir(root: str | Path, bands: Sequence[str] | None = None) -> list[ChangePair]:
    """LEVIR-CD pairs of ``root``; a pair without a label or whose dates differ in size is skipped
    with a warning naming it."""
    root = Path(root)
    bands, index = _rgb_index(bands, root)
    pairs = []
    for before_path in sorted((root / "A").glob("*.png")):
        after_path, label_path = root / "B" / before_path.name, root / "label" / before_path.name
        if not (after_path.is_file() and label_path.is_file()):
            warnings.warn(f"{before_path}: no matching B/ image or label/ mask, skipped",
                          stacklevel=2)
            continue
        before, after = _read_rgb(before_path), _read_rgb(after_path)
        label = skimage.io.imread(label_path)
        label = label if label.ndim == 2 else label[..., 0]
        if after.shape != before.shape or label.shape != before.shape[1:]:
            warnings.warn(f"{before_path}: before, after and label differ in size, skipped",
                          stacklevel=2)
            continue
        truth = (label > 127).astype(np.int8)
        pairs.append(ChangePair(before_path.stem, before[index], after[index], truth, bands, 0.5,
                                "levir"))
    if not pairs:
        raise SitewatchError("no usable LEVIR pair (expected A/, B/ and label/ PNGs)", root)
    return pairs


def _rgb_index(bands: Sequence[str] | None, root: Path) -> tuple[list[str], list[int]]:
    bands = list(bands or RGB_BANDS)
    unknown = sorted(set(bands) - set(RGB_BANDS))
    if unknown:
        raise SitewatchError(f"RGB images have bands {', '.join(RGB_BANDS)}, not "
                             f"{', '.join(unknown)}", root)
    return bands, [RGB_BANDS.index(b) for b in bands]


def read_sztaki(root: str | Path, bands: Sequence[str] | None = None) -> list[ChangePair]:
    """SZTAKI AirChange pairs, one per site folder of ``root`` holding ``im1.png``, ``im2.png``
    and ``gt.png``."""
    root = Path(root)
    bands, index = _rgb_index(bands, root)
    pairs = []
    for folder in sorted(p for p in root.iterdir() if (p / "gt.png").is_file()):
        before, after = _read_rgb(folder / "im1.png"), _read_rgb(folder / "im2.png")
        label = skimage.io.imread(folder / "gt.png")
        label = label if label.ndim == 2 else label[..., 0]
        if after.shape != before.shape or label.shape != before.shape[1:]:
            raise SitewatchError("im1, im2 and gt differ in size", folder)
        pairs.append(ChangePair(folder.name, before[index], after[index],
                                (label > 127).astype(np.int8), bands, 1.5, "sztaki"))
    if not pairs:
        raise SitewatchError("no SZTAKI pair (expected <site>/im1.png, im2.png, gt.png)", root)
    return pairs


def xbd_buildings(labels: Path) -> list[tuple[shapely.Polygon, str]]:
    """Building polygons of an xBD label file in pixel coordinates, with their damage class."""
    try:
        features = json.loads(labels.read_text(encoding="utf-8"))["features"]["xy"]
        return [(shapely.from_wkt(f["wkt"]), str(f["properties"].get("subtype", "")))
                for f in features]
    except (OSError, ValueError, KeyError, TypeError, shapely.errors.ShapelyError) as error:
        raise SitewatchError(f"not an xBD label file ({error})", labels) from error


def rasterise_buildings(buildings: Sequence[tuple[shapely.Polygon, str]],
                        shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) int8 truth of xBD buildings: 1 destroyed or major damage, 0 no or minor
    damage, -1 elsewhere and on unclassified buildings."""
    truth = np.full(shape, -1, np.int8)
    for value, classes in ((0, XBD_UNCHANGED), (1, XBD_CHANGED)):
        for polygon, damage in buildings:
            if damage not in classes:
                continue
            for part in getattr(polygon, "geoms", [polygon]):
                x, y = np.asarray(part.exterior.coords).T
                truth[skimage.draw.polygon(y, x, shape)] = value
    return truth


def read_xbd(root: str | Path, bands: Sequence[str] | None = None) -> list[ChangePair]:
    """xBD pre/post tiles of ``root`` (``images/`` and ``labels/``), truth from the post-disaster
    labels (:func:`rasterise_buildings`)."""
    root = Path(root)
    bands, index = _rgb_index(bands, root)
    pairs = []
    for labels in sorted((root / "labels").glob("*_post_disaster.json")):
        tile = labels.name.removesuffix("_post_disaster.json")
        before = _read_rgb(root / "images" / f"{tile}_pre_disaster.png")
        after = _read_rgb(root / "images" / f"{tile}_post_disaster.png")
        if after.shape != before.shape:
            raise SitewatchError("pre and post images differ in size", root / "images" / tile)
        truth = rasterise_buildings(xbd_buildings(labels), before.shape[1:])
        pairs.append(ChangePair(tile, before[index], after[index], truth, bands, 0.5, "xbd"))
    if not pairs:
        raise SitewatchError("no xBD tile (expected labels/<tile>_post_disaster.json)", root)
    return pairs


def resample(pair: ChangePair, pixel_size_m: float) -> ChangePair:
    """``pair`` on a grid of ``pixel_size_m`` metres: images bilinear (area-averaged first when
    coarsening, so that no aliasing is learned), truth nearest-neighbour."""
    scale = pair.pixel_size_m / pixel_size_m
    if abs(scale - 1) < 1e-3:
        return pair
    shape = tuple(max(1, round(n * scale)) for n in pair.truth.shape)

    def image(x: np.ndarray) -> np.ndarray:
        return skimage.transform.resize(x, (len(x), *shape), order=1, anti_aliasing=scale < 1,
                                        preserve_range=True).astype(np.float32)

    truth = skimage.transform.resize(pair.truth, shape, order=0, preserve_range=True,
                                     anti_aliasing=False).astype(np.int8)
    return ChangePair(pair.name, image(pair.before), image(pair.after), truth, pair.bands,
                      float(pixel_size_m), pair.source)


class PatchSampler:
    """Random training patches, half of them centred on a change pixel, with augmentation.

    Class balancing: a patch is centred on a labelled change pixel with probability
    ``change_fraction``, otherwise on any usable pixel (change is rare: ~3 % of OSCD pixels).
    Hard example mining: once :meth:`set_hardness` has given per-pixel losses, a further
    ``hard_fraction`` of the patches is centred on a pixel drawn in proportion to its loss, so
    that what the network still gets wrong (fields ploughed or harvested between the dates,
    which look like construction) is seen more often. This is the online hard example mining of
    Shrivastava, Gupta & Girshick (2016, CVPR), applied at the sampling of patch centres.
    Augmentation (applied identically to both dates and the labels unless stated): a random
    rotation by a multiple of 90 degrees and a random flip; radiometric jitter of the after date
    (per-band gain ``1 +- gain_jitter`` and offset ``+- offset_jitter`` reflectance); and a
    misregistration of the after date by up to ``max_shift`` pixels in each direction.

    Parameters
    ----------
    pairs
        Training pairs, all with the same bands; patches are drawn from pairs in proportion to
        their usable pixels, or with ``balance="source"`` in proportion to their usable pixels
        within their source (:attr:`ChangePair.source`), every source getting the same share:
        datasets of different sizes label change differently (LEVIR-CD buildings only, SZTAKI
        plough-land and groundwork too), and the largest must not decide alone what change is.
    patch
        Patch side (pixels). Pairs smaller than ``patch + 2 * max_shift`` are edge-padded.
    seed
        Seed of the sampler's random generator.
    change_fraction, hard_fraction
        Probabilities that a patch is centred on a change pixel and on a pixel drawn by its
        loss (see above); the rest are centred on any usable pixel.
    """

    def __init__(self, pairs: Sequence[ChangePair], patch: int, seed: int, *,
                 change_fraction: float = 0.5, hard_fraction: float = 0.0,
                 gain_jitter: float = 0.05, offset_jitter: float = 0.01, max_shift: int = 1,
                 balance: str = "pixels"):
        if balance not in BALANCES:
            raise SitewatchError(f"unknown balance {balance!r}; use one of "
                                 f"{', '.join(BALANCES)}")
        if change_fraction < 0 or hard_fraction < 0 or change_fraction + hard_fraction > 1:
            raise SitewatchError(f"patch fractions must be >= 0 and sum to at most 1 (change "
                                 f"{change_fraction}, hard {hard_fraction})")
        self.patch, self.max_shift = int(patch), int(max_shift)
        self.change_fraction, self.hard_fraction = change_fraction, hard_fraction
        self._hardness: list[np.ndarray | None] = [None] * len(pairs)
        self.gain_jitter, self.offset_jitter = gain_jitter, offset_jitter
        self.rng = np.random.default_rng(seed)
        margin = self.patch // 2 + self.max_shift
        self._images, self._usable, self._changed, weights = [], [], [], []
        for pair in pairs:
            usable = pair.usable
            pad = ((margin, margin), (margin, margin))
            before = np.pad(pair.before, ((0, 0), *pad), mode="edge")
            after = np.pad(pair.after, ((0, 0), *pad), mode="edge")
            truth = np.pad(np.where(usable, pair.truth, -1), pad, constant_values=-1)
            self._images.append((before, after, truth.astype(np.int8)))
            self._usable.append(np.flatnonzero(usable))
            self._changed.append(np.flatnonzero(usable & (pair.truth == 1)))
            weights.append(usable.sum())
        weights = np.asarray(weights, float)
        if weights.sum() == 0:
            raise SitewatchError("the training pairs have no labelled, usable pixel")
        if balance == "source":
            sources = np.array([pair.source for pair in pairs])
            for source in set(sources):
                of_source = sources == source
                weights[of_source] /= max(1.0, weights[of_source].sum())
        self._weights = weights / weights.sum()
        self._shapes = [pair.truth.shape for pair in pairs]
        self._margin = margin

    def set_hardness(self, losses: Sequence[np.ndarray]) -> None:
        """Per-pixel losses (rows, cols), one map per training pair in order, that the hard
        patches are drawn by (NaN or negative counts as 0)."""
        for k, (loss, usable) in enumerate(zip(losses, self._usable, strict=True)):
            weights = np.nan_to_num(np.asarray(loss, np.float64).ravel()[usable])
            cumulative = np.cumsum(np.maximum(weights, 0))
            self._hardness[k] = cumulative if cumulative.size and cumulative[-1] > 0 else None

    def _centre(self, k: int) -> int:
        """Flat index of a patch centre in pair ``k``, by the class and hardness fractions."""
        draw = self.rng.random()
        if draw < self.change_fraction and len(self._changed[k]):
            return int(self.rng.choice(self._changed[k]))
        hardness = self._hardness[k]
        if hardness is not None and draw < self.change_fraction + self.hard_fraction:
            position = np.searchsorted(hardness, self.rng.random() * hardness[-1], side="right")
            return int(self._usable[k][min(position, len(hardness) - 1)])
        return int(self.rng.choice(self._usable[k]))

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``batch`` patches: before, after (batch, bands, patch, patch) float32 reflectance (NaN
        where a date has no data) and truth (batch, patch, patch) int8 (1 change, 0 no change,
        -1 ignore)."""
        befores, afters, truths = [], [], []
        for _ in range(batch):
            k = self.rng.choice(len(self._images), p=self._weights)
            row, col = np.unravel_index(self._centre(k), self._shapes[k])
            before, after, truth = self._crop(k, row, col)
            befores.append(before)
            afters.append(after)
            truths.append(truth)
        return np.stack(befores), np.stack(afters), np.stack(truths)

    def _crop(self, k: int, row: int, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        before, after, truth = self._images[k]
        top, left = row + self._margin - self.patch // 2, col + self._margin - self.patch // 2
        dy, dx = self.rng.integers(-self.max_shift, self.max_shift + 1, size=2)
        window = np.s_[top:top + self.patch, left:left + self.patch]
        shifted = np.s_[top + dy:top + dy + self.patch, left + dx:left + dx + self.patch]
        b, a, t = before[(slice(None), *window)], after[(slice(None), *shifted)], truth[window]
        bands = a.shape[0]
        gain = 1 + self.rng.uniform(-self.gain_jitter, self.gain_jitter, (bands, 1, 1))
        offset = self.rng.uniform(-self.offset_jitter, self.offset_jitter, (bands, 1, 1))
        a = a * gain + offset
        turns, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
        b, a, t = (np.rot90(x, turns, axes=(-2, -1)) for x in (b, a, t))
        if flip:
            b, a, t = (x[..., ::-1] for x in (b, a, t))
        return (np.ascontiguousarray(b, np.float32), np.ascontiguousarray(a, np.float32),
                np.ascontiguousarray(t))
