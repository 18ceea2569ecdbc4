"""Disclosure control: generalisation hierarchies, the optimal k-anonymous generalisation
(ARX-style lattice search over `groupify` histograms), risk and utility, and cohort tables
with small-number protection. Sees tokens, derived fields and counts only.
"""

from transforms.disclosure.anonymise import anonymise
from transforms.disclosure.cellkey import perturb_release
from transforms.disclosure.definitions import check_definitions
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.disclosure.magnitude import MeasuredRelease, magnitude_rules, measure_tables
from transforms.disclosure.protect import ProtectedRelease, protect_release, worst_hidden_share
from transforms.disclosure.tabulate import columns_read, tabulate

__all__ = [
    "MeasuredRelease",
    "ProtectedRelease",
    "anonymise",
    "check_definitions",
    "columns_read",
    "load_hierarchies",
    "perturb_release",
    "magnitude_rules",
    "measure_tables",
    "protect_release",
    "tabulate",
    "worst_hidden_share",
]
