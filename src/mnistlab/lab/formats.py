"""Number formats shared by the HTML report and the CLI's tables.

Kept free of heavy imports: the CLI loads it at start-up.
"""

from __future__ import annotations

__all__ = ["format_p", "format_size"]


def format_size(n: float | None) -> str:
    """Bytes as people read them: "812 B", "96.3 kB", "2.1 MB"; a dash when unknown."""
    if n is None:
        return "–"
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_p(p: float, digits: int = 3) -> str:
    """A p-value in ``digits`` significant digits; one under 0.05 (stats.ALPHA) that would round to 0.05 reads
    "<0.05": the number shown never contradicts the verdict drawn from it ("better" beside "0.05"); one that
    underflowed to 0 reads "<1e-323"."""
    if p == 0:  # a p-value is never 0: one under about 5e-324 underflows to it, and "0" would claim certainty
        return "<1e-323"
    text = f"{p:.{digits}g}"
    return "<0.05" if p < 0.05 <= float(text) else text
