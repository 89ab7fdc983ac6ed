"""sitewatch: watch places on Earth through satellite images.

The Python API mirrors the ``sitewatch`` command::

    import sitewatch
    sitewatch.ingest(["imagery/"], "my-workspace")      # sitewatch ingest imagery/ -w my-workspace
    sitewatch.scenes("my-workspace")                     # sitewatch scenes -w my-workspace
"""

__version__ = "0.1.0"

from sitewatch.api import (  # noqa: E402
    demo,
    import_places,
    ingest,
    places,
    scenes,
    simulate,
    stack,
)
from sitewatch.errors import SitewatchError  # noqa: E402
from sitewatch.store import Workspace  # noqa: E402

__all__ = ["SitewatchError", "Workspace", "__version__", "demo", "import_places", "ingest",
           "places", "scenes", "simulate", "stack"]
