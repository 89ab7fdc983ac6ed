"""Acquisitions: the scenes of one sensor on one day, mosaicked on the analysis grid.

Tiled imagery (several files of one pass, such as xView2 tiles) and a scene split over two
granules become one time step. Reading a window reads each scene onto the grid and fills the gaps
of the first with the next (first valid pixel wins, scenes in ingest order).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from rasterio.windows import Window

from sitewatch.stack.grid import Grid
from sitewatch.stack.resample import SceneReader


@dataclass
class Acquisition:
    """One time step of a stack: the scenes of one sensor on one UTC day."""

    acquired: datetime
    sensor: str | None
    scenes: list[dict] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.acquired:%Y-%m-%d}-{self.sensor or 'unknown'}"

    @property
    def scene_ids(self) -> list[str]:
        return [scene["scene_id"] for scene in self.scenes]

    @property
    def sun_angles(self) -> dict[str, float]:
        """Sun azimuth and zenith (degrees) from the scenes' STAC ``view:`` properties, if any."""
        props = self.scenes[0].get("properties") or {}
        angles = {}
        if props.get("view:sun_azimuth") is not None:
            angles["sun_azimuth_deg"] = float(props["view:sun_azimuth"])
        if props.get("view:sun_elevation") is not None:
            angles["sun_zenith_deg"] = 90.0 - float(props["view:sun_elevation"])
        return angles

    def reader(self, band_names: Sequence[str], grid: Grid,
               shift: tuple[float, float] = (0.0, 0.0)) -> MosaicReader:
        return MosaicReader(self.scenes, band_names, grid, shift)


class MosaicReader:
    """Reads an acquisition's scenes onto the grid as one image; a context manager."""

    def __init__(self, scenes: list[dict], band_names: Sequence[str], grid: Grid,
                 shift: tuple[float, float]):
        self._readers = [SceneReader(scene, band_names, grid, shift) for scene in scenes]
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> MosaicReader:
        for reader in self._readers:
            self._stack.enter_context(reader)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(bands, rows, cols) float32 with NaN where invalid, and the validity mask."""
        return self._mosaic(reader.read(window) for reader in self._readers)

    def reserve(self, window: Window) -> None:
        """Keep the decoded imagery blocks of ``window`` (:meth:`SceneReader.reserve`)."""
        for reader in self._readers:
            reader.reserve(window)

    def read_decimated(self, factor: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole grid at ``factor`` times coarser pixels."""
        return self._mosaic(reader.read_decimated(factor) for reader in self._readers)

    @staticmethod
    def _mosaic(parts) -> tuple[np.ndarray, np.ndarray]:
        data = valid = None
        for part, part_valid in parts:
            if data is None:
                data, valid = part, part_valid
                continue
            fill = part_valid & ~valid
            data[:, fill] = part[:, fill]
            valid |= fill
        return data, valid


def group_acquisitions(scenes: list[dict]) -> list[Acquisition]:
    """Group ``scenes`` rows by (UTC day, sensor), oldest first."""
    groups: dict[tuple[str, str | None], Acquisition] = {}
    for scene in sorted(scenes, key=lambda s: (s["acquired"], s["fid"])):
        acquired = datetime.fromisoformat(scene["acquired"].replace("Z", "+00:00"))
        key = (acquired.strftime("%Y-%m-%d"), scene["sensor"])
        if key not in groups:
            groups[key] = Acquisition(acquired, scene["sensor"])
        groups[key].scenes.append(scene)
    return list(groups.values())
