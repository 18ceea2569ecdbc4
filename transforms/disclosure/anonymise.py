"""Choose how coarse the shared data must be: ARX-style optimal full-domain generalisation.

`anonymise` finds the node of the generalisation lattice (one level per quasi-identifier) with
least ARX Loss whose records failing the privacy models (k-anonymity, l-diversity, t-closeness)
fit within the record-suppression limit, then generalises the records to it and removes the
failing ones. Records are reduced once to a histogram of distinct quasi-identifier
combinations, in one Polars query that codes and counts them without holding them (streamed
when the input is a LazyFrame, such as a Parquet scan); the search works on that histogram
(see `lattice` and `evaluation`). The released table is a lazy query over the input, built
from small per-QI lookups and a filter on the suppressed classes' keys, so it can be streamed
to Parquet (`AnonymisationResult.write_parquet`) without ever being held whole.

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
from transforms.disclosure import utility
from transforms.disclosure.evaluation import NodeCheck, NodeEvaluator
from transforms.disclosure.groupify import histogram, histogram_query, low_weights
from transforms.disclosure.hierarchy import Hierarchy, encode_frame, leaf_code
from transforms.disclosure.lattice import Lattice, find_optimum
from transforms.disclosure.privacy_models import PrivacyModels
from transforms.disclosure.risk import RiskSummary, summarise
from transforms.files import write_atomically


@dataclass
class AnonymisationResult:
    """What was decided and what it cost. The released rows are built only when asked for:
    `lazy_frame()`, `write_parquet(path)` (streamed) or `frame` (materialised, kept)."""

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
    _output: _Output | None = field(default=None, repr=False)

    def lazy_frame(self) -> pl.LazyFrame:
        """The released rows as a query over the input: each QI replaced by its generalised
        label, rows of failing classes removed, input order kept. Nothing is computed until
        it is collected or sunk; `write_parquet` streams it to a file."""
        return self._output.lazy_frame()

    @cached_property
    def frame(self) -> pl.DataFrame:
        """The released rows, materialised (see `lazy_frame`; prefer `write_parquet` for
        large tables)."""
        started = time.perf_counter()
        out = self._output.lazy_frame().collect(engine=self._output.engine)
        self.phases["output"] = round(time.perf_counter() - started, 6)
        return out

    def write_parquet(self, path) -> int:
        """Stream the released rows to a Parquet file, whole or not at all (the project's one
        atomic writer); returns the number of rows written."""
        started = time.perf_counter()
        if "frame" in self.__dict__:  # already materialised
            write_atomically(path, self.frame.write_parquet)
        else:
            lazy = self._output.lazy_frame()
            write_atomically(path, lambda tmp: lazy.sink_parquet(tmp, engine="streaming"))
        self.phases["output"] = round(time.perf_counter() - started, 6)
        return self.records - self.suppressed

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

    A LazyFrame is read twice, to count and then to build the output, so it must give the
    same rows both times (a file scan does; a query that samples or reads a changing source
    would not, and the output could then break k).
    """
    clock = _Clock()
    models = PrivacyModels(k=k, l=l, l_variant=l_variant, t=t, sensitive=sensitive)
    # Polars plans the counting over the source without materialising the records: a scanned
    # file is read in batches by the streaming engine, an in-memory frame is read in place.
    streaming = isinstance(frame, pl.LazyFrame)
    source = frame if streaming else frame.lazy()
    engine = "streaming" if streaming else "auto"
    schema = source.collect_schema()
    _validate(schema.names(), quasi_identifiers, hierarchies, max_suppression, sensitive)

    hierarchy_list, sensitive_values = _domains(
        source, schema, quasi_identifiers, hierarchies, sensitive, models, engine
    )
    code_exprs = [
        leaf_code(q, schema[q], h) for q, h in zip(quasi_identifiers, hierarchy_list, strict=True)
    ]
    sensitive_radix = 1
    if sensitive_values is not None:
        sensitive_radix = len(sensitive_values)
        code_exprs.append(_sensitive_code(sensitive, schema[sensitive], sensitive_values))
    else:
        code_exprs.append(pl.lit(0, dtype=pl.UInt32))
    clock.lap("encode")

    radices = tuple(h.domain_size for h in hierarchy_list) + (sensitive_radix,)
    base, uncoded = histogram_query(source, code_exprs, radices, engine)
    if uncoded:
        _raise_uncovered(source, quasi_identifiers, hierarchy_list, uncoded)
    records = int(base.counts.sum())
    if records == 0:
        raise NoDataError("there are no records to anonymise")
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

    failing_classes = None
    if suppressed:
        failing_classes = np.unique(cells.keys[stats.failing[ids]] // sensitive_radix)
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
        _output=_Output(
            source,
            schema,
            list(quasi_identifiers),
            hierarchy_list,
            chosen,
            cells.radices[:-1],
            failing_classes,
            engine,
        ),
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


def _validate(columns, quasi_identifiers, hierarchies, max_suppression, sensitive) -> None:
    """Report every configuration problem at once."""
    problems = []
    if not quasi_identifiers:
        problems.append("at least one quasi-identifier is needed")
    if len(set(quasi_identifiers)) != len(quasi_identifiers):
        problems.append("quasi-identifiers are listed more than once")
    missing = [q for q in quasi_identifiers if q not in columns]
    if missing:
        problems.append(f"quasi-identifier columns not in the data: {', '.join(missing)}")
    if sensitive is not None:
        if sensitive not in columns:
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


def _domains(source, schema, names, hierarchies, sensitive, models, engine):
    """Hierarchies expanded over the data's values where open (dates, postcodes), and the
    sorted values of the sensitive attribute if a model needs its distribution; one query
    over the source, and none when neither is needed."""
    opened = [q for q in names if hierarchies[q].is_open]
    wanted = [pl.col(q).cast(pl.String).unique().drop_nulls().implode() for q in opened]
    if models.needs_distribution:
        wanted += [
            pl.col(sensitive).null_count().alias("__nulls__"),
            pl.col(sensitive).cast(pl.String).unique().drop_nulls().sort().implode(),
        ]
    found = source.select(wanted).collect(engine=engine).row(0, named=True) if wanted else {}
    hierarchy_list = [
        hierarchies[q].covering(found[q]) if q in opened else hierarchies[q] for q in names
    ]
    if not models.needs_distribution:
        return hierarchy_list, None
    if found["__nulls__"]:
        raise ConfigError(
            f"{found['__nulls__']} values of sensitive column '{sensitive}' are missing"
        )
    return hierarchy_list, found[sensitive]


def _sensitive_code(name: str, dtype: pl.DataType, values: list[str]) -> pl.Expr:
    column = pl.col(name) if dtype == pl.String else pl.col(name).cast(pl.String)
    return column.cast(pl.Enum(values)).to_physical().cast(pl.UInt32)


def _raise_uncovered(source, names, hierarchies, uncoded: int) -> None:
    """Some records have a missing or uncovered value: let `encode_frame` name the columns
    (counts only). Only the quasi-identifier columns are read."""
    encode_frame(source.select(names).collect(), names, hierarchies)
    raise HierarchyError(f"{uncoded} records have values their hierarchies do not cover")


@dataclass(frozen=True)
class _Output:
    """The chosen node, and how to apply it to the source rows as one lazy query."""

    source: pl.LazyFrame
    schema: pl.Schema
    names: list[str]  # quasi-identifiers, in the order of `hierarchies`
    hierarchies: list[Hierarchy]
    levels: tuple[int, ...]
    radices: tuple[int, ...]  # of the chosen node's classes (QIs only)
    failing_classes: np.ndarray | None  # sorted class keys of the suppressed classes
    engine: str

    def lazy_frame(self) -> pl.LazyFrame:
        qis = self.names
        leaf = {
            q: leaf_code(q, self.schema[q], h) for q, h in zip(qis, self.hierarchies, strict=True)
        }
        out = self.source
        temporary: list[str] = []
        if self.failing_classes is not None and len(self.failing_classes):
            # The leaf codes serve both the filter and the labels: compute them once.
            temporary = [_unused_name(self.schema, f"__leaf_{i}__") for i in range(len(qis))]
            out = out.with_columns(leaf[q].alias(t) for q, t in zip(qis, temporary, strict=True))
            leaf = {q: pl.col(t) for q, t in zip(qis, temporary, strict=True)}
            # Class key of every row at the chosen node: per QI, a small lookup from leaf
            # index to (label index x place value), summed. Rows of failing classes go.
            key = None
            for q, h, lv, weight in zip(
                qis, self.hierarchies, self.levels, low_weights(self.radices), strict=True
            ):
                lookup = pl.Series(h.codes[lv].astype(np.int64) * weight, dtype=pl.Int64)
                term = pl.lit(lookup).gather(leaf[q])
                key = term if key is None else key + term
            failing = pl.Series(self.failing_classes, dtype=pl.Int64).implode()
            out = out.filter(~key.is_in(failing))
        labels = [
            pl.lit(pl.Series([str(v) for v in h.labels[lv][h.codes[lv]]], dtype=pl.String))
            .gather(leaf[q])
            .alias(q)
            for q, h, lv in zip(qis, self.hierarchies, self.levels, strict=True)
        ]
        out = out.with_columns(labels)
        return out.drop(temporary) if temporary else out


def _unused_name(schema: pl.Schema, name: str) -> str:
    while name in schema:
        name = f"_{name}"
    return name


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
