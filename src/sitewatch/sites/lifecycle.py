"""A site's change type and phase timeline, read from its temporal signature.

The signature (:mod:`sitewatch.sites.signature`) gives, per observed date, the site's median
brightness, vegetation and built-up indices and its *activity* (share of pixels that changed
since the previous observed date, against local noise). An **event** is an observed date where
the site changed: activity of at least :data:`EVENT_ACTIVITY` together with a level shift of the
site's brightness (:data:`LEVEL_SHIFT`) or built-up index (:data:`BUILT_SHIFT`). Activity without
a level shift (construction work inside a compound whose overall brightness holds) only counts
once a site has started changing. Events are then read as a small state machine, in the way an
imagery analyst reads a time-lapse:

- a site that held a **structure** (a tenth of its pixels differ from the surrounding ground
  by :data:`STRUCTURE_CONTRAST` in brightness before the first event, and it was not
  vegetated, its median vegetation index below :data:`VEGETATED`: the polygon of a
  building's change also holds the ground around it) and first **darkens** was *destroyed*
  (burn scar, debris); a later brightening that leaves it darker than its surroundings, or a
  later burst of activity that does not darken it further (the rubble graded), is
  *flattened*; once it is as bright as its surroundings again (no dark rubble or char left)
  the *debris* was *removed*;
- a structure that first **brightens** to bare ground was *demolished*;
- open ground that **brightens** with no vegetation gain was *cleared*; further events (or
  continued activity of at least :data:`CONSTRUCTION_ACTIVITY`) mean *under construction*; open
  ground whose first event is a darkening or a built-up rise is *under construction* at once;
- after construction, :data:`QUIET_DATES` observed dates without events make it *completed*;
- ground that is vegetated on some date (vegetation index above :data:`VEGETATED`) and whose
  vegetation both rises and falls by :data:`VEGETATION_SWING` is a seasonal or agricultural
  cycle, not a change of interest; vegetated ground that loses its vegetation for good and is
  then bare soil like its own before or its neighbours' (:func:`_new_surface`) is
  *cultivation*, a harvested or ploughed field, not of interest either; where that cannot be
  told (no bare date to compare with) it is *vegetation loss*; but where the ground after the
  first event is another surface than that bare soil (brighter or darker by
  :data:`STRUCTURE_CONTRAST`: scraped ground, roofs, water, which no harvest or ploughing
  leaves), the vegetation rules do not apply and the site is read like open ground (a
  compound built in a field);
- a site that changed but is, on the last observed date, as it was before its first event
  (:func:`_returned`: a cloud or its shadow over several dates, flood water that receded) is
  *transient*, not of interest either;
- ground whose first event is a fall of the built-up index with a rise of vegetation, and no
  brightness shift, is greening (a crop, a wet season), not of interest either;
- a polygon without any event at the site level (its pixels' breaks did not add up to a change
  of the object) is *unclassified* and not reported.

Every phase carries the date it was first observed and the last observed date before it, so a
report can say "between X and Y": that is the uncertainty the revisit interval allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sitewatch.sites.signature import DateSignature

EVENT_ACTIVITY = 0.2
CONSTRUCTION_ACTIVITY = 0.1
LEVEL_SHIFT = 0.03  # reflectance units (0..1)
BUILT_SHIFT = 0.03  # index units
VEGETATED = 0.2  # NDVI of sparse vegetation cover
STRUCTURE_CONTRAST = 0.06  # 90th percentile |site - surroundings| brightness of a structure
VEGETATION_SWING = 0.1
QUIET_DATES = 2
HOLD_DATES = 3  # observed dates over which a level shift must hold to be an event
STRONG_ACTIVITY = 0.8

#: Change types, in the words reports use.
TYPES = ("new_construction", "land_clearing", "destruction", "demolition", "vegetation_loss",
         "seasonal_vegetation", "cultivation", "transient", "unclassified")
#: Types that are not of interest to the analyst (kept out of the site list, counted by kind).
NOT_OF_INTEREST = frozenset({"seasonal_vegetation", "cultivation", "transient", "unclassified"})


@dataclass(frozen=True)
class Phase:
    """One phase of a site's life; dates are ISO days."""

    name: str
    first_observed: str  # first observed date showing this phase
    after: str | None  # the last observed date before it: the phase began after this day

    def to_dict(self) -> dict:
        return {"phase": self.name, "first_observed": self.first_observed, "after": self.after}


@dataclass(frozen=True)
class Lifecycle:
    change_type: str
    phases: tuple[Phase, ...]
    first_change: str | None  # first observed date of the first event
    last_unchanged: str | None  # last observed date before it

    @property
    def status(self) -> str:
        return self.phases[-1].name if self.phases else "unchanged"


