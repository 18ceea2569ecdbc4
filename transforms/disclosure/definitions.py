"""Check cohort definitions against the population's columns and the hierarchies, before any
data is read, reporting every problem at once with its place in `cohorts.yaml`."""

from __future__ import annotations

import polars as pl

from schemas.cohorts import CohortDefinitions
from schemas.errors import ConfigError
from transforms.disclosure.hierarchy import Hierarchy


def check_definitions(
    cohorts: CohortDefinitions, columns: dict[str, str], hierarchies: dict[str, Hierarchy]
) -> None:
    """`columns` maps every population column to its kind: text, number, bool or list."""
    problems: list[str] = []
    for t, table in enumerate(cohorts.tables):
        where = f"cohorts.yaml: tables[{t}] ({table.name})"
        if table.where:
            try:
                used = set(pl.sql_expr(table.where).meta.root_names())
            except Exception as exc:  # noqa: BLE001 - Polars raises several types for bad SQL
                problems.append(f"{where}.where: not a SQL expression ({type(exc).__name__})")
            else:
                if used - set(columns):
                    unknown = sorted(used - set(columns))
                    problems.append(f"{where}.where: unknown column(s) {unknown}")
        for d, dimension in enumerate(table.dimensions):
            at = f"{where}.dimensions[{d}] ({dimension.name})"
            kind = columns.get(dimension.source)
            if kind is None:
                problems.append(f"{at}: source '{dimension.source}' is not a population column")
                continue
            if dimension.level is not None:
                hierarchy = hierarchies.get(dimension.source)
                if hierarchy is None:
                    problems.append(f"{at}: level needs a hierarchy for '{dimension.source}'")
                elif dimension.level >= hierarchy.height:
                    problems.append(
                        f"{at}: level {dimension.level} is above the hierarchy's top level "
                        f"{hierarchy.height - 1}"
                    )
            if dimension.bands is not None and kind != "number":
                problems.append(f"{at}: bands need a whole-number column, '{dimension.source}' "
                                f"is {kind}")
            if dimension.expand is not None and kind != "list":
                problems.append(f"{at}: expand needs a list column, '{dimension.source}' is {kind}")
            if dimension.sensitive and dimension.expand is not None:
                problems.append(f"{at}: an expanded dimension cannot be sensitive")
        if table.measure is not None:
            kind = columns.get(table.measure.attribute)
            if kind != "number":
                found = "not a population column" if kind is None else f"{kind}"
                problems.append(
                    f"{where}.measure ({table.measure.column}): a {table.measure.kind} needs a "
                    f"numeric attribute, '{table.measure.attribute}' is {found}"
                )
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s) in cohort definitions: " + "; ".join(problems)
        )
