"""Choose how coarse the shared data must be: ARX-style optimal full-domain generalisation.

`anonymise` finds the node of the generalisation lattice (one level per quasi-identifier) with
least ARX Loss whose records failing the privacy models (k-anonymity, l-diversity, t-closeness)
fit within the record-suppression limit, then generalises the records to it and removes the
failing ones. Records are reduced once to a histogram of distinct quasi-identifier
combinations; the search works on that histogram (see `lattice` and `evaluation`).

This module sees identifiable rows; nothing it returns through `to_dict` or raises contains a
cell value, only counts, levels and column names.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from schemas.errors import ConfigError, DisclosureError, HierarchyError, NoDataError
from transforms import utility
from transforms.evaluation import NodeCheck, NodeEvaluator
from transforms.groupify import histogram, histogram_frame, pack
from transforms.hierarchy import Hierarchy, encode_frame
from transforms.lattice import Lattice, find_optimum
from transforms.privacy_models import PrivacyModels
from transforms.risk import RiskSummary, summarise


@dataclass
class AnonymisationResult:
    """What was decided and what it cost. `frame` is built on first use."""

    quasi_identifiers: list[str]
    levels: dict[str, int]
    loss: float
    loss_per_qi: dict[str, float]
    suppressed: int
    records: int
    k_achieved: int
    models: PrivacyModels
    max_suppression: float
    risk_before: RiskSummary
    risk_after: RiskSummary
    metrics: dict
    search: dict
    seconds: float
    phases: dict
    l_achieved: float | None = None
    _source: pl.DataFrame | None = field(default=None, repr=False)
    _output: _Output | None = field(default=None, repr=False)

    @cached_property
    def frame(self) -> pl.DataFrame:
        """The input rows, each QI replaced by its generalised label, failing rows removed."""
        started = time.perf_counter()
        out = self._output.apply(self._source, self.quasi_identifiers)
        self.phases["output"] = round(time.perf_counter() - started, 6)
        return out

    def to_dict(self) -> dict:
        """JSON-ready summary: levels, counts and measures, never a cell value."""
        return {
            "quasi_identifiers": list(self.quasi_identifiers),
            "models": self.models.describe(),
            "max_suppression": self.max_suppression,
            "levels": dict(self.levels),
            "loss": self.loss,
            "loss_per_qi": dict(self.loss_per_qi),
            "records": self.records,
            "suppressed": self.suppressed,
            "released": self.records - self.suppressed,
            "k_achieved": self.k_achieved,
            "l_achieved": self.l_achieved,
            "metrics": dict(self.metrics),
            "risk_before": self.risk_before.to_dict(),
            "risk_after": self.risk_after.to_dict(),
            "search": dict(self.search),
            "seconds": self.seconds,
            "phases": dict(self.phases),
        }


def anonymise(
    frame: pl.DataFrame | pl.LazyFrame,
    quasi_identifiers: list[str],
    hierarchies: dict[str, Hierarchy],
    k: int,
    max_suppression: float,
    l: int | None = None,  # noqa: E741 - the model's own name
    sensitive: str | None = None,
    *,
    l_variant: str = "distinct",
    t: float | None = None,
    population: pl.DataFrame | pl.LazyFrame | None = None,
) -> AnonymisationResult:
    """Generalise `frame` to the least-Loss node meeting the models within the limit.

    `max_suppression` is the share of records (0 to 1) that may be removed. `population`, if
    given, is a table with the same quasi-identifier columns used for journalist risk.
    """
    clock = _Clock()
    models = PrivacyModels(k=k, l=l, l_variant=l_variant, t=t, sensitive=sensitive)
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    _validate(frame, quasi_identifiers, hierarchies, max_suppression, sensitive)
    records = frame.height
    if records == 0:
        raise NoDataError("there are no records to anonymise")

    hierarchy_list = [_covering(hierarchies[q], frame[q]) for q in quasi_identifiers]
    codes = encode_frame(frame, quasi_identifiers, hierarchy_list)
    codes, sensitive_radix = _with_sensitive_codes(codes, frame, sensitive, models)
    clock.lap("encode")

    radices = tuple(h.domain_size for h in hierarchy_list) + (sensitive_radix,)
    base = histogram_frame(codes, radices)
    clock.lap("histogram")

    max_outliers = math.floor(max_suppression * records + 1e-9)
    overall = None
    if models.t is not None:
        overall = (
            np.bincount(base.keys % sensitive_radix, weights=base.counts, minlength=sensitive_radix)
            / records
        )
    evaluator = NodeEvaluator(base, hierarchy_list, sensitive_radix, models, overall, max_outliers)
    base_columns = base.columns()
    bounds_per_qi = [
        utility.generalisation_loss(
            np.bincount(col, weights=base.counts, minlength=h.domain_size), h
        )
        for col, h in zip(base_columns[:-1], hierarchy_list, strict=True)
    ]
    lattice = Lattice([h.height for h in hierarchy_list])
    node_bounds = lattice.node_bounds(bounds_per_qi)

    def loss_of(check: NodeCheck) -> float:
        per_qi = utility.node_losses(
            check.levels,
            bounds_per_qi,
            check.outliers,
            check.suppressed_share,
            records,
            hierarchy_list,
        )
        return utility.aggregate(per_qi)

    clock.lap("bounds")
    outcome = find_optimum(lattice, node_bounds, evaluator.check, loss_of)
    clock.lap("search")
    if outcome is None:
        raise DisclosureError(
            f"no generalisation of {len(quasi_identifiers)} quasi-identifiers meets "
            f"{_describe(models)} with at most {max_outliers} of {records} records suppressed"
        )

    chosen = outcome.levels
    check = outcome.check or evaluator.check(chosen)
    per_qi = utility.node_losses(
        chosen, bounds_per_qi, check.outliers, check.suppressed_share, records, hierarchy_list
    )
    cells, ids, stats = evaluator.stats(chosen)
    released = ~stats.failing
    sizes_after = stats.sizes[released]
    _, _, stats_before = evaluator.stats(tuple(0 for _ in chosen))
    population_sizes = None
    if population is not None:
        population_sizes = _population_sizes(
            population,
            quasi_identifiers,
            hierarchy_list,
            chosen,
            cells,
            ids,
            released,
            sensitive_radix,
        )
    risk_before = summarise(stats_before.sizes, models.k)
    risk_after = summarise(sizes_after, models.k, population_sizes)
    suppressed = check.outliers
    l_achieved = None
    if models.l is not None and released.any():
        l_achieved = float(
            stats.distinct[released].min()
            if models.l_variant == "distinct"
            else 2 ** stats.entropy[released].min()
        )

    failing_keys = cells.keys[stats.failing[ids]] if suppressed else None
    clock.lap("result")

    metrics = {
        "loss": outcome.loss,
        "discernibility": utility.discernibility(sizes_after, suppressed, records),
        **utility.average_class_size(sizes_after, models.k),
        "precision": utility.precision(
            chosen, [h.height for h in hierarchy_list], suppressed, records
        ),
        "classes": int(released.sum()),
    }
    search = {
        "lattice_nodes": len(lattice),
        "nodes_checked": outcome.checked,
        "nodes_tagged": outcome.tagged,
        "distinct_combinations": len(base),
        "max_suppressed_records": max_outliers,
    }
    return AnonymisationResult(
        quasi_identifiers=list(quasi_identifiers),
        levels=dict(zip(quasi_identifiers, chosen, strict=True)),
        loss=outcome.loss,
        loss_per_qi={q: float(v) for q, v in zip(quasi_identifiers, per_qi, strict=True)},
        suppressed=suppressed,
        records=records,
        k_achieved=int(sizes_after.min()) if len(sizes_after) else 0,
        models=models,
        max_suppression=max_suppression,
        risk_before=risk_before,
        risk_after=risk_after,
        metrics=metrics,
        search=search,
        seconds=clock.total(),
        phases=clock.phases,
        l_achieved=l_achieved,
        _source=frame,
        _output=_Output(codes, hierarchy_list, chosen, cells.radices, failing_keys),
    )


# ----------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 6)
        self.last = now

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 6)


def _describe(models: PrivacyModels) -> str:
    return ", ".join(f"{k}={v}" for k, v in models.describe().items())


def _validate(frame, quasi_identifiers, hierarchies, max_suppression, sensitive) -> None:
    """Report every configuration problem at once."""
    problems = []
    if not quasi_identifiers:
        problems.append("at least one quasi-identifier is needed")
    if len(set(quasi_identifiers)) != len(quasi_identifiers):
        problems.append("quasi-identifiers are listed more than once")
    missing = [q for q in quasi_identifiers if q not in frame.columns]
    if missing:
        problems.append(f"quasi-identifier columns not in the data: {', '.join(missing)}")
    if sensitive is not None:
        if sensitive not in frame.columns:
            problems.append(f"sensitive column '{sensitive}' is not in the data")
        if sensitive in quasi_identifiers:
            problems.append(f"column '{sensitive}' cannot be both quasi-identifier and sensitive")
    if not isinstance(max_suppression, int | float) or not 0 <= max_suppression <= 1:
        problems.append("max_suppression must be a share between 0 and 1")
    if problems:
        raise ConfigError("; ".join(problems))
    no_hierarchy = [q for q in quasi_identifiers if q not in hierarchies]
    if no_hierarchy:
        raise HierarchyError(f"no hierarchy declared for: {', '.join(no_hierarchy)}")


def _covering(hierarchy: Hierarchy, column: pl.Series) -> Hierarchy:
    if not hierarchy.is_open:
        return hierarchy
    return hierarchy.covering(column.cast(pl.String).unique().drop_nulls().to_list())


def _with_sensitive_codes(codes: pl.DataFrame, frame, sensitive, models):
    """Append the sensitive attribute's codes (or a constant 0) as the last code column."""
    if not models.needs_distribution:
        return codes.with_columns(pl.lit(0, dtype=pl.UInt32).alias(SENSITIVE_CODE)), 1
    column = frame[sensitive]
    if column.null_count():
        raise ConfigError(
            f"{column.null_count()} values of sensitive column '{sensitive}' are missing"
        )
    column = column.cast(pl.String)
    values = column.unique().sort()
    sens = column.cast(pl.Enum(values)).to_physical().cast(pl.UInt32).alias(SENSITIVE_CODE)
    return codes.with_columns(sens), len(values)


