"""How the benchmark's reports, pictures and pages write numbers: rates, times, ratios, sizes.

One module that imports nothing of the benchmark's, so that the tables (``_report``), the
pictures (``_plots``) and the pages (``_docs``) format alike without importing each other.
"""

from __future__ import annotations

__all__ = ("fmt_rate", "fmt_ratio", "fmt_size", "fmt_us")


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def fmt_us(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} s"
    if v >= 1e4:
        return f"{v / 1e3:.0f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.1f} ms"
    if v >= 10:
        return f"{v:.0f} us"
    return f"{v:.1f} us"


def _fmt_num(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return ""
    if v >= 100:
        return f"{v:,.0f}x"
    if v >= 10:
        return f"{v:.1f}x"
    return f"{v:.2f}x"


def fmt_size(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"
