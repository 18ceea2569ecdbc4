"""Disclosure control: generalisation hierarchies, the optimal k-anonymous generalisation
(ARX-style lattice search over `groupify` histograms), risk and utility, and cohort tables
with small-number protection. Sees tokens, derived fields and counts only.
"""

from transforms.disclosure.anonymise import anonymise
from transforms.disclosure.hierarchy import load_hierarchies
from transforms.disclosure.tabulate import tabulate

__all__ = ["anonymise", "load_hierarchies", "tabulate"]
