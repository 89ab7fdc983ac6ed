"""From the paths a user gives to the scenes they hold.

A path may be:

- a raster file GDAL reads (GeoTIFF/COG, JPEG2000, VRT, an ENVI data file or its ``.hdr``);
- a folder of one file per band (Sentinel-2 style names ``..._B02.tif``; the OSCD layout
  ``<city>/imgs_1/`` with the dates in ``<city>/dates.txt``);
- a local static STAC catalog, collection or item JSON (or a folder holding ``catalog.json``);
- an xBD tile (``images/x.png`` with ``labels/x.json``);
- an eo-learn EOPatch folder (``data/*.npy``, ``timestamps.json``, ``bbox.geojson``);
- any folder holding the above, searched recursively.

Files met while searching a folder that carry no georeference (label masks, previews) are skipped
and reported; named explicitly, they are an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sitewatch.errors import SitewatchError
from sitewatch.ingest import eopatch, sensors, stac, xbd

RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2", ".img", ".vrt", ".ntf", ".nc", ".hdf"})
CATALOG_NAMES = ("catalog.json", "collection.json")


@dataclass(frozen=True)
class Candidate:
    """Something that should yield one or more scenes."""

    kind: str  # "file" | "band_folder" | "stac" | "xbd" | "eopatch"
    path: Path
    explicit: bool  # named by the user (errors) rather than found in a folder (skips)
    band_files: tuple[tuple[str, Path], ...] = ()
    labels: Path | None = None


def discover(path: str | os.PathLike) -> list[Candidate]:
    """The candidates at ``path``; an error if it does not exist or holds no imagery."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SitewatchError("no such file or folder; check the path", path)
    path = path.resolve()
    if path.is_file():
        return [_file_candidate(path, explicit=True)]
    found = list(_walk(path))
    if not found:
        raise SitewatchError(
            "no imagery found in this folder (looked for GeoTIFF/COG, JPEG2000, ENVI, VRT, "
            "band-per-file folders, STAC JSON and xBD tiles)",
            path,
        )
    return found


def _file_candidate(path: Path, explicit: bool) -> Candidate:
    if stac.is_stac_json(path):
        return Candidate("stac", path, explicit)
    if path.suffix.lower() == ".hdr":
        data = _envi_data_file(path)
        if data is None:
            raise SitewatchError("ENVI header without its data file beside it", path)
        return Candidate("file", data, explicit)
    labels = xbd.label_file(path)
    if labels is not None:
        return Candidate("xbd", path, explicit, labels=labels)
    return Candidate("file", path, explicit)


def _walk(folder: Path) -> Iterator[Candidate]:
    for name in CATALOG_NAMES:
        if (folder / name).is_file():
            yield Candidate("stac", folder / name, explicit=False)
            return
    if eopatch.is_eopatch(folder):
        yield Candidate("eopatch", folder, explicit=False)
        return
    entries = sorted(folder.iterdir())
    band_files = {}
    for entry in entries:
        match = sensors.BAND_FILE.search(entry.name) if entry.is_file() else None
        if match:
            band_files[sensors.normalise_band_name(match.group(1))] = entry
    if len(band_files) >= 2:
        ordered = tuple(sorted(band_files.items(), key=lambda kv: _band_order(kv[0])))
        yield Candidate("band_folder", folder, explicit=False, band_files=ordered)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry in band_files.values() and len(band_files) >= 2:
            continue
        elif stac.is_stac_json(entry):
            yield Candidate("stac", entry, explicit=False)
        elif entry.suffix.lower() in RASTER_SUFFIXES:
            yield Candidate("file", entry, explicit=False)
        elif entry.suffix.lower() == ".hdr" and _envi_data_file(entry) is not None:
            yield Candidate("file", _envi_data_file(entry), explicit=False)
        elif xbd.label_file(entry) is not None:
            yield Candidate("xbd", entry, explicit=False, labels=xbd.label_file(entry))


def _band_order(name: str) -> tuple[int, int]:
    return (int(re.sub(r"\D", "", name)), name.endswith("A"))


def _envi_data_file(header: Path) -> Path | None:
    for candidate in (header.with_suffix(""), header.with_suffix(".img"),
                      header.with_suffix(".dat"), header.with_suffix(".raw")):
        if candidate.is_file() and candidate != header:
            return candidate
    return None
