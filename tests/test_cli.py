import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_geotiff


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "sitewatch", *map(str, args)],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "COLUMNS": "200"})
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("command", [[], ["ingest"], ["scenes"], ["simulate"], ["demo"],
                                     ["places"], ["places", "import"], ["places", "list"],
                                     ["watch", "run"], ["export"], ["report"], ["serve"], ["train"],
                                     ["assess", "add"], ["event", "add"], ["note", "add"],
                                     ["analyst", "export"]])
def test_help_everywhere(command):
    result = run(*command, "--help")
    assert "Usage:" in result.stdout


def test_help_shows_bracketed_words():
    """Help texts are not read as markup: the extra and the defaults in brackets stay."""
    help_text = " ".join(run("train", "--help").stdout.split())
    assert "needs the [ml] extra" in help_text and "[date]" in help_text


def test_user_mistake_is_one_line_without_traceback(tmp_path, data_dir):
    png = data_dir / "levir-cd-samples" / "A" / "test_2_0000_0000.png"
    result = run("ingest", png, "-w", tmp_path / "ws", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "test_2_0000_0000.png" in lines[0] and "georeference" in lines[0]
    debug = run("--debug", "ingest", png, "-w", tmp_path / "ws", check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_ingest_then_list_as_json_and_table(tmp_path):
    write_geotiff(tmp_path / "site_20190315.tif", np.ones((4, 20, 30), np.uint16), nodata=0)
    result = run("ingest", tmp_path / "site_20190315.tif", "--workspace", tmp_path / "ws")
    assert "1 scene(s) added" in result.stdout
    again = run("ingest", tmp_path / "site_20190315.tif", "-w", tmp_path / "ws")
    assert "0 scene(s) added" in again.stdout and "1 unchanged" in again.stdout
    rows = json.loads(run("scenes", "-w", tmp_path / "ws", "--json").stdout)
    assert len(rows) == 1
    assert rows[0]["acquired"] == "2019-03-15T00:00:00Z"
    assert (rows[0]["width"], rows[0]["height"], len(rows[0]["bands"])) == (30, 20, 4)
    assert rows[0]["epsg"] == 32637
    table = run("scenes", "-w", tmp_path / "ws").stdout
    assert "EPSG:32637" in table


def test_places_import_and_list(tmp_path):
    geojson = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [40.97, 34.39]},
             "properties": {"name": "Al-Qaim crossing", "kind": "border crossing"}},
            {"type": "Feature",
             "geometry": {"type": "LineString", "coordinates": [[40.95, 34.5], [41.0, 34.3]]},
             "properties": {"name": "Iraq-Syria border", "left": "Iraq", "right": "Syria"}},
        ],
    }
    path = tmp_path / "places.geojson"
    path.write_text(json.dumps(geojson))
    assert "1 place(s) and 1 border(s)" in run("places", "import", path, "-w", tmp_path).stdout
    listed = json.loads(run("places", "list", "-w", tmp_path, "--json").stdout)
    assert listed["places"][0]["kind"] == "border crossing"
    assert listed["places"][0]["lat"] == pytest.approx(34.39)
    assert listed["borders"][0]["left_name"] == "Iraq"
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    result = run("places", "import", bad, "-w", tmp_path, check=False)
    assert result.returncode == 2 and "bad.geojson" in result.stderr


def test_a_bad_watch_file_is_one_line_naming_the_key(tmp_path):
    watch = tmp_path / "watch.toml"
    watch.write_text('workspace = "ws"\n[imagery]\nsources = ["absent/*.tif"]\n'
                     '[[aoi]]\nname = "a"\nbbox = [1, 2, 3, 4]\n', encoding="utf-8")
    result = run("watch", "run", watch, check=False)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "watch.toml" in line and "imagery.sources" in line
    assert not (tmp_path / "ws").exists()


# -- user text is printed as it is: never Rich markup, never terminal control ------------------

