#!/usr/bin/env python3
"""Draws the Grafana dashboards of grafana/dashboards without Grafana, to look at them.

For each dashboard it substitutes Grafana's variables, runs every panel's queries against a
running depin-orcha (or any Prometheus-compatible query API): range queries over the last
--minutes, instant queries where the panel asks for them; then draws the panels where their
gridPos puts them (24 columns, 30 px per row unit as Grafana does) into an HTML page: lines
(stacked, dashed, bars as the panel's field config says), stat numbers, bar gauges, state
timelines and tables, with values formatted in the panel's unit. With --screenshot it takes a
PNG of each page with headless Chromium (Debian package `chromium`).

This is a look at the layout and the data, not Grafana's rendering: fonts, colours and the
exact axes differ. It is not part of the binary nor of the test suite.

    depin-orcha run --rules.file "rules/prometheus/*.yml" &
    scripts/render-dashboards.py --url http://127.0.0.1:9817 --out /tmp/dashboards --screenshot
"""
import argparse
import datetime as dt
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#b877d9", "#8ab8ff", "#f2495c",
           "#fade2a", "#96d98d", "#ffb357", "#ca95e5", "#37872d"]
COLORS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a",
          "blue": "#5794f2"}
ROW_PX = 30
WIDTH = 1600


# ------------------------------------------------------------------------------- formatting
def si(v, base, units):
    i = 0
    while abs(v) >= base and i < len(units) - 1:
        v /= base
        i += 1
    return f"{v:.3g} {units[i]}".strip()


def fmt(v, unit, decimals=None):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if unit == "currencyUSD":
        # Grafana picks decimals from the magnitude when the panel sets none.
        d = decimals if decimals is not None else (
            2 if v == 0 or abs(v) >= 1 else min(6, max(2, 1 - math.floor(math.log10(abs(v))))))
        return f"${v:,.{d}f}"
    if unit == "percentunit":
        return f"{v * 100:.{0 if decimals is None else decimals}f}%" if decimals is not None else f"{v * 100:.3g}%"
    if unit == "bytes":
        return si(v, 1024, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
    if unit == "decbytes":
        return si(v, 1000, ["B", "kB", "MB", "GB", "TB", "PB"])
    if unit == "Bps":
        return si(v, 1000, ["B/s", "kB/s", "MB/s", "GB/s"])
    if unit == "s":
        a = abs(v)
        if a < 1:
            return f"{v * 1000:.3g} ms"
        if a < 120:
            return f"{v:.3g} s"
        if a < 7200:
            return f"{v / 60:.3g} min"
        return f"{v / 3600:.3g} h"
    if decimals is not None:
        return f"{v:.{decimals}f}"
    return si(v, 1000, ["", "K", "M", "G", "T"]) if abs(v) >= 1000 else f"{v:.4g}"


# ---------------------------------------------------------------------------------- queries
def substitute(expr, range_s, step_s, instance, node):
    return (expr.replace("$__rate_interval", f"{max(4 * 5, step_s + 5)}s")
            .replace("$__interval", f"{step_s}s")
            .replace("$__range", f"{max(int(range_s), 1)}s")
            .replace("$host", instance).replace("$node", node).replace("$protocol", ".*"))


def api(url, path, params):
    q = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{q}", timeout=30) as r:
        j = json.load(r)
    if j.get("status") != "success":
        raise RuntimeError(j)
    return j["data"]["result"]


def legend(fmt_, metric):
    if not fmt_ or fmt_ == "__auto":
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
        return (metric.get("__name__", "") + ("{" + labels + "}" if labels else "")) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt_).strip()


