"""The workspace the viewer's tests open, built once per test session and copied by each test
module before it writes.

The simulated border scenario (Sentinel-2, seed 0) over 3000 x 1200 m and 8 dates, stacked and
tracked: the smallest run whose extent holds the new compound, 2.6 km west of the crossing, with
enough dates for the time-series detection to track it (1500 x 1200 m over 6 dates finds no
site). The stack skips radiometric normalisation (the simulated dates need none), which is three
quarters of the stacking time; the whole build takes about 15 s on two cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import shapely

import sitewatch
from sitewatch.simulate import simulate
from sitewatch.stack import build_stack, from_bbox

AOI = "crossing"
N_DATES = 8
#: The AOI of the VHR workspace: simulated 0.5 m imagery over 600 x 400 m (1200 x 800 px),
#: 6 dates, stacked (no tracking); about 10 s to build.
VHR_AOI = "vhr"
_BUILT: dict[str, Path] = {}


def tracked_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stacked and tracked workspace of this session (built on first use)."""
    if "ws" not in _BUILT:
        root = tmp_path_factory.mktemp("web-workspace")
        result = simulate(root / "imagery", sensor="s2", seed=0, n_dates=N_DATES,
                          size_m=(3000, 1200))
        sitewatch.ingest([result.catalog_path], root / "ws")
        sitewatch.import_places(result.places_path, root / "ws")
        build_stack(root / "ws", from_bbox(",".join(map(str, _aoi(result).bounds)), AOI),
                    normalisation="none")
        sitewatch.track(root / "ws", AOI)
        _BUILT["ws"] = root / "ws"
    return _BUILT["ws"]


def vhr_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stacked VHR workspace of this session (built on first use; tests only read it)."""
    if "vhr" not in _BUILT:
        root = tmp_path_factory.mktemp("web-vhr")
        result = simulate(root / "imagery", sensor="vhr", seed=1, n_dates=6, size_m=(600, 400))
        sitewatch.ingest([result.catalog_path], root / "ws")
        build_stack(root / "ws", from_bbox(",".join(map(str, _aoi(result).bounds)), VHR_AOI),
                    normalisation="none")
        _BUILT["vhr"] = root / "ws"
    return _BUILT["vhr"]


def _aoi(result) -> shapely.Geometry:
    """The AOI of a simulation, from its ground truth."""
    truth = json.loads(result.truth_path.read_text())
    return shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                       if f["properties"]["role"] == "aoi"))


def workspace_copy(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh copy of the session's workspace that a test module may write to."""
    target = tmp_path_factory.mktemp(name) / "ws"
    shutil.copytree(tracked_workspace(tmp_path_factory), target)
    return target
