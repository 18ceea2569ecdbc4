"""Newest data, stated: the newest delivery is the one that arrived last, and a department whose
newest extract is overdue under its contract, or that never delivered, is flagged."""

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from schemas.contract import load_contracts
from schemas.delivery import DeliveryOutcome
from transforms.identity import latest_tokens, write_tokens
from transforms.intake import DeliveryRegistry, assess_freshness, latest_by_arrival

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = load_contracts(REPO / "data_contracts")
TODAY = date(2026, 11, 27)


def _outcome(department: str, fingerprint: str, extract: date, status="accepted"):
    return DeliveryOutcome(
        delivery_id=fingerprint * 64 if len(fingerprint) == 1 else fingerprint,
        department=department,
        file_name=f"{department}_{extract:%Y%m%d}.csv",
        contract_id=f"urn:cohortshare:contract:{department}",
        contract_version="1.0.0",
        extract_date=extract,
        status=status,
        rows_received=3,
        rows_accepted=0 if status == "rejected" else 3,
        rows_quarantined=3 if status == "rejected" else 0,
        rejection="file rule broken" if status == "rejected" else None,
    )


def test_a_corrected_file_of_the_same_day_replaces_the_first_whatever_its_hash(tmp_path):
    # The correction's fingerprint sorts first by name: name order would keep the wrong file.
    first = _outcome("housing", "f", TODAY)
    correction = _outcome("housing", "0", TODAY)
    registry = DeliveryRegistry(tmp_path)
    for outcome in (first, correction):
        write_tokens(tmp_path, outcome, pl.DataFrame({"x": [1]}), "key-1", {})
        registry.record(outcome)

    (meta,) = latest_tokens(tmp_path).values()
    assert meta["delivery_id"] == correction.delivery_id
    assert latest_by_arrival(registry.all())["housing"] == correction


def test_a_rejected_later_delivery_does_not_replace_the_accepted_one():
    accepted = _outcome("benefits", "a", TODAY)
    rejected = _outcome("benefits", "b", TODAY, status="rejected")
    assert latest_by_arrival([accepted, rejected]) == {"benefits": accepted}


def test_missing_and_overdue_departments_are_flagged_with_their_extract_dates():
    housing = CONTRACTS["housing"]  # weekly, latency 14 days: 21 days allowed
    allowed = 7 + housing.max_latency_days
    latest = {
        "housing": _outcome("housing", "a", TODAY - timedelta(days=allowed + 1)),
        "benefits": _outcome("benefits", "b", TODAY - timedelta(days=3)),
        "council_tax": _outcome("council_tax", "c", TODAY - timedelta(days=31 + 35)),
        "adult_social_care": _outcome("adult_social_care", "d", TODAY - timedelta(days=31 + 36)),
    }
    verdicts = {v.department: v for v in assess_freshness(CONTRACTS, latest, TODAY)}

    assert set(verdicts) == set(CONTRACTS)
    assert verdicts["childrens_services"].status == "missing"
    assert verdicts["housing"].status == "stale"
    assert verdicts["housing"].allowed_days == allowed
    assert verdicts["housing"].extract_date == TODAY - timedelta(days=allowed + 1)
    assert verdicts["benefits"].status == "fresh"
    # The boundary: exactly the allowed age is fresh, a day more is stale.
    assert verdicts["council_tax"].status == "fresh"
    assert verdicts["adult_social_care"].status == "stale"
    assert "no accepted delivery" in verdicts["childrens_services"].describe()


def test_an_alert_names_the_department_and_the_overdue_extract_date():
    housing = CONTRACTS["housing"]  # weekly, latency 14 days
    newest = TODAY - timedelta(days=7 + housing.max_latency_days + 1)
    latest = {
        "housing": _outcome("housing", "a", newest),
        "benefits": _outcome("benefits", "b", TODAY),
    }
    verdicts = {v.department: v for v in assess_freshness(CONTRACTS, latest, TODAY)}

    stale = verdicts["housing"]
    assert stale.overdue_extract() == newest + timedelta(days=7)
    assert stale.due_by() == TODAY - timedelta(days=1)
    assert stale.lateness() == (
        f"housing: extract of {newest + timedelta(days=7)} overdue since "
        f"{TODAY - timedelta(days=1)} (newest {newest}, 22 day(s) old, allowed 21)"
    )
    assert verdicts["childrens_services"].lateness() == (
        "childrens_services: no accepted delivery yet"
    )
    fresh = verdicts["benefits"]
    assert fresh.lateness() == "" and fresh.overdue_extract() is None and fresh.due_by() is None