def run_panel(p, args, now):
    """[(target, series)] where series = [(name, metric, [(t, v)])]."""
    out = []
    start = now - args.minutes * 60
    range_s = args.minutes * 60
    tf = p.get("timeFrom")
    if tf == "now/d":
        range_s = now - dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(hour=0, minute=0, second=0).timestamp()
    elif tf == "now/M":
        range_s = now - dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(day=1, hour=0, minute=0, second=0).timestamp()
    step = max(5, int(args.minutes * 60 / 240))
    for t in p.get("targets", []):
        expr = substitute(t["expr"], range_s, step, args.instance, args.node)
        instant = t.get("instant") and not t.get("range")
        try:
            if instant:
                res = api(args.url, "/api/v1/query", {"query": expr, "time": now})
                series = [(legend(t.get("legendFormat"), r["metric"]), r["metric"],
                           [(now, float(r["value"][1]))]) for r in res]
            else:
                res = api(args.url, "/api/v1/query_range", {"query": expr, "start": start, "end": now, "step": step})
                series = [(legend(t.get("legendFormat"), r["metric"]), r["metric"],
                           [(float(a), float(b)) for a, b in r["values"]]) for r in res]
        except Exception as e:  # shown in the panel: a query that fails is what we look for
            series = []
            t = dict(t, error=str(e))
        out.append((t, series))
    return out


# ---------------------------------------------------------------------------------- drawing
def override_props(p, name):
    props = {}
    for o in p.get("fieldConfig", {}).get("overrides", []):
        m = o.get("matcher", {})
        hit = (m.get("id") == "byName" and m.get("options") == name) or \
              (m.get("id") == "byRegexp" and re.fullmatch(m.get("options", ""), name))
        if hit:
            for pr in o.get("properties", []):
                props[pr["id"]] = pr["value"]
    return props


def mapped(p, v, overrides=None):
    maps = (overrides or {}).get("mappings") or p.get("fieldConfig", {}).get("defaults", {}).get("mappings", [])
    for m in maps:
        if m.get("type") == "value":
            key = f"{v:g}" if v is not None else ""
            if key in m.get("options", {}):
                o = m["options"][key]
                return o.get("text", key), COLORS.get(o.get("color"), o.get("color"))
    return None, None


def threshold_color(p, v):
    steps = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    c = "green"
    for s in steps:
        if s.get("value") is None or (v is not None and v >= s["value"]):
            c = s["color"]
    return COLORS.get(c, c)


def no_data(p):
    nv = p.get("fieldConfig", {}).get("defaults", {}).get("noValue")
    return f'<div class="nodata">No data{html.escape(f" (shows: {nv})") if nv else ""}</div>'


