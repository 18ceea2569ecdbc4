"""Intake: read each delivery, fingerprint it, hold it to its contract, quarantine bad rows.

Identifiable rows live here (and in identity's pseudonymisation) and nowhere downstream.
Internals: `landing` (what is waiting, and what is not ingested), `source` (one landing file
opened safely), `readers/` (one per format), `ingest` (opening, conforming, typing), `chunks`
and `checks` (typed chunks and delivery-level rules), `validate` (the only module importing
Great Expectations), `quarantine`, `registry` (deliveries seen), `contract_docs` (contract
pages).

The surface loads lazily: listing deliveries or rendering contract pages should not pay for
importing Great Expectations (seconds).
"""

import importlib

_PUBLIC = {
    "receive_delivery": "validate",
    "inspect_delivery": "validate",
    "discard_accepted": "validate",
    "fingerprint_file": "ingest",
    "discover_deliveries": "landing",
    "printable": "names",
    "CONTAINED": "checks",
    "DeliveryRegistry": "registry",
    "render_page": "contract_docs",
    "assess_freshness": "freshness",
    "latest_by_arrival": "freshness",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
