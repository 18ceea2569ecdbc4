"""Release-wide protection: each table protected on its own, then the independent audit says
where the tables together (and with the last release) give a cell away, and more is withheld
until it finds nothing. The scenarios are the audit's own (tests/unit/test_differencing.py)."""

import polars as pl
import pytest

from schemas.cohorts import CohortDefinitions
from schemas.errors import DisclosureError
from tests.unit.test_differencing import (
    BY_AGE,
    BY_SEX,
    BY_WARD,
    EARLIER,
    EXACT,
    LATER,
    TWO,
    WARDS,
    publish,
)
from transforms.disclosure import protect_release
from transforms.release.differencing import Auditor, PreviousRelease, audit_release


def _withheld(frame: pl.DataFrame) -> set[tuple]:
    dims = [c for c in frame.columns if c not in ("people", "withheld")]
    return set(frame.filter(pl.col("withheld")).select(dims).rows())


def test_two_tables_sharing_a_margin_are_protected_together():
    both = CohortDefinitions(tables=(BY_SEX, BY_AGE))
    # Alone, each table withholds only its small cell, and the pair gives it back.
    alone = protect_release(WARDS, both, EXACT, {})
    assert audit_release(WARDS, both, {}, alone.tables, EXACT).failures
    auditor = Auditor(WARDS, both, {}, EXACT)
    protected = protect_release(WARDS, both, EXACT, {}, lambda t: auditor.audit(t).failures)
    assert protected.rounds >= 2 and protected.cells_withheld_for_the_release >= 1
    assert ("W1", "F") in _withheld(protected.tables[BY_SEX.name])
    assert audit_release(WARDS, both, {}, protected.tables, EXACT).failures == []
    # Only what the audit asked for: the people hidden are the small cell and its partners.
    hidden = protected.hidden[BY_SEX.name]["dimensions"]["sex"]
    assert sum(v["hidden"] for v in hidden.values()) < WARDS.height


def test_the_last_release_is_taken_into_account():
    previous = PreviousRelease(
        EARLIER, {BY_SEX.name: publish(EARLIER, BY_SEX), BY_WARD.name: publish(EARLIER, BY_WARD)}
    )
    auditor = Auditor(LATER, TWO, {}, EXACT, previous)
    protected = protect_release(LATER, TWO, EXACT, {}, lambda t: auditor.audit(t).failures)
    assert audit_release(LATER, TWO, {}, protected.tables, EXACT, previous).failures == []
    # Without the last release in view, the newcomer's cell would have been left exposed.
    naive = protect_release(LATER, TWO, EXACT, {},
                            lambda t: Auditor(LATER, TWO, {}, EXACT).audit(t).failures)
    assert audit_release(LATER, TWO, {}, naive.tables, EXACT, previous).failures


def test_an_audit_that_never_passes_stops_the_release():
    both = CohortDefinitions(tables=(BY_SEX, BY_AGE))

    class Stubborn:
        table, cell = BY_SEX.name, {"ward": "W1", "sex": "F"}

    with pytest.raises(DisclosureError, match="still finds 1 withheld or perturbed cell"):
        protect_release(WARDS, both, EXACT, {}, lambda tables: [Stubborn()])


def test_protection_frees_the_smallest_cell_the_audit_names_as_binding():
    """W1's 3 women are pinned by W1's men (30) in one table and W1's ages (18 and 15) in the
    other. The audit names those published cells; withholding the smallest (W1, 40-59: 15) is
    enough, where withholding the exposed cell's own neighbour would hide W1's 30 men."""
    both = CohortDefinitions(tables=(BY_SEX, BY_AGE))
    exposed = Auditor(WARDS, both, {}, EXACT).audit(protect_release(WARDS, both, EXACT, {}).tables)
    (failure,) = exposed.failures
    named = {(table, tuple(cell.values())) for table, cell in failure.binding}
    assert named == {
        (BY_SEX.name, ("W1", "M")),
        (BY_AGE.name, ("W1", "20-39")),
        (BY_AGE.name, ("W1", "40-59")),
    }
    auditor = Auditor(WARDS, both, {}, EXACT)
    protected = protect_release(WARDS, both, EXACT, {}, lambda t: auditor.audit(t).failures)
    assert _withheld(protected.tables[BY_SEX.name]) == {("W1", "F")}
    assert _withheld(protected.tables[BY_AGE.name]) == {("W1", "40-59")}
    assert protected.cells_withheld_for_the_release == 1


def test_cells_the_last_release_withheld_are_withheld_again():
    """Publishing now a cell withheld last month (same people) would give last month's
    primary cell away; starting from last month's pattern keeps both releases consistent."""
    both = CohortDefinitions(tables=(BY_SEX, BY_AGE))
    last = {
        BY_SEX.name: publish(WARDS, BY_SEX, {("W1", "F"), ("W1", "M")}),
        BY_AGE.name: publish(WARDS, BY_AGE),
    }
    auditor = Auditor(WARDS, both, {}, EXACT, PreviousRelease(WARDS, last))
    protected = protect_release(
        WARDS, both, EXACT, {}, lambda t: auditor.audit(t).failures, previous=last
    )
    assert _withheld(protected.tables[BY_SEX.name]) == {("W1", "F"), ("W1", "M")}
    assert _withheld(protected.tables[BY_AGE.name]) == set()
    assert protected.rounds == 1  # the audit passed the pattern as it started
    assert protected.cells_withheld_again == 1