def draw_timeseries(p, results, w, h):
    d = p["fieldConfig"]["defaults"]
    unit = d.get("unit", "")
    custom = d.get("custom", {})
    stack_all = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    lines = []
    for t, series in results:
        for name, _, pts in series:
            lines.append((name, pts))
    if not lines:
        return no_data(p)
    stacked, cum = [], {}
    for name, pts in lines:
        ov = override_props(p, name)
        stack = stack_all and ov.get("custom.stacking", {}).get("mode", "normal") == "normal"
        if stack:
            new = []
            for t_, v in pts:
                base = cum.get(t_, 0.0)
                cum[t_] = base + v
                new.append((t_, base + v, base))
            pts3 = new
        else:
            pts3 = [(t_, v, None) for t_, v in pts]
        stacked.append((name, pts3, ov, stack))
    ts = [x[0] for _, pts, _, _ in stacked for x in pts]
    vs = [x[1] for _, pts, _, _ in stacked for x in pts if not math.isnan(x[1])]
    t0, t1 = min(ts), max(ts)
    lo = min([0.0] + vs) if custom.get("axisSoftMin", None) == 0 else min(vs)
    lo = d.get("min", lo)
    hi = d.get("max", max(vs) if vs else 1)
    if hi <= lo:
        hi = lo + (abs(lo) or 1)
    hi = hi + (hi - lo) * 0.05 if "max" not in d else hi
    ph = h - 60 - 16 * math.ceil(len(stacked) / 3)
    ph = max(ph, 60)
    pw = w - 80
    X = lambda t_: 70 + (t_ - t0) / max(t1 - t0, 1) * pw
    Y = lambda v: 8 + (1 - (v - lo) / (hi - lo)) * ph
    svg = [f'<svg width="{w - 10}" height="{ph + 30}">']
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = Y(v)
        svg.append(f'<line x1="70" x2="{70 + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#2c3235"/>'
                   f'<text x="64" y="{y + 4:.1f}" text-anchor="end">{html.escape(fmt(v, unit))}</text>')
    for i in range(4):
        t_ = t0 + (t1 - t0) * i / 3
        svg.append(f'<text x="{X(t_):.1f}" y="{ph + 24}" text-anchor="middle">'
                   f'{time.strftime("%H:%M", time.gmtime(t_))}</text>')
    if "line" in custom.get("thresholdsStyle", {}).get("mode", ""):
        for st in d.get("thresholds", {}).get("steps", []):
            v, col = st.get("value"), COLORS.get(st.get("color"), st.get("color"))
            if v is not None and lo <= v <= hi and col != "transparent":
                svg.append(f'<line x1="70" x2="{70 + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="{col}" stroke-dasharray="4 4"/>')
    legend_html = []
    for k, (name, pts, ov, stack) in enumerate(stacked):
        col = ov.get("color", {}).get("fixedColor")
        col = COLORS.get(col, col) or PALETTE[k % len(PALETTE)]
        dash = ' stroke-dasharray="8 6"' if "custom.lineStyle" in ov and ov["custom.lineStyle"].get("fill") == "dash" else ""
        width = ov.get("custom.lineWidth", custom.get("lineWidth", 1))
        fill_op = ov.get("custom.fillOpacity", custom.get("fillOpacity", 0)) / 100
        good = [(t_, v, b) for t_, v, b in pts if not math.isnan(v)]
        if not good:
            continue
        if bars:
            bw = max(pw / max(len(good), 1) * 0.6, 1)
            for t_, v, b in good:
                y0 = Y(b if b is not None else max(lo, 0))
                svg.append(f'<rect x="{X(t_) - bw / 2:.1f}" y="{min(Y(v), y0):.1f}" width="{bw:.1f}" '
                           f'height="{abs(y0 - Y(v)):.1f}" fill="{col}" opacity="0.8"/>')
        else:
            line = " ".join(f"{X(t_):.1f},{Y(v):.1f}" for t_, v, _ in good)
            if fill_op > 0:
                base = [(t_, b if b is not None else max(lo, 0)) for t_, _, b in good]
                poly = line + " " + " ".join(f"{X(t_):.1f},{Y(b):.1f}" for t_, b in reversed(base))
                svg.append(f'<polygon points="{poly}" fill="{col}" opacity="{fill_op * 0.6:.2f}"/>')
            svg.append(f'<polyline points="{line}" fill="none" stroke="{col}" stroke-width="{width}"{dash}/>')
        last = good[-1][1] - (good[-1][2] or 0)
        legend_html.append(f'<span><i style="background:{col}"></i>{html.escape(name)} '
                           f'<b>{html.escape(fmt(last, unit, d.get("decimals")))}</b></span>')
    svg.append("</svg>")
    return "".join(svg) + '<div class="legend">' + "".join(legend_html) + "</div>"


def draw_stat(p, results, w, h):
    d = p["fieldConfig"]["defaults"]
    vals = [(name, pts[-1][1]) for _, series in results for name, _, pts in series if pts]
    if not vals:
        return no_data(p)
    bg = p.get("options", {}).get("colorMode") == "background"
    size = max(14, min(48, int(h / (len(vals) + 0.5) * 0.55), int(w / 7)))
    out = []
    for name, v in vals:
        text, col = mapped(p, v)
        col = col or threshold_color(p, v)
        text = text or fmt(v, d.get("unit", ""), d.get("decimals"))
        label = f'<div class="statname">{html.escape(name)}</div>' if len(vals) > 1 else ""
        style = f"background:{col};color:#111" if bg else f"color:{col}"
        out.append(f'<div class="stat" style="{style};font-size:{size}px">{label}{html.escape(text)}</div>')
    return "".join(out)


def draw_bargauge(p, results, w, h):
    d = p["fieldConfig"]["defaults"]
    vals = [(name, pts[-1][1]) for _, series in results for name, _, pts in series if pts]
    if not vals:
        return no_data(p)
    hi = d.get("max", max(v for _, v in vals) or 1)
    rows = []
    bh = max(10, min(28, int((h - 40) / len(vals)) - 6))
    for name, v in vals:
        frac = max(0.0, min(1.0, v / hi if hi else 0))
        fixed = override_props(p, name).get("color", {}).get("fixedColor")
        col = COLORS.get(fixed, fixed) or threshold_color(p, v)
        rows.append(f'<div class="bg" style="height:{bh}px"><span class="bgname">{html.escape(name)}</span>'
                    f'<span class="bgbar"><i style="width:{frac * 100:.1f}%;background:{col}"></i></span>'
                    f'<span class="bgval" style="color:{col}">{html.escape(fmt(v, d.get("unit", ""), d.get("decimals")))}</span></div>')
    return "".join(rows)


