"""A small inline SVG bar chart of requests per UTC day, for the admin's key and customer
pages: a picture reads better than a table when the question is "is this key still used?"
before revoking it. Errors are drawn in red on top of each day's bar. Pure functions over
:class:`envroute.stores.UsageDay`; no JavaScript, no external assets (the admin's CSP and
offline installs stay happy).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from django.utils.html import format_html
from django.utils.safestring import SafeString

from envroute.stores import UsageDay

DAYS = 30
WIDTH, HEIGHT, BAR = 240, 40, 8


def usage_chart(days: Sequence[UsageDay], today: date, span: int = DAYS) -> SafeString:
    """An SVG of the last ``span`` days ending ``today``, with totals as its title."""
    by_day = {d.date: d for d in days}
    peak = max([d.requests for d in days] or [0]) or 1
    step = WIDTH / span
    bars = []
    for index in range(span):
        day = by_day.get(today - timedelta(days=span - 1 - index))
        if day is None or not day.requests:
            continue
        height = max(1.0, HEIGHT * day.requests / peak)
        errors = HEIGHT * day.errors / peak if day.errors else 0.0
        x = index * step
        bars.append(format_html(
            '<rect x="{}" y="{}" width="{}" height="{}" fill="#417690">'
            "<title>{}: {} requests, {} errors</title></rect>",
            f"{x:.1f}", f"{HEIGHT - height:.1f}", f"{min(BAR, step - 1):.1f}",
            f"{height:.1f}", day.date.isoformat(), day.requests, day.errors))
        if errors:
            bars.append(format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="#ba2121"/>',
                f"{x:.1f}", f"{HEIGHT - errors:.1f}", f"{min(BAR, step - 1):.1f}",
                f"{errors:.1f}"))
    total = sum(d.requests for d in days)
    failed = sum(d.errors for d in days)
    svg = format_html(
        '<svg class="envroute-usage" role="img" width="{}" height="{}" viewBox="0 0 {} {}" '
        'aria-label="{} requests, {} errors in {} days">{}</svg>',
        WIDTH, HEIGHT, WIDTH, HEIGHT, total, failed, span,
        SafeString("".join(bars)))
    return format_html("{}<br>{} requests, {} errors in the last {} days (UTC)", svg, total,
                       failed, span)
