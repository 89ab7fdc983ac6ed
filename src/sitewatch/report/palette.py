"""The colours of change types, one palette for every output (figures, KML exports).

The Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), safe for the common forms
of colour blindness; grey for polygons not typed. Colours are ``#RRGGBB`` strings.
"""

from __future__ import annotations

#: Outline colour of each change type.
TYPE_COLOURS = {
    "new_construction": "#E69F00",
    "land_clearing": "#F0E442",
    "destruction": "#D55E00",
    "demolition": "#CC79A7",
    "vegetation_loss": "#009E73",
    "seasonal_vegetation": "#0072B2",
    "unclassified": "#999999",
}
#: Colour of a change type not in :data:`TYPE_COLOURS`.
OTHER_COLOUR = "#56B4E9"


def type_colour(change_type: str | None) -> str:
    """The ``#RRGGBB`` colour of ``change_type``."""
    return TYPE_COLOURS.get(change_type or "", OTHER_COLOUR)
