"""
C{/stats}, a page for people, and C{/stats.json}, the same figures for programs: both made from
L{TrackerStats.snapshot}. The page is one HTML document with its chart drawn as inline SVG on the
server: no script, no style sheet or font fetched from anywhere.
"""

from __future__ import annotations

import json
import math
import time
from html import escape
from typing import Any

from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from tracker.ops.stats import TrackerStats

#: The page reloads itself this often, in seconds (a meta refresh: no script needed).
REFRESH = 30
#: Rows of refusal reasons shown.
REASONS_SHOWN = 10

ANNOUNCE_COLOUR = "#2563eb"
SCRAPE_COLOUR = "#ea580c"


class FiguresResource(Resource):
    """
    A page of the tracker's figures (C{/stats}, C{/stats.json}, C{/metrics}): GET and HEAD
    only. Any other method gets 405, where plain twisted.web answers most of them (PUT, DELETE,
    anything it does not know) with 501, which monitors read as an outage.
    """

    # Not a leaf: anything below it (stats/x) is not found, rather than the page again.
    isLeaf = False

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render(self, request: Request) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"method not allowed: use GET\n"
        return super().render(request)


class _Figures(FiguresResource):
    content_type = b""

    def __init__(self, stats: TrackerStats) -> None:
        super().__init__()
        self._stats = stats

    def body(self, snapshot: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"no-store")
        return self.body(self._stats.snapshot())

    def render_HEAD(self, request: Request) -> bytes:
        body = self.render_GET(request)
        # Twisted sends no body for HEAD, and logs a warning for one returned.
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""


class StatsJSONResource(_Figures):
    """C{/stats.json}: L{TrackerStats.snapshot} as JSON."""

    content_type = b"application/json"

    def body(self, snapshot: dict[str, Any]) -> bytes:
        return json.dumps(snapshot, indent=1).encode("utf-8")


class StatsPageResource(_Figures):
    """C{/stats}: the figures as a page."""

    content_type = b"text/html; charset=utf-8"

    def body(self, snapshot: dict[str, Any]) -> bytes:
        return render_page(snapshot).encode("utf-8")


