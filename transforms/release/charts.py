"""Charts for the anonymisation report, drawn with matplotlib as SVG text to inline in the HTML:
no JavaScript, no network, readable offline and printable. Counts and shares only.

Every chart is also given as a table next to it in the report, so nothing depends on reading
bars. Text stays text (`svg.fonttype: none`), and ids are prefixed per chart so that several
charts can live in one page.
"""

from __future__ import annotations

import io
import re
from itertools import count

import matplotlib
from matplotlib.figure import Figure

WIDTH_INCHES = 6.2  # fits the A4 text width (180 mm) with room to spare
BEFORE, AFTER, HIDDEN, BELOW_K = "#b1b4b6", "#1d70b8", "#d4351c", "#d4351c"
STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "cohortshare-report",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_serial = count(1)


def _svg(figure: Figure, title: str) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    prefix = f"chart{next(_serial)}-"
    text = re.sub(r'id="([^"]+)"', rf'id="{prefix}\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}\1"', text)
    title = title.replace("&", "&amp;").replace("<", "&lt;")
    return re.sub(r"(<svg[^>]*>)", rf'\1<title>{title}</title>', text, count=1).replace(
        "<svg ", '<svg role="img" class="chart" ', 1
    )


def _figure(rows: int) -> tuple[Figure, object]:
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH_INCHES, 0.8 + 0.3 * rows))
        axes = figure.add_subplot()
    return figure, axes


def _share(part: float | None, whole: float | None) -> float:
    return 100.0 * part / whole if part is not None and whole else 0.0


def risk_chart(before: dict, after: dict, k: int) -> str | None:
    """Re-identification risk before and after generalisation, as percentages."""
    if not before or not after:
        return None
    measures = [
        ("Alone in their group", "sample_uniques", True),
        (f"In a group of fewer than {k}", "records_below_k", True),
        ("Highest chance of being picked out", "prosecutor_max", False),
        ("Average chance of being picked out", "prosecutor_avg", False),
    ]

    def value(risk: dict, key: str, counted: bool) -> float:
        if counted:
            return _share(risk.get(key), risk.get("records"))
        return 100.0 * float(risk.get(key) or 0.0)

    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(len(measures) * 2)
        rows = range(len(measures))
        height = 0.38
        b = [value(before, key, c) for _, key, c in measures]
        a = [value(after, key, c) for _, key, c in measures]
        axes.barh([r - height / 2 for r in rows], b, height, color=BEFORE, label="before")
        axes.barh([r + height / 2 for r in rows], a, height, color=AFTER, label="after")
        for r, (vb, va) in enumerate(zip(b, a, strict=True)):
            axes.text(vb + 1, r - height / 2, f"{vb:.1f}%", va="center", fontsize=8)
            axes.text(va + 1, r + height / 2, f"{va:.1f}%", va="center", fontsize=8)
        axes.set_yticks(list(rows), [m[0] for m in measures])
        axes.invert_yaxis()
        axes.set_xlim(0, 112)
        axes.set_xlabel("% of people")
        axes.legend(loc="lower right", frameon=False)
    return _svg(figure, "Re-identification risk before and after generalisation")


def hidden_chart(group: str, values: dict[str, dict]) -> str | None:
    """Share of each value's people who sit in withheld or perturbed cells."""
    rows = [
        (str(name), int(v.get("hidden", 0)), int(v.get("people", 0)))
        for name, v in values.items()
        if isinstance(v, dict)
    ]
    if not rows:
        return None
    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(len(rows))
        shares = [_share(h, p) for _, h, p in rows]
        axes.barh(range(len(rows)), shares, 0.6, color=HIDDEN)
        for i, ((_, hidden, people), share) in enumerate(zip(rows, shares, strict=True)):
            axes.text(share + 0.5, i, f"{share:.1f}% ({hidden:,} of {people:,})", va="center",
                      fontsize=8)
        axes.set_yticks(range(len(rows)), [r[0] for r in rows])
        axes.invert_yaxis()
        axes.set_xlim(0, max(10.0, max(shares) * 1.6))
        axes.set_xlabel("% of the group's people in withheld or perturbed cells")
    return _svg(figure, f"People hidden by protection, by {group}")


def worst_hidden_chart(group: str, rows: list[tuple[str, float, str]]) -> str | None:
    """For each value of a group, the largest share of its units hidden in any one table."""
    if not rows:
        return None
    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(len(rows))
        shares = [100.0 * share for _, share, _ in rows]
        axes.barh(range(len(rows)), shares, 0.6, color=HIDDEN)
        for i, share in enumerate(shares):
            axes.text(share + 0.3, i, f"{share:.1f}%", va="center", fontsize=8)
        axes.set_yticks(range(len(rows)), [value for value, _, _ in rows])
        axes.invert_yaxis()
        axes.set_xlim(0, max(10.0, max(shares) * 1.3))
        axes.set_xlabel("largest % of its people hidden in any one table")
    return _svg(figure, f"People hidden by protection, by {group}")


def class_size_bands(k: int) -> list[tuple[int, int | None]]:
    """Bands of group size with a break at k: 1, 2-4, 5-(k-1), k-19, 20-49, 50-99, 100+."""
    edges = sorted({1, 2, 5, k, 20, 50, 100})
    return [(lo, hi - 1) for lo, hi in zip(edges, edges[1:], strict=False)] + [(edges[-1], None)]


def band_label(band: tuple[int, int | None]) -> str:
    lo, hi = band
    return f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")


def people_by_class_size(class_sizes: dict, k: int) -> list[tuple[str, int, bool]]:
    """(band, people in groups of that size, band below k) from {size: number of groups}."""
    out = []
    for band in class_size_bands(k):
        lo, hi = band
        people = sum(
            int(size) * int(groups)
            for size, groups in class_sizes.items()
            if int(size) >= lo and (hi is None or int(size) <= hi)
        )
        out.append((band_label(band), people, lo < k))
    return out


def class_size_chart(before: dict, after: dict, k: int) -> str | None:
    """How many people share their combination of quasi-identifiers with how many others."""
    if not before or not after:
        return None
    b = people_by_class_size(before, k)
    a = people_by_class_size(after, k)
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH_INCHES, 2.6))
        axes = figure.add_subplot()
        positions = range(len(b))
        width = 0.4
        axes.bar([p - width / 2 for p in positions], [x[1] for x in b], width, color=BEFORE,
                 label="before")
        axes.bar([p + width / 2 for p in positions], [x[1] for x in a], width, color=AFTER,
                 label="after")
        axes.set_xticks(list(positions), [x[0] for x in b])
        for tick, (_, _, below) in zip(axes.get_xticklabels(), b, strict=True):
            if below:
                tick.set_color(BELOW_K)
        axes.set_xlabel(f"people sharing one combination (group size; red: below k = {k})")
        axes.set_ylabel("people")
        axes.legend(frameon=False)
    return _svg(figure, "People by the size of the group they share their combination with")


def table_hidden_chart(tables: list[dict]) -> str | None:
    """Share of each table's units that sit in withheld cells."""
    rows = [
        (t["table"], int(t["units_in_suppressed_cells"]),
         int(t["units_in_suppressed_cells"]) + int(t["units_in_published_cells"]))
        for t in tables
        if "units_in_suppressed_cells" in t and "units_in_published_cells" in t
    ]
    if not rows:
        return None
    return hidden_chart("table", {name: {"hidden": h, "people": p} for name, h, p in rows})
