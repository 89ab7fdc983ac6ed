"""Install the lowest version of every dependency that ``pyproject.toml`` allows and run tests.

    python bench/min_versions.py [--venv DIR] [--keep] [-- PYTEST_ARGS ...]

The floors in ``pyproject.toml`` (``name>=X``) are only true if the code runs on ``X``: this
script makes a fresh virtual environment, installs sitewatch with every ``>=`` floor pinned
(``==X``, a pip constraints file; packages without a floor resolve as usual), prints the
versions it got, and runs pytest in it (default: the store, stack, detect, sites and report
tests). Its exit status is pytest's. It needs the package registries (PyPI, npm for the viewer's
map libraries), as ``.ci/run`` does.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TESTS = ["tests/test_store.py", "tests/test_stack.py", "tests/test_detect.py",
                 "tests/test_sites.py", "tests/test_report.py"]


def floors() -> dict[str, str]:
    """Package name -> lowest version allowed by a ``>=`` bound of ``[project].dependencies``
    and of the ``dev`` extra, whose stricter floor for a package (one its tests need) wins
    (torch is pinned exactly already)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    found = {}
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[.*\])?>=([0-9][^,;\s]*)", spec.strip())
        if match:
            found[match.group(1)] = match.group(3)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="where to make the environment "
                        "(default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the environment")
    parser.add_argument("pytest_args", nargs="*", help="tests to run (after --)")
    args = parser.parse_args()
    venv = args.venv or Path(tempfile.mkdtemp(prefix="sitewatch-min-"))
    constraints = venv.parent / f"{venv.name}-constraints.txt"
    pins = floors()
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    python = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints),
                        "-e", f"{ROOT}[dev]"], check=True)
        listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"],
                                capture_output=True, text=True, check=True).stdout
        installed = dict(line.split("==", 1) for line in listed.splitlines() if "==" in line)
        print("pinned floors:")
        for name, version in sorted(pins.items(), key=lambda item: item[0].lower()):
            got = next((v for k, v in installed.items()
                        if k.lower().replace("_", "-") == name.lower().replace("_", "-")), "?")
            print(f"  {name:20s} >= {version:12s} installed {got}")
        tests = args.pytest_args or DEFAULT_TESTS
        return subprocess.run([str(python), "-m", "pytest", "-q", *tests], cwd=ROOT).returncode
    finally:
        constraints.unlink(missing_ok=True)
        if not args.keep and args.venv is None:
            shutil.rmtree(venv, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