def render_page(s: dict[str, Any]) -> str:
    """The whole page for one snapshot."""
    samples = s["history"]["samples"]
    last = samples[-1] if samples else {"announces_per_second": 0, "scrapes_per_second": 0}
    tracker = s["tracker"]
    counted = s["swarms_counted_at"]
    cards = "".join(
        (
            _card("torrents", "Torrents", s["torrents"]),
            _card("peers", "Peers", s["peers"]),
            _card("seeders", "Seeders", s["seeders"]),
            _card("leechers", "Leechers", s["leechers"]),
            _card("downloaded", "Downloaded", s["downloaded"]),
            _card("websocket-connections", "Browsers connected", s["websocket"]["connections"]),
            _card("announce-rate", "Announces / s", last["announces_per_second"], 1),
            _card("scrape-rate", "Scrapes / s", last["scrapes_per_second"], 1),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH}">
<title>Tracker statistics</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>Tracker statistics</h1>
<p class="meta">tracker {escape(tracker["version"])} on {escape(tracker["interpreter"])},
up {_duration(tracker["uptime_seconds"])} &middot; {_clock(s["time"])} UTC &middot;
swarms counted {_clock(counted) + " UTC" if counted else "not yet"} &middot;
<a href="stats.json">stats.json</a> &middot; <a href="metrics">metrics</a></p>
{_database_line(s["database"])}</header>
<main>
<section class="cards">{cards}</section>
<section class="panel">
<h2>Requests per second, last hour</h2>
{render_chart(samples, s["time"])}
</section>
<div class="columns">
<section class="panel wide">
<h2>Largest torrents</h2>
{_top_table(s["top_torrents"])}
</section>
<section class="panel">
<h2>Requests answered</h2>
{_requests_table(s["requests"])}
<h2>Refused, by reason</h2>
{_refusals_table(s["refusals"])}
</section>
</div>
</main>
</body>
</html>
"""


_STYLE = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb;
  --panel: #ffffff; --back: #f3f4f6; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--back); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 20px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 10px; color: var(--muted); font-weight: 600;
  text-transform: uppercase; letter-spacing: .04em; }
h2 + table + h2, table + h2 { margin-top: 22px; }
.meta { color: var(--muted); margin: 0 0 16px; font-size: 13px; }
a { color: #1d4ed8; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin-bottom: 16px; }
.card, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; }
.card { padding: 12px 16px; }
.card .label { color: var(--muted); font-size: 13px; }
.card .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.panel { padding: 16px 18px; margin-bottom: 16px; }
.columns { display: grid; grid-template-columns: 2fr 1fr; gap: 16px; }
.columns .panel { margin-bottom: 0; }
@media (max-width: 900px) { .columns { grid-template-columns: 1fr; } }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: right; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; }
th:first-child, td:first-child { text-align: left; }
td.hash { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
td.reason { text-align: left; }
tbody tr:last-child td { border-bottom: none; }
td { font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); margin: 8px 0; }
.alert { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; border-radius: 10px;
  padding: 10px 16px; margin: 0 0 16px; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: #6b7280; }
.legend { display: flex; gap: 18px; font-size: 13px; margin-top: 6px; color: var(--muted); }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px;
  vertical-align: -1px; margin-right: 6px; }
"""


def _card(key: str, label: str, value: float, decimals: int = 0) -> str:
    shown = f"{value:,.{decimals}f}"
    return (
        f'<div class="card"><div class="label">{label}</div>'
        f'<div class="value" id="{key}" data-value="{value}">{shown}</div></div>'
    )


# The chart.

_WIDTH, _HEIGHT = 1100, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 16, 14, 30
_WINDOW = 3600


def render_chart(samples: list[dict[str, Any]], now: float) -> str:
    """Announces and scrapes per second over the hour before C{now}, as inline SVG."""
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    start = now - _WINDOW
    shown = [sample for sample in samples if sample["time"] >= start]
    peak = max(
        [sample["announces_per_second"] for sample in shown]
        + [sample["scrapes_per_second"] for sample in shown]
        # A scale of at least 0 to 1 a second, so that a trickle does not look like a flood.
        + [1.0]
    )
    step, top = _ticks(peak)

    def x(t: float) -> float:
        return _LEFT + (t - start) / _WINDOW * plot_w

    def y(value: float) -> float:
        return _TOP + plot_h - value / top * plot_h

    parts = [
        f'<svg id="rates" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="Announces and scrapes per second over the last hour" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa"/>',
    ]
    value = 0.0
    while value <= top + step / 2:
        yy = y(value)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" '
            f'stroke="#e5e7eb"/>'
            f'<text x="{_LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{_number(value)}</text>'
        )
        value += step
    for minutes in range(60, -1, -10):
        xx = x(now - minutes * 60)
        label = "now" if minutes == 0 else f"\u2212{minutes} min"
        parts.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{_TOP}" y2="{_TOP + plot_h}" '
            f'stroke="#f0f0f0"/>'
            f'<text x="{xx:.1f}" y="{_HEIGHT - 10}" text-anchor="middle">{label}</text>'
        )
    series = [
        (name, colour, [(x(sample["time"]), y(sample[key])) for sample in shown])
        for key, colour, name in (
            ("scrapes_per_second", SCRAPE_COLOUR, "scrapes"),
            ("announces_per_second", ANNOUNCE_COLOUR, "announces"),
        )
    ]
    base = _TOP + plot_h
    # Every shaded area first, then every line, so that no area tints a line.
    for name, colour, points in series:
        if len(points) > 1:
            line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            area = f"{points[0][0]:.1f},{base} {line} {points[-1][0]:.1f},{base}"
            parts.append(
                f'<polygon class="{name}" points="{area}" fill="{colour}" fill-opacity="0.10"/>'
            )
    for name, colour, points in series:
        if len(points) == 1:
            parts.append(
                f'<circle class="{name}" cx="{points[0][0]:.1f}" cy="{points[0][1]:.1f}" r="4" '
                f'fill="{colour}"/>'
            )
        elif points:
            line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline class="{name}" points="{line}" fill="none" stroke="{colour}" '
                f'stroke-width="2.5" stroke-linejoin="round"/>'
            )
    if not shown:
        parts.append(
            f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}" text-anchor="middle">'
            "No samples yet: the first is taken 10 seconds after the start.</text>"
        )
    parts.append(
        f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" '
        'stroke="#9ca3af"/></svg>'
    )
    parts.append(
        '<div class="legend">'
        f'<span><span class="swatch" style="background:{ANNOUNCE_COLOUR}"></span>announces</span>'
        f'<span><span class="swatch" style="background:{SCRAPE_COLOUR}"></span>scrapes</span>'
        "<span>one point every 10 seconds</span></div>"
    )
    return "".join(parts)