def draw_state_timeline(p, results, w, h):
    series = [(name, pts) for _, ss in results for name, _, pts in ss]
    if not series:
        return no_data(p)
    t0 = min(t for _, pts in series for t, _ in pts)
    t1 = max(t for _, pts in series for t, _ in pts)
    pw = w - 160
    rh = max(12, min(30, int((h - 50) / len(series)) - 4))
    svg = [f'<svg width="{w - 10}" height="{len(series) * (rh + 4) + 20}">']
    for i, (name, pts) in enumerate(series):
        y = i * (rh + 4)
        svg.append(f'<text x="0" y="{y + rh * 0.7:.1f}">{html.escape(name)}</text>')
        for j, (t_, v) in enumerate(pts):
            tn = pts[j + 1][0] if j + 1 < len(pts) else t1 + (t1 - t0) / max(len(pts), 1)
            text, col = mapped(p, v)
            col = col or threshold_color(p, v)
            x = 150 + (t_ - t0) / max(t1 - t0, 1) * pw
            xn = 150 + (min(tn, t1) - t0) / max(t1 - t0, 1) * pw
            svg.append(f'<rect x="{x:.1f}" y="{y}" width="{max(xn - x, 1):.1f}" height="{rh}" fill="{col}"/>')
        text, _ = mapped(p, pts[-1][1])
        svg.append(f'<text x="{150 + 6}" y="{y + rh * 0.7:.1f}" fill="#111">{html.escape(text or str(pts[-1][1]))}</text>')
    svg.append("</svg>")
    return "".join(svg)