SENSITIVE_CODE = "__sensitive_code__"


@dataclass(frozen=True)
class _Output:
    """What is needed to build the released rows once a node is chosen."""

    codes: pl.DataFrame  # leaf index per QI, sensitive code last
    hierarchies: list[Hierarchy]
    levels: tuple[int, ...]
    radices: tuple[int, ...]
    failing_keys: np.ndarray | None

    def apply(self, source: pl.DataFrame, names: list[str]) -> pl.DataFrame:
        node_codes = [
            h.codes[lv][self.codes[name].to_numpy()]
            for name, h, lv in zip(names, self.hierarchies, self.levels, strict=True)
        ]
        replaced = [
            pl.Series(name, [str(v) for v in h.labels[lv]], dtype=pl.String).gather(c)
            for name, c, h, lv in zip(names, node_codes, self.hierarchies, self.levels, strict=True)
        ]
        out = source.with_columns(replaced)
        if self.failing_keys is not None and len(self.failing_keys):
            sens = self.codes[SENSITIVE_CODE].to_numpy()
            row_keys = pack(node_codes + [sens], self.radices)
            failing = pl.Series(row_keys).is_in(pl.Series(self.failing_keys))
            out = out.filter(~failing)
        return out


def _population_sizes(
    population, names, hierarchies, levels, cells, ids, released, sensitive_radix
):
    """Population class size of every released sample class (for journalist risk)."""
    if isinstance(population, pl.LazyFrame):
        population = population.collect()
    missing = [q for q in names if q not in population.columns]
    if missing:
        raise ConfigError(f"population table lacks quasi-identifiers: {', '.join(missing)}")
    leaf_codes = encode_frame(population, names, hierarchies)
    pop_codes = [
        h.codes[lv][leaf_codes[q].to_numpy()]
        for q, h, lv in zip(names, hierarchies, levels, strict=True)
    ]
    qi_radices = cells.radices[:-1]
    pop = histogram(pop_codes, qi_radices)
    class_keys = cells.keys[np.r_[0, np.flatnonzero(np.diff(ids)) + 1]] // sensitive_radix
    class_keys = class_keys[released]
    position = np.clip(np.searchsorted(pop.keys, class_keys), 0, max(len(pop) - 1, 0))
    found = pop.keys[position] == class_keys
    if not found.all():
        raise ConfigError(
            f"the population table lacks {int((~found).sum())} classes present in the data"
        )
    return pop.counts[position]


__all__ = ["AnonymisationResult", "anonymise"]
