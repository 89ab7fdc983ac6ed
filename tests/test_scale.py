"""Tiled runs on a task pool give the sites of a one-process run, survive a killed worker and
resume a crashed run without redoing finished tiles."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import rasterio
import shapely
import zarr
from rasterio.windows import Window

import sitewatch
from sitewatch.scale import INLINE, run_tiled, tile_layout
from sitewatch.scale import run as scale_run
from sitewatch.stack import Grid, from_bbox
from sitewatch.store import Workspace

TILING = {"tile_px": 64, "overlap_px": 16}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, str]:
    """A simulated 6-date Sentinel-2 scene with change sites, ingested; (workspace, bbox)."""
    from sitewatch.simulate import simulate

    root = tmp_path_factory.mktemp("scale")
    result = simulate(root / "imagery", sensor="s2", seed=5, n_dates=6, size_m=(2400, 1800))
    sitewatch.ingest([result.catalog_path], root / "ws")
    truth = json.loads(result.truth_path.read_text())
    aoi = shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                      if f["properties"]["role"] == "aoi"))
    return root / "ws", ",".join(map(str, aoi.bounds))


@pytest.fixture(scope="module")
def inline_sites(scene) -> list[tuple]:
    workspace, bbox = scene
    run_tiled(workspace, from_bbox(bbox, "one"), scheduler=INLINE, **TILING)
    return _sites(workspace, "one")


def _sites(workspace: Path, aoi: str) -> list[tuple]:
    """The stored sites of ``aoi``, without the AOI prefix of their ids, comparable."""
    with Workspace.open(workspace) as ws:
        rows = ws.rows("sites", "aoi = ?", (aoi,), order_by="site_id")
        return [(r["site_id"].removeprefix(aoi), shapely.wkt.dumps(r["geom"], rounding_precision=7),
                 r["change_type"], r["first_seen"], round(r["area_m2"], 3),
                 round(r["length_m"], 3), r["mgrs"],
                 len(ws.rows("observations", "site_id = ?", (r["site_id"],))))
                for r in rows]


def test_tiles_partition_the_grid():
    grid = Grid(32637, 10.0, 150, 100, 500_000.0, 3_800_000.0)
    tiles = tile_layout(grid, 64, 16)
    assert len(tiles) == 3 * 2
    assert sum(t.core.width * t.core.height for t in tiles) == 150 * 100
    last = tiles[-1]
    assert (last.core.col_off, last.core.width, last.outer.col_off, last.outer.width) == (
        128, 22, 112, 38)


def test_strips_cover_every_tile_once_column_by_column():
    from sitewatch.scale.tiles import column_windows, strips

    grid = Grid(32637, 10.0, 10960, 5000, 500_000.0, 3_800_000.0)  # 11 x 5 tiles of 1024
    tiles = tile_layout(grid, 1024, 64)
    parts = strips(tiles)
    assert sorted(t.name for part in parts for t in part) == sorted(t.name for t in tiles)
    assert [len(part) for part in parts] == [10, 12, 10, 12, 5, 6]  # rows 0-1, 2-3, 4
    assert [t.name for t in parts[0][:3]] == ["tile-000-000", "tile-001-000", "tile-000-001"]
    assert column_windows(parts[0])[1] == Window(960, 0, 1152, 2112)


def test_tiled_sites_match_a_one_process_stack(scene, inline_sites, tmp_path):
    from sitewatch.sites import extract_sites
    from sitewatch.stack import build_stack

    workspace, bbox = scene
    # the compound, across several 64 px tiles (a one-date cloud over open ground, read as a
    # second site before the lifecycle learnt passing clouds, is no longer one)
    assert "new_construction" in {site[2] for site in inline_sites}
    build_stack(workspace, from_bbox(bbox, "whole"))
    whole = {(s.lifecycle.change_type, round(s.measurements.area_m2, 3))
             for s in extract_sites(workspace, "whole").sites}
    assert whole == {(site[2], site[4]) for site in inline_sites}
    with Workspace.open(workspace) as ws:  # both paths write their change layers as COGs
        layers = {r["aoi"]: ws.root / r["path"] for r in ws.rows(
            "rasters", "kind = 'change:magnitude'")}
    for aoi in ("one", "whole"):
        with rasterio.open(layers[aoi]) as src:
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", aoi
            assert src.compression.name == "deflate", aoi


def test_two_workers_with_one_killed_give_the_same_sites(scene, inline_sites):
    from dask.distributed import Client, LocalCluster

    workspace, bbox = scene
    with (LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                       dashboard_address=":0") as cluster, Client(cluster) as client):
        pids = list(client.run(os.getpid).values())
        killed = []

        def kill_after_first_tile():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                if any((workspace / "scale").glob("two-*/tiles/*.npz")):
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                time.sleep(0.05)

        killer = threading.Thread(target=kill_after_first_tile)
        killer.start()
        run = run_tiled(workspace, from_bbox(bbox, "two"), scheduler=cluster.scheduler_address,
                        **TILING)
        killer.join()
    assert killed, "the worker was not killed mid-run"
    # Every tile is accounted for once: run by the task that reported it, or found finished
    # by the retry of a strip the killed worker had begun.
    accounted = sorted(t for r in run.reports for t in r.tiles + r.reused)
    assert accounted == sorted(t.name for t in run.jobs[0].tiles)
    assert _sites(workspace, "two") == inline_sites


def test_series_read_back_from_the_store_give_the_sites_of_held_ones(scene, inline_sites,
                                                                    monkeypatch):
    from sitewatch.scale import work

    workspace, bbox = scene
    monkeypatch.setattr(work, "HELD_MB", 0)  # every acquisition read back, none held
    run_tiled(workspace, from_bbox(bbox, "read-back"), scheduler=INLINE, **TILING)
    assert _sites(workspace, "read-back") == inline_sites


def test_a_crashed_run_resumes_without_redoing_tiles(scene, inline_sites, monkeypatch):
    workspace, bbox = scene

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scale_run, "finalise", crash)
    with pytest.raises(KeyboardInterrupt):
        run_tiled(workspace, from_bbox(bbox, "three"), scheduler=INLINE, **TILING)
    finished = sorted((workspace / "scale").glob("three-*/tiles/*.npz"))
    assert len(finished) == 12
    monkeypatch.undo()
    resumed = run_tiled(workspace, from_bbox(bbox, "three"), scheduler=INLINE, **TILING)
    assert resumed.reports == []  # no tile ran again
    assert _sites(workspace, "three") == inline_sites
    again = run_tiled(workspace, from_bbox(bbox, "three"), scheduler=INLINE, **TILING)
    assert again.jobs[0].up_to_date and again.jobs[0].sites is None
    assert _sites(workspace, "three") == inline_sites


def test_a_new_scene_is_stacked_alone_and_the_sites_keep_their_ids(tmp_path, monkeypatch):
    import numpy as np

    from sitewatch.scale import work
    from sitewatch.simulate import simulate
    from sitewatch.stack import open_stack

    result = simulate(tmp_path / "imagery", sensor="s2", seed=5, n_dates=7, size_m=(2400, 1800))
    items = sorted(result.catalog_path.parent.glob("sim-s2-*/sim-s2-*.json"))
    assert len(items) == 7
    workspace = tmp_path / "ws"
    sitewatch.ingest(items[:6], workspace)
    truth = json.loads(result.truth_path.read_text())
    aoi = shapely.geometry.shape(next(f["geometry"] for f in truth["features"]
                                      if f["properties"]["role"] == "aoi"))
    aoi = from_bbox(",".join(map(str, aoi.bounds)), "watched")
    first = run_tiled(workspace, aoi, scheduler=INLINE, **TILING)
    before = {s.site_id: s.footprint for s in first.jobs[0].sites.sites}
    assert before

    stacked = []
    original = work.passes.stack_window
    monkeypatch.setattr(work.passes, "stack_window",
                        lambda reader, acq, *a, **k: stacked.append(acq.key)
                        or original(reader, acq, *a, **k))
    sitewatch.ingest(items[6:], workspace)
    second = run_tiled(workspace, aoi, scheduler=INLINE, **TILING)
    job = second.jobs[0]
    assert job.plan.reused == len(first.jobs[0].plan.kept) == 6
    new_key = job.plan.kept[-1][0].key
    assert set(stacked) == {new_key} and len(stacked) == len(job.tiles)  # one read per tile
    with Workspace.open(workspace) as ws:
        stacks = ws.rows("rasters", "kind = 'stack' AND aoi = 'watched'", order_by="fid")
        run = ws.rows("runs", "run_id = ?", (stacks[-1]["run_id"],))[0]
        old, new = (open_stack(ws.root / s["path"]) for s in stacks[-2:])
    assert run["inputs"]["reused"] == {"stack_run": stacks[-2]["run_id"], "acquisitions": 6}
    assert new.sizes["time"] == 7 and stacks[-1]["properties"]["reference"] == \
        stacks[-2]["properties"]["reference"]
    np.testing.assert_array_equal(new.reflectance[:6].values, old.reflectance.values)
    np.testing.assert_array_equal(new.mask[:6].values, old.mask.values)
    assert np.isfinite(new.reflectance[6].values).mean() > 0.5
    # the sites found again keep their ids
    after = {s.site_id: s.footprint for s in job.sites.sites}
    for site_id, footprint in before.items():
        if any(footprint.intersection(f).area > 0.5 * footprint.area for f in after.values()):
            assert site_id in after
    assert run_tiled(workspace, aoi, scheduler=INLINE, **TILING).jobs[0].up_to_date


def test_a_local_cluster_runs_tasks_and_leaves_dask_s_default_scheduler_alone():
    import operator

    from dask.distributed import default_client

    from sitewatch.scale.cluster import connect

    with connect(workers=1) as pool:
        pool.submit("answer", operator.mul, 6, 7)
        assert list(pool.completed()) == [("answer", 42)]
        with pytest.raises(ValueError):  # xarray/dask reads in the client stay local
            default_client()


def test_a_stack_store_with_a_chunk_per_band_is_not_reused(tmp_path):
    from sitewatch.scale.plan import _same_band_chunks

    for chunks, reusable in (((1, 4, 512, 512), True), ((1, 1, 512, 512), False)):
        store = tmp_path / f"{chunks[1]}.zarr"
        zarr.open_group(str(store), mode="w", zarr_format=2).create_array(
            "reflectance", shape=(6, 4, 2048, 2048), chunks=chunks, dtype="float32")
        assert _same_band_chunks(store) is reusable
    assert not _same_band_chunks(tmp_path / "missing.zarr")
