"""The scene record: what ingest learns about one acquisition, and its workspace row."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from shapely.geometry import MultiPolygon, Polygon

from sitewatch.store.geopackage import now_iso


@dataclass(frozen=True)
class Band:
    """One band of a scene, and where its pixels live.

    ``index`` is the 1-based band number inside ``file``; ``transform`` is the GDAL geotransform
    of that file (band files of one scene may differ in resolution); ``resolution_m`` is the
    pixel size in metres (measured geodesically at the scene centre for geographic CRSs).
    """

    name: str
    file: str
    index: int
    width: int
    height: int
    transform: tuple[float, ...]
    resolution_m: float
    dtype: str
    nodata: float | None = None
    common_name: str | None = None
    center_wavelength_um: float | None = None


@dataclass
class Scene:
    """One acquisition: a file, a one-file-per-band folder, or a STAC item."""

    source: str  # absolute path (file, folder or STAC item JSON)
    files: list[str]  # every file whose pixels or metadata the scene reads
    bands: list[Band]
    crs_wkt: str
    epsg: int | None
    footprint: Polygon | MultiPolygon  # EPSG:4326, lon/lat; cut at the antimeridian
    nodata_fraction: float
    driver: str
    acquired: datetime | None = None
    date_source: str | None = None
    sensor: str | None = None
    platform: str | None = None
    cloud_cover: float | None = None
    properties: dict = field(default_factory=dict)

    @property
    def finest_band(self) -> Band:
        return min(self.bands, key=lambda band: band.resolution_m)

    @property
    def scene_id(self) -> str:
        """``YYYYMMDD-<name>-<hash>``: readable, sortable by date, unique per source."""
        stem = os.path.basename(self.source.rstrip("/"))
        if os.path.isdir(self.source):  # band folders such as <city>/imgs_1 keep their parent
            stem = f"{os.path.basename(os.path.dirname(self.source))}-{stem}"
        stem = re.sub(r"\.(json|tiff?|vrt|png|hdr)$", "", stem, flags=re.I)
        stem = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")[:40] or "scene"
        digest = hashlib.sha1(self.source.encode()).hexdigest()[:6]
        return f"{self.acquired:%Y%m%d}-{stem}-{digest}"

    def fingerprint(self) -> str:
        """A digest of the size and modification time of every file of the scene."""
        parts = []
        for path in sorted(set(self.files)):
            stat = os.stat(path)
            parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()

    def to_row(self) -> dict:
        finest = self.finest_band
        return {
            "geom": self.footprint,
            "scene_id": self.scene_id,
            "source": self.source,
            "fingerprint": self.fingerprint(),
            "sensor": self.sensor,
            "platform": self.platform,
            "acquired": self.acquired.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "date_source": self.date_source,
            "crs": self.crs_wkt,
            "epsg": self.epsg,
            "width": finest.width,
            "height": finest.height,
            "transform": list(finest.transform),
            "resolution_m": finest.resolution_m,
            "bands": [asdict(band) for band in self.bands],
            "nodata_fraction": self.nodata_fraction,
            "cloud_cover": self.cloud_cover,
            "driver": self.driver,
            "properties": self.properties,
            "ingested_at": now_iso(),
        }
