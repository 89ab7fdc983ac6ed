"""Build step of the web viewer's map libraries (everything else is in pyproject.toml).

The viewer serves OpenLayers, proj4js and GeographicLib's geodesic routines from the
installed package, so that its page needs no internet. They are not kept in this repository:
``build_py`` (run by ``pip install .`` and ``pip install -e .``) installs the versions pinned in
``package.json`` / ``package-lock.json`` from the npm registry with ``npm ci`` into
``build/npm/`` and copies their built files into ``src/sitewatch/web/static/vendor/``
(git-ignored), from where the package data is taken. A stamp of the lock file's SHA-256 skips
npm when the copies already match it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
LOCK = ROOT / "package-lock.json"
NPM_DIR = ROOT / "build" / "npm"
VENDOR = ROOT / "src" / "sitewatch" / "web" / "static" / "vendor"
#: Files copied from the installed npm packages: path under node_modules -> name in vendor/.
VENDOR_FILES = {
    "ol/dist/ol.js": "ol.js",
    "ol/ol.css": "ol.css",
    "proj4/dist/proj4.js": "proj4.js",
    "geographiclib-geodesic/geographiclib-geodesic.min.js": "geodesic.js",
    "ol/LICENSE.md": "LICENSE-ol.md",
    "proj4/LICENSE.md": "LICENSE-proj4.md",
    "geographiclib-geodesic/LICENSE.txt": "LICENSE-geographiclib.txt",
}
STAMP = VENDOR / ".lock-sha256"


def vendor_map_libraries() -> None:
    """Install the pinned npm packages and copy their built files into ``VENDOR``, unless
    the copies there were made from the current lock file."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if (STAMP.is_file() and STAMP.read_text().strip() == digest
            and all((VENDOR / name).is_file() for name in VENDOR_FILES.values())):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "error: building sitewatch needs npm (Node.js 18 or later) to fetch the web "
            "viewer's map libraries (OpenLayers, proj4js, geographiclib-geodesic) from the npm "
            "registry; install Node.js (e.g. 'apt-get install nodejs npm') and run pip again")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(ROOT / name, NPM_DIR / name)
    command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        subprocess.run(command, cwd=NPM_DIR, check=True)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"error: '{' '.join(command)}' failed in {NPM_DIR} (status "
                         f"{exc.returncode}); the npm registry must be reachable, or its "
                         "cache hold the packages of package-lock.json") from exc
    VENDOR.mkdir(parents=True, exist_ok=True)
    for source, name in VENDOR_FILES.items():
        path = NPM_DIR / "node_modules" / source
        if not path.is_file():
            raise SystemExit(f"error: npm installed no {source}; package.json and "
                             "setup.py's VENDOR_FILES disagree")
        shutil.copyfile(path, VENDOR / name)
    STAMP.write_text(digest + "\n")


class BuildWithMapLibraries(build_py):
    """``build_py`` that first puts the map libraries into the package's static folder."""

    def run(self) -> None:
        vendor_map_libraries()
        super().run()


setup(cmdclass={"build_py": BuildWithMapLibraries})