def _day(value: np.datetime64) -> str:
    return str(value)[:10]


def events(signature: list[DateSignature]) -> list[tuple[int, str]]:
    """(index into the observed dates, kind) of every event; kind is ``"darkening"``,
    ``"brightening"`` or ``"activity"``.

    A level shift must hold: the median of the date and up to :data:`HOLD_DATES` - 1 observed
    dates after it stays at least half the shift away from the level before, so a cloud or
    shadow residual on one date, which reverts, is not an event; nor is its return, because a
    date after such an excursion is compared with the level before the excursion. A shift on
    the last date cannot be checked yet and counts provisionally. Where nearly every pixel of
    the site changed (activity of at least :data:`STRONG_ACTIVITY`; dates whose surroundings
    changed as a whole, shadows and haze, are already not observed) half the level shift is
    enough and it need not hold: a destroyed building is often graded within a revisit or two;
    but a site that is all back as it was on the next observed date (:func:`_returned`) had a
    cloud or a shadow over it, not an event.
    """
    observed = [s for s in signature if s.observed]
    found = []
    reference = 0  # the last observed date that was not a transient excursion
    for i in range(1, len(observed)):
        now, before = observed[i], observed[reference]
        shift = now.brightness - before.brightness
        built = now.built_up - before.built_up
        activity = 0.0 if np.isnan(now.activity) else now.activity
        # Nearly every pixel changed: the object changed even if the polygon's median, diluted
        # by ground that did not, moved less than a full level shift.
        strong = activity >= STRONG_ACTIVITY
        step = LEVEL_SHIFT / 2 if strong else LEVEL_SHIFT
        level = abs(shift) >= step or abs(built) >= BUILT_SHIFT
        if activity >= EVENT_ACTIVITY and not level and found:
            found.append((i, "activity"))
            reference = i
            continue
        if not (activity >= EVENT_ACTIVITY and level):
            reference = i
            continue
        after = observed[i:i + HOLD_DATES]
        held_b = float(np.median([s.brightness for s in after])) - before.brightness
        held_u = float(np.median([s.built_up for s in after])) - before.built_up
        if (not (strong or abs(held_b) >= abs(shift) / 2 and abs(shift) >= step
                 or abs(held_u) >= abs(built) / 2 and abs(built) >= BUILT_SHIFT)
                or i + 1 < len(observed) and _returned(observed[i + 1], before)):
            # a shift that did not hold, or a site that is all back as it was on the next date
            # (a cloud or its shadow over the site alone): the next date is compared with the
            # level before it, so its return is not read as an event
            continue
        reference = i
        kind = ("darkening" if shift <= -step else
                "brightening" if shift >= step else "activity")
        found.append((i, kind))
    return found


def lifecycle(signature: list[DateSignature]) -> Lifecycle:
    """Change type and phases of a site from its signature (see the module docstring)."""
    observed = [s for s in signature if s.observed]
    found = events(signature)
    if not observed or not found:
        return Lifecycle("unclassified", (), None, None)
    first = found[0][0]
    baseline = observed[:first]
    base_v = float(np.median([s.vegetation for s in baseline]))
    contrast = [s.contrast for s in baseline if not np.isnan(s.contrast)]
    # a structure stands out from the ground around it and is not vegetation (a green field
    # in bare land stands out too)
    structure = (bool(contrast) and float(np.median(contrast)) >= STRUCTURE_CONTRAST
                 and base_v < VEGETATED)

    def phase(name: str, i: int) -> Phase:
        return Phase(name, _day(observed[i].date), _day(observed[i - 1].date))

    def greening(i: int) -> bool:  # the built-up index fell as vegetation rose
        return (observed[i].built_up < observed[i - 1].built_up
                and observed[i].vegetation > observed[i - 1].vegetation)

    phases: list[Phase] = []
    kind0 = found[0][1]
    vegetation = np.array([s.vegetation for s in observed])
    new_surface = _new_surface(observed, first)
    if np.nanmax(vegetation) >= VEGETATED and not new_surface:
        peak = int(np.nanargmax(vegetation))
        rose = vegetation[peak] - np.nanmin(vegetation[:peak + 1]) >= VEGETATION_SWING
        fell = vegetation[peak] - np.nanmin(vegetation[peak:]) >= VEGETATION_SWING
        if rose and fell or not fell:
            return Lifecycle("seasonal_vegetation", (), _day(observed[first].date),
                             _day(observed[first - 1].date))
        if new_surface is False:  # bare soil like the field's own or its neighbours'
            return Lifecycle("cultivation", (), _day(observed[first].date),
                             _day(observed[first - 1].date))
        change_type = "vegetation_loss"
        lost = next(i for i in range(peak + 1, len(observed))
                    if vegetation[i] <= vegetation[peak] - VEGETATION_SWING)
        phases.append(phase("vegetation_lost", lost))
    elif first < len(observed) - 1 and _returned(observed[-1], observed[first - 1]):
        return Lifecycle("transient", (), _day(observed[first].date),
                         _day(observed[first - 1].date))
    elif kind0 == "activity" and greening(first):
        return Lifecycle("seasonal_vegetation", (), _day(observed[first].date),
                         _day(observed[first - 1].date))
    elif structure and kind0 == "darkening":
        change_type = "destruction"
        phases.append(Phase("intact", _day(observed[0].date), None))
        phases.append(phase("destroyed", first))
        for i, kind in found[1:]:
            if observed[i].brightness - observed[i - 1].brightness < 0 or kind == "darkening":
                continue
            name = ("debris_removed" if observed[i].brightness >= observed[i].ring_brightness
                    else "flattened")
            if phases[-1].name != name and phases[-1].name != "debris_removed":
                phases.append(phase(name, i))
    elif structure and kind0 == "brightening":
        change_type = "demolition"
        phases.append(Phase("intact", _day(observed[0].date), None))
        phases.append(phase("demolished", first))
    else:
        if kind0 == "brightening" and observed[first].vegetation <= base_v + 0.05:
            phases.append(phase("cleared", first))
            start = next((i for i in range(first + 1, len(observed))
                          if _active(observed[i])), None)
        else:
            start = first
        if start is not None:
            phases.append(phase("under_construction", start))
            busy = [i for i in range(start + 1, len(observed)) if _active(observed[i])]
            last_busy = busy[-1] if busy else start
            if len(observed) - 1 - last_busy >= QUIET_DATES:
                phases.append(phase("completed", last_busy + 1))
        change_type = "new_construction" if start is not None else "land_clearing"
    return Lifecycle(change_type, tuple(phases), _day(observed[first].date),
                     _day(observed[first - 1].date))