def _ticks(peak: float) -> tuple[float, float]:
    """A round step (1, 2 or 5 times a power of ten) giving at most five lines up to C{peak},
    and the top of the scale."""
    if peak <= 0:
        return 1.0, 4.0
    magnitude = 10 ** math.floor(math.log10(peak / 5))
    step = next(magnitude * f for f in (1, 2, 5, 10) if peak / (magnitude * f) <= 5)
    return step, step * math.ceil(peak / step)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{round(value, 6):g}"


def _database_line(database: dict[str, Any] | None) -> str:
    """A line that stands out while the database cannot be written; nothing while it can."""
    if database is None:
        return ""
    if not database["healthy"]:
        since = database["failing_since"]
        text = (
            f"Database writes failing since {_clock(since)} UTC:"
            f" {escape(database['error'] or 'unknown error')}."
            f" {database['unwritten_bytes']:,} bytes of changes waiting in memory;"
            " announces and scrapes are answered as usual."
        )
        if database["rewrite_pending"]:
            text += (
                f" Changes past the limit of {database['unwritten_limit_bytes']:,} bytes were"
                " dropped: the whole index will be written again once writes work."
            )
    elif database["rewrite_pending"]:
        text = (
            "Database writes work again: the whole index is being written again, for the"
            " changes dropped while they failed."
        )
    else:
        return ""
    return f'<p class="alert" id="database" role="status">{text}</p>\n'


# Tables.


def _top_table(top: list[dict[str, Any]]) -> str:
    if not top:
        return '<p class="empty">No torrent has peers yet.</p>'
    rows = "".join(
        f'<tr><td class="hash">{t["info_hash"]}</td><td>{t["seeders"]:,}</td>'
        f"<td>{t['leechers']:,}</td><td>{t['downloaded']:,}</td></tr>"
        for t in top
    )
    return (
        '<table id="top"><thead><tr><th>info hash</th><th>seeders</th><th>leechers</th>'
        f"<th>downloaded</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _requests_table(requests: dict[str, dict[str, dict[str, int]]]) -> str:
    rows = "".join(
        f"<tr><td>{protocol.upper()} {kind}s</td><td>{r['ok']:,}</td><td>{r['refused']:,}</td>"
        f"<td>{r['errors']:,}</td></tr>"
        for protocol, kinds in requests.items()
        for kind, r in kinds.items()
    )
    return (
        '<table id="requests"><thead><tr><th></th><th>ok</th><th>refused</th><th>errors</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _refusals_table(refusals: list[dict[str, Any]]) -> str:
    if not refusals:
        return '<p class="empty">None.</p>'
    rows = "".join(
        f'<tr><td class="reason">{escape(r["reason"])} <small>({r["protocol"].upper()})</small>'
        f"</td><td>{r['count']:,}</td></tr>"
        for r in refusals[:REASONS_SHOWN]
    )
    return f'<table id="refusals"><tbody>{rows}</tbody></table>'


def _clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(moment))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"
