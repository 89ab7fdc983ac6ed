"""sitewatch: watch places on Earth through satellite images.

The Python API mirrors the ``sitewatch`` command::

    import sitewatch
    sitewatch.ingest(["imagery/"], "my-workspace")      # sitewatch ingest imagery/ -w my-workspace
    sitewatch.scenes("my-workspace")                     # sitewatch scenes -w my-workspace
"""

# The stage packages are imported before the API functions of the same names are bound below:
# importing a subpackage for the first time later would rebind ``sitewatch.<name>`` to it.
import sitewatch.alerts  # noqa: E402, F401
import sitewatch.analyst  # noqa: E402, F401
import sitewatch.detect  # noqa: E402, F401
import sitewatch.ingest  # noqa: E402, F401
import sitewatch.report  # noqa: E402, F401
import sitewatch.simulate  # noqa: E402, F401
import sitewatch.sites  # noqa: E402, F401
import sitewatch.stack  # noqa: E402, F401
from sitewatch.api import (  # noqa: E402
    add_assessment,
    add_event,
    add_note,
    alerts,
    aois,
    assessments,
    compare,
    delete_assessment,
    delete_event,
    delete_note,
    demo,
    detect,
    edit_assessment,
    edit_event,
    events,
    export,
    export_analyst,
    fetch,
    import_analyst,
    import_places,
    ingest,
    notes,
    places,
    report,
    scenes,
    search,
    serve,
    simulate,
    sites,
    stack,
    track,
    train,
    watch_run,
)
from sitewatch.errors import SitewatchError  # noqa: E402
from sitewatch.store import Workspace  # noqa: E402
from sitewatch.version import __version__

__all__ = ["SitewatchError", "Workspace", "__version__", "add_assessment", "add_event", "add_note",
           "alerts", "aois", "assessments", "compare", "delete_assessment", "delete_event",
           "delete_note", "demo", "detect", "edit_assessment", "edit_event", "events",
           "export", "export_analyst", "fetch", "import_analyst", "import_places",
           "ingest", "notes", "places", "report", "scenes", "search", "serve",
           "simulate", "sites", "stack", "track", "train", "watch_run"]
