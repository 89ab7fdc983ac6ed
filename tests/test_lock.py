"""One writing run per workspace; leftovers of killed runs swept."""

import subprocess
import sys
import textwrap

import pytest

from sitewatch.errors import SitewatchError
from sitewatch.store.lock import LOCK_NAME, run_lock

HOLD = textwrap.dedent("""
    import sys, time
    from sitewatch.store.lock import run_lock
    with run_lock(sys.argv[1], "sitewatch watch run"):
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_a_second_writing_run_is_refused_naming_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SitewatchError, match="another sitewatch run is writing") as info:
            with run_lock(tmp_path, "sitewatch stack"):
                pass
        assert f"sitewatch watch run, process {holder.pid}" in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        holder.communicate("\n", timeout=30)
    with run_lock(tmp_path, "sitewatch stack") as removed:  # free again once it ended
        assert removed == []
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_the_lock_is_reentrant_and_sweeps_what_killed_runs_left(tmp_path):
    stacks, detect = tmp_path / "rasters" / "stacks", tmp_path / "rasters" / "detect"
    (stacks / ".aoi-2019.zarr.tmp" / "reflectance").mkdir(parents=True)
    (detect / ".detect-1234.tmp").mkdir(parents=True)
    (detect / "detect-5678").mkdir()
    (tmp_path / "rasters" / ".sites.json.tmp").write_text("{")
    with run_lock(tmp_path, "sitewatch watch run") as removed:
        assert sorted(p.name for p in removed) == [".aoi-2019.zarr.tmp", ".detect-1234.tmp",
                                                   ".sites.json.tmp"]
        with run_lock(tmp_path, "sitewatch stack") as inner:
            assert inner == []
    assert sorted(p.name for p in detect.iterdir()) == ["detect-5678"]
    assert list(stacks.iterdir()) == []


def test_a_missing_workspace_is_not_created_by_a_command_that_needs_one(tmp_path):
    with run_lock(tmp_path / "nope", "sitewatch stack"):
        pass
    assert not (tmp_path / "nope").exists()
    with run_lock(tmp_path / "new", "sitewatch watch run", create=True):
        assert (tmp_path / "new" / LOCK_NAME).is_file()


def test_the_stage_functions_take_the_lock_when_called_from_python(tmp_path):
    from sitewatch.detect import detect
    from sitewatch.sites import extract_sites
    from sitewatch.stack import build_stack, from_bbox
    from sitewatch.store import Workspace

    Workspace.open(tmp_path, create=True).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        calls = [lambda: build_stack(tmp_path, from_bbox("40.9,34.4,40.95,34.45", "a")),
                 lambda: detect(tmp_path, "a"), lambda: extract_sites(tmp_path, "a")]
        for call in calls:
            with pytest.raises(SitewatchError, match="another sitewatch run is writing"):
                call()
    finally:
        holder.communicate("\n", timeout=30)