def draw_table(p, results, w, h):
    d = p["fieldConfig"]["defaults"]
    rename, exclude = {}, {}
    for tr in p.get("transformations", []):
        if tr.get("id") == "organize":
            rename = tr["options"].get("renameByName", {})
            exclude = tr["options"].get("excludeByName", {})
    multi = len(results) > 1
    rows, cols = {}, []
    for t, series in results:
        vcol = f"Value #{t['refId']}" if multi else "Value"
        for _, metric, pts in series:
            key = tuple(sorted((k, v) for k, v in metric.items()))
            row = rows.setdefault(key, dict(metric))
            row[vcol] = pts[-1][1]
    for row in rows.values():
        for k in row:
            if k not in cols and not exclude.get(k):
                cols.append(k)
    if not rows:
        return no_data(p)
    vcols = [c for c in cols if c.startswith("Value")]
    cols = [c for c in cols if not c.startswith("Value")] + vcols
    out = ['<table><tr>' + "".join(f"<th>{html.escape(rename.get(c, c))}</th>" for c in cols) + "</tr>"]
    for row in rows.values():
        cells = []
        for c in cols:
            v = row.get(c, "")
            if c.startswith("Value"):
                name = rename.get(c, c)
                ov = override_props(p, name)
                text, col = mapped(p, v, ov) if ov.get("mappings") else (None, None)
                text = text or fmt(v, ov.get("unit", d.get("unit", "")), 4 if ov.get("unit", d.get("unit")) == "currencyUSD" else None)
                style = f' style="background:{col};color:#111"' if col else ""
                cells.append(f"<td{style}>{html.escape(text)}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


DRAW = {"timeseries": draw_timeseries, "stat": draw_stat, "bargauge": draw_bargauge,
        "state-timeline": draw_state_timeline, "table": draw_table}

CSS = """
body{background:#111217;color:#ccccdc;font:12px sans-serif;margin:0}
h1{font-size:18px;margin:8px 12px}
.vars{margin:0 12px 8px;color:#8e8e8e}
.grid{position:relative;width:%dpx}
.panel{position:absolute;background:#181b1f;border:1px solid #2c3235;border-radius:3px;overflow:hidden;box-sizing:border-box}
.title{font-weight:bold;padding:4px 8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.body{padding:2px 6px}
svg text{fill:#9fa7b3;font-size:10px}
.legend span{margin-right:12px;white-space:nowrap;display:inline-block}
.legend i{display:inline-block;width:12px;height:4px;margin-right:4px;vertical-align:middle}
.nodata{color:#f2495c;font-size:16px;text-align:center;margin-top:20px}
.stat{font-weight:bold;text-align:center;border-radius:3px;margin:2px}
.statname{font-size:11px;font-weight:normal;color:#ccccdc}
.bg{display:flex;align-items:center;margin:3px 0}
.bgname{width:38%%;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.bgbar{flex:1;background:#22252b;height:70%%;margin:0 6px}.bgbar i{display:block;height:100%%}
.bgval{width:70px;text-align:right;font-weight:bold}
table{border-collapse:collapse;width:100%%}th,td{border-bottom:1px solid #2c3235;padding:3px 6px;text-align:left}
.err{color:#f2495c}
.row{position:absolute;font-size:14px;font-weight:bold;padding:4px 2px}
""" % WIDTH


def render(path, args, now):
    d = json.load(open(path))
    col_w = WIDTH / 24
    parts, bottom = [], 0
    empty = []
    for p in d.get("panels", []):
        g = p["gridPos"]
        x, y, w, h = g["x"] * col_w, g["y"] * ROW_PX, g["w"] * col_w - 6, g["h"] * ROW_PX - 6
        bottom = max(bottom, y + h)
        if p["type"] == "row":
            parts.append(f'<div class="row" style="left:{x:.0f}px;top:{y}px;width:{w:.0f}px">'
                         f'{"▸" if p.get("collapsed") else "▾"} {html.escape(p["title"])}</div>')
            continue
        results = run_panel(p, args, now)
        errs = [t["error"] for t, _ in results if "error" in t]
        if not any(s for _, s in results):
            empty.append(p["title"])
        body = DRAW.get(p["type"], lambda *a: f"unknown panel type {p['type']}")(p, results, w, h)
        if errs:
            body = "".join(f'<div class="err">{html.escape(e)}</div>' for e in errs) + body
        tf = f' <span style="color:#5794f2">({p["timeFrom"]})</span>' if p.get("timeFrom") else ""
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        parts.append(f'<div class="panel" style="left:{x:.0f}px;top:{y}px;width:{w:.0f}px;height:{h}px">'
                     f'<div class="title">{html.escape(p["title"])}{tf} <span style="color:#666">[{unit}] #{p["id"]}</span></div>'
                     f'<div class="body">{body}</div></div>')
    vars_ = f"$host={args.instance} $node={args.node} · last {args.minutes} min · {args.url} · " \
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(d['title'])}</h1><div class='vars'>{html.escape(vars_)}</div>"
            f"<div class='grid' style='height:{bottom + 10}px'>{''.join(parts)}</div></body></html>")
    return page, bottom + 80, empty


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:9817", help="query API base URL")
    ap.add_argument("--minutes", type=int, default=30, help="range of the range queries")
    ap.add_argument("--host", dest="instance", default=".*", help="value of $host (the host picker)")
    ap.add_argument("--node", default="storj", help="value of $node")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "depin-orcha-dashboards"))
    ap.add_argument("--screenshot", action="store_true", help="PNG of each page with headless Chromium")
    ap.add_argument("dashboards", nargs="*", help="JSON files (default: grafana/dashboards/*.json)")
    args = ap.parse_args()
    files = args.dashboards or sorted(
        os.path.join(ROOT, "grafana/dashboards", f) for f in os.listdir(os.path.join(ROOT, "grafana/dashboards"))
        if f.endswith(".json"))
    os.makedirs(args.out, exist_ok=True)
    now = time.time()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    for f in files:
        page, height, empty = render(f, args, now)
        name = os.path.splitext(os.path.basename(f))[0]
        out_html = os.path.join(args.out, name + ".html")
        with open(out_html, "w") as fh:
            fh.write(page)
        print(f"{out_html}" + (f"  (no data: {', '.join(empty)})" if empty else ""))
        if args.screenshot:
            if not chromium:
                sys.exit("chromium is not installed (Debian package chromium)")
            png = os.path.join(args.out, name + ".png")
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", "--disable-component-update",
                                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                                f"--screenshot={png}", f"--window-size={WIDTH + 20},{int(height)}",
                                "file://" + out_html], check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=120)
            print(png)


if __name__ == "__main__":
    main()