def _returned(later: DateSignature, before: DateSignature) -> bool:
    """Whether ``later`` shows the site as it was ``before``: brightness, built-up index and
    contrast with the surroundings all within half the shift that makes an event
    (:data:`LEVEL_SHIFT`, :data:`BUILT_SHIFT`, :data:`STRUCTURE_CONTRAST`). A destroyed
    building graded to the old brightness has lost its contrast; a passing shadow has not.

    Brightness and built-up index are taken relative to the surrounding ring where both dates
    have one, so a scene-wide difference between the two acquisitions (sun, haze,
    calibration) does not hide the return."""
    brightness = later.brightness - before.brightness
    built = later.built_up - before.built_up
    rings = (later.ring_brightness, before.ring_brightness, later.ring_built_up,
             before.ring_built_up)
    if not np.isnan(rings).any():
        brightness -= later.ring_brightness - before.ring_brightness
        built -= later.ring_built_up - before.ring_built_up
    return (abs(brightness) < LEVEL_SHIFT / 2 and abs(built) < BUILT_SHIFT / 2
            and abs(later.contrast - before.contrast) < STRUCTURE_CONTRAST / 2)


def _new_surface(observed: list[DateSignature], first: int) -> bool | None:
    """Whether the ground after the first event is another surface than bare soil: its
    brightness, held from that event on (median of the dates since), differs by at least
    :data:`STRUCTURE_CONTRAST` from the bare soil of the place.

    A crop that is harvested or ploughed returns to the soil it grew on; construction, clearing
    or a flood in a field leaves scraped ground, roofs or water, which no season makes. The bare
    soil is the site's own, on the baseline dates on which it was not vegetated. A site
    vegetated on every date before the event has none; its surface after the event is then
    compared with the surrounding ring on the dates after it on which neither is vegetated, and
    only a surface brighter than that ground counts: the topsoil of a field is darker than the
    ground around it (organic matter and moisture lower soil reflectance; Baumgardner et al.
    1985, Adv. Agron. 38:1-44), scraped subsoil, concrete and roofs are brighter. None where
    neither comparison exists: nothing can be said.
    """
    bare = [s.brightness for s in observed[:first] if s.vegetation < VEGETATED]
    if bare:
        after = float(np.median([s.brightness for s in observed[first:]]))
        return abs(after - float(np.median(bare))) >= STRUCTURE_CONTRAST
    beside_bare = [s.brightness - s.ring_brightness for s in observed[first:]
                   if s.vegetation < VEGETATED and s.ring_vegetation < VEGETATED]
    if not beside_bare:
        return None
    return float(np.median(beside_bare)) >= STRUCTURE_CONTRAST


def _active(date: DateSignature) -> bool:
    return not np.isnan(date.activity) and date.activity >= CONSTRUCTION_ACTIVITY