HOSTILE_NOTE = "x [/bold] y \x1b[31mred\x1b[0m \x1b]0;pwned\x07 bell\x07 \x9b31m [red]z[/red]"


def test_brackets_in_place_names_and_notes_are_printed_as_written(tmp_path):
    places = tmp_path / "places.geojson"
    places.write_text(json.dumps({"type": "Feature", "properties": {"name": "Gate [/b]"},
                                  "geometry": {"type": "Point", "coordinates": [40.97, 34.39]}}))
    run("places", "import", places, "-w", tmp_path / "ws")
    assert "Gate [/b]" in run("places", "list", "-w", tmp_path / "ws").stdout
    run("note", "add", HOSTILE_NOTE, "-w", tmp_path / "ws")
    listed = run("note", "list", "-w", tmp_path / "ws").stdout
    assert "x [/bold] y" in listed and "[red]z[/red]" in listed
    assert "red" in listed and "bell" in listed
    assert not any(code in listed for code in ("\x1b", "\x07", "\x9b", "pwned"))


def test_error_naming_a_bracketed_path_shows_the_real_path(tmp_path):
    missing = tmp_path / "[red]dir" / "scene [/b].tif"
    result = run("ingest", missing, "-w", tmp_path / "ws", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(missing) in line


def test_site_and_progress_text_is_not_markup(monkeypatch):
    import io

    from sitewatch import cli

    monkeypatch.setattr(cli, "out", cli.PlainConsole(file=io.StringIO(), width=200))
    cli._print_sites([{"site_id": "S-1", "change_type": "new_building", "status": "present",
                       "length_m": 30.0, "width_m": 20.0, "area_m2": 600.0,
                       "last_seen_unchanged": "2019-01-01", "first_seen": "2019-02-01",
                       "properties": {"location": "300 m W of Gate [/b]\x1b]0;pwned\x07"}}])
    assert "300 m W of Gate [/b]" in cli.out.file.getvalue()
    assert "pwned" not in cli.out.file.getvalue()
    terminal = io.StringIO()
    monkeypatch.setattr(cli, "console", cli.PlainConsole(file=terminal, force_terminal=True,
                                                         width=200))
    with cli._progress("Reading") as progress:
        progress.update(progress.task_ids[0], description="Reading [/b]\x1b]0;pwned\x07.tif")
        progress.refresh()
    assert "Reading [/b].tif" in terminal.getvalue() and "pwned" not in terminal.getvalue()


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device", "ws/rasters/stack/x.zarr/c/0"),
    __import__("sqlite3").OperationalError("database or disk is full")])
def test_a_full_disk_is_one_line_not_a_traceback(monkeypatch, capsys, tmp_path, error):
    import sqlite3

    from sitewatch import api, cli

    if isinstance(error, sqlite3.Error):
        error.sqlite_errorcode = sqlite3.SQLITE_FULL

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(api, "export", full)
    monkeypatch.setattr(sys, "argv", ["sitewatch", "export", str(tmp_path / "out"),
                                      "-w", str(tmp_path / "ws")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    printed = " ".join(capsys.readouterr().err.split())
    assert printed.startswith("error: out of disk space") and "Traceback" not in printed
    if isinstance(error, OSError):
        assert "while writing ws/rasters/stack/x.zarr/c/0" in printed


def test_other_os_errors_keep_their_traceback(monkeypatch, tmp_path):
    from sitewatch import api, cli

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(api, "export", broken)
    monkeypatch.setattr(sys, "argv", ["sitewatch", "export", str(tmp_path / "out"),
                                      "-w", str(tmp_path / "ws")])
    with pytest.raises(OSError, match="Input/output"):
        cli.main()


@pytest.mark.parametrize("args", [["stack", "--bogus"], ["detect", "--dates", "2019-01-01"]])
def test_usage_errors_are_clicks_message_not_a_traceback(args):
    result = run(*args, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No such option: --bogus" in result.stderr or "requires 2 arguments" in result.stderr
