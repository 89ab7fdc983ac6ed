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
and reported; named explicitly, they are an error. The search enters each real folder once, so a
symbolic link back up the tree (``ln -s . d/a``) is not followed round; it never opens anything
but regular files, so a FIFO, socket or device in the folder cannot block it.
"""

from __future__ import annotations

import os
import re
import stat
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

    kind: str  # "file" | "band_folder" | "stac" | "xbd" | "eopatch" | "unreadable"
    path: Path
    explicit: bool  # named by the user (errors) rather than found in a folder (skips)
    band_files: tuple[tuple[str, Path], ...] = ()
    labels: Path | None = None
    reason: str = ""  # why an "unreadable" folder could not be searched


def discover(path: str | os.PathLike) -> list[Candidate]:
    """The candidates at ``path``; an error if it does not exist or holds no imagery."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SitewatchError("no such file or folder; check the path", path)
    path = path.resolve()
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return [_file_candidate(path, explicit=True)]
    if not stat.S_ISDIR(mode):
        raise SitewatchError("not a regular file or folder (a FIFO, socket or device); give "
                             "an image file or a folder of them", path)
    found = list(_walk(path, visited=set()))
    if len(found) == 1 and found[0].kind == "unreadable" and found[0].path == path:
        raise SitewatchError(found[0].reason, path)
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


def _walk(folder: Path, visited: set[tuple[int, int]]) -> Iterator[Candidate]:
    """The candidates in ``folder`` and below; ``visited`` holds the (device, inode) of the
    folders already searched, which are not searched again."""
    status = folder.stat()
    identity = (status.st_dev, status.st_ino)
    if identity in visited:
        return
    visited.add(identity)
    for name in CATALOG_NAMES:
        if (folder / name).is_file():
            yield Candidate("stac", folder / name, explicit=False)
            return
    if eopatch.is_eopatch(folder):
        yield Candidate("eopatch", folder, explicit=False)
        return
    try:
        entries = _entries(folder)
    except OSError as exc:  # a folder we may not list: skipped, and the ingest report says so
        yield Candidate("unreadable", folder, explicit=False,
                        reason=f"cannot read the folder ({exc.strerror or exc})")
        return
    band_files = {}
    for entry, mode in entries:
        match = sensors.BAND_FILE.search(entry.name) if stat.S_ISREG(mode) else None
        if match:
            band_files[sensors.normalise_band_name(match.group(1))] = entry
    if len(band_files) >= 2:
        ordered = tuple(sorted(band_files.items(), key=lambda kv: _band_order(kv[0])))
        yield Candidate("band_folder", folder, explicit=False, band_files=ordered)
    for entry, mode in entries:
        if entry.name.startswith("."):
            continue
        if stat.S_ISDIR(mode):
            yield from _walk(entry, visited)
        elif not stat.S_ISREG(mode):
            continue
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


def _entries(folder: Path) -> list[tuple[Path, int]]:
    """The entries of ``folder``, sorted, each with the mode of what it names (links followed);
    a broken link is left out."""
    entries = []
    for entry in sorted(folder.iterdir()):
        try:
            entries.append((entry, entry.stat().st_mode))
        except OSError:
            continue
    return entries


def _band_order(name: str) -> tuple[int, int]:
    return (int(re.sub(r"\D", "", name)), name.endswith("A"))


def _envi_data_file(header: Path) -> Path | None:
    for candidate in (header.with_suffix(""), header.with_suffix(".img"),
                      header.with_suffix(".dat"), header.with_suffix(".raw")):
        if candidate.is_file() and candidate != header:
            return candidate
    return None
