#!/usr/bin/env python3
"""Plot `faultline bench --json` and `faultline bench --study --json` output as SVG.

Usage:
    scripts/plot-bench.py --bench bench.json [--study study.json] [--out docs/img]

Writes (only for the inputs given):
    bench-ns.svg            ns/event per configuration (median, whisker = min..max over rounds)
    study-resident.svg      ns/event per copy strategy and payload size, resident data
    study-stall-losses.svg  neighbour events lost per stall, per strategy and scenario
    study-stall-delay.svg   worst consumer delay per strategy and scenario

With --markdown, also prints the tables of docs/BENCHMARKS.md (Markdown) on stdout.

Plain SVG written by hand: no plotting library to install.
"""

import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape

COLORS = {
    "floor": "#888888",
    "faultline": "#1f77b4",
    "dispatch": "#17becf",
    "ringbuf": "#2ca02c",
    "lttng": "#d62728",
    "reserve-copy-commit": "#ff7f0e",
    "bounce": "#1f77b4",
    "prefault-restart": "#2ca02c",
}
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


class Svg:
    def __init__(self, width, height):
        self.w, self.h = width, height
        self.items = []

    def rect(self, x, y, w, h, fill, extra=""):
        self.items.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" '
            f'fill="{fill}" {extra}/>'
        )

    def line(self, x1, y1, x2, y2, stroke="#000", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{stroke}" stroke-width="{width}"{d}/>'
        )

    def text(self, x, y, s, size=11, anchor="start", weight="normal", fill="#000", rotate=None):
        tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}" {FONT}{tr}>{escape(str(s))}</text>'
        )

    def save(self, path):
        with open(path, "w") as f:
            f.write(
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}">\n'
                f'<rect width="100%" height="100%" fill="white"/>\n'
            )
            f.write("\n".join(self.items))
            f.write("\n</svg>\n")
        print(f"wrote {path}", file=sys.stderr)


def nice_max(v):
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def hbar_chart(path, title, subtitle, bars, unit, note=None):
    """bars: list of (label, value, lo, hi, color)."""
    left, right, top, row_h = 400, 90, 60, 20
    width = 1100
    height = top + row_h * len(bars) + 60
    svg = Svg(width, height)
    svg.text(width / 2, 22, title, size=15, anchor="middle", weight="bold")
    svg.text(width / 2, 40, subtitle, size=11, anchor="middle", fill="#444")
    vmax = nice_max(max((b[3] if b[3] is not None else b[1]) for b in bars))
    plot_w = width - left - right
    sx = lambda v: left + plot_w * min(v, vmax) / vmax
    for i in range(6):
        v = vmax * i / 5
        x = sx(v)
        svg.line(x, top - 5, x, top + row_h * len(bars), stroke="#ddd")
        svg.text(x, top + row_h * len(bars) + 15, f"{v:g}", size=10, anchor="middle")
    svg.text(left + plot_w / 2, top + row_h * len(bars) + 33, unit, size=11, anchor="middle")
    for i, (label, v, lo, hi, color) in enumerate(bars):
        y = top + i * row_h
        svg.text(left - 6, y + 14, label, size=11, anchor="end")
        svg.rect(left, y + 3, sx(v) - left, row_h - 6, color)
        if lo is not None and hi is not None:
            svg.line(sx(lo), y + row_h / 2, sx(hi), y + row_h / 2, stroke="#000")
            svg.line(sx(lo), y + 6, sx(lo), y + row_h - 6)
            svg.line(sx(hi), y + 6, sx(hi), y + row_h - 6)
        svg.text(max(sx(v), sx(hi) if hi is not None else 0) + 4, y + 14, f"{v:.2f}", size=10)
    if note:
        svg.text(left, height - 8, note, size=10, fill="#444")
    svg.save(path)


def plot_bench(b, out):
    bars = []
    for r in b["rows"]:
        label = f'{r["group"]}: {r["name"]}'
        if r["path"] not in ("-",):
            label += f' [{r["path"]}]'
        label += f' x{r["threads"]}'
        bars.append((label, r["ns_median"], r["ns_min"], r["ns_max"], COLORS.get(r["group"], "#999")))
    m = b.get("machine", {})
    sub = (
        f'{m.get("cpus", "?")} CPUs {m.get("cpu_model", "")}, kernel {m.get("kernel", "")}, '
        f'load {m.get("load_before", float("nan")):.2f}; {b["rounds"]} rounds x {b["iters"]} events/thread; '
        "ns per event per thread, bar = median, whisker = min..max"
    )
    hbar_chart(
        os.path.join(out, "bench-ns.svg"),
        "faultline bench: ns per event",
        sub,
        bars,
        "ns / event (per thread)",
        note="blue: faultline (tracepoint + recorder + ring buffer, consumer draining); green: ring buffer alone; "
        "cyan: tracepoint dispatch to a counting probe; red: LTTng-UST 2.13; grey: floor",
    )


def grouped_chart(path, title, subtitle, groups, series, values, ylabel, log=False, fmt="{:.0f}"):
    """groups: x categories; series: names; values[g][s] -> float."""
    width, height = 1000, 440
    left, right, top, bottom = 80, 30, 60, 110
    svg = Svg(width, height)
    svg.text(width / 2, 22, title, size=15, anchor="middle", weight="bold")
    svg.text(width / 2, 40, subtitle, size=11, anchor="middle", fill="#444")
    plot_w, plot_h = width - left - right, height - top - bottom
    allv = [v for row in values for v in row if v is not None]
    vmax = max(allv + [1e-9])
    if log:
        top_exp = max(1, math.ceil(math.log10(vmax + 1)))
        sy = lambda v: top + plot_h * (1 - math.log10(1 + max(v, 0)) / top_exp)
        ticks = [10**k - 1 if k else 0 for k in range(top_exp + 1)]
        tick_lbl = lambda t: f"{t + 1:g}" if t else "0"
    else:
        vmax = nice_max(vmax)
        sy = lambda v: top + plot_h * (1 - v / vmax)
        ticks = [vmax * i / 5 for i in range(6)]
        tick_lbl = lambda t: f"{t:g}"
    for t in ticks:
        y = sy(t)
        svg.line(left, y, left + plot_w, y, stroke="#ddd")
        svg.text(left - 6, y + 4, tick_lbl(t), size=10, anchor="end")
    svg.text(18, top + plot_h / 2, ylabel, size=11, anchor="middle", rotate=-90)
    gw = plot_w / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = values[gi][si]
            if v is None:
                continue
            x = x0 + si * bw
            y = sy(v)
            svg.rect(x, y, bw - 2, top + plot_h - y, COLORS.get(s, "#999"))
            svg.text(x + bw / 2, y - 3, fmt.format(v), size=9, anchor="middle")
        svg.text(left + gi * gw + gw / 2, top + plot_h + 16, g, size=11, anchor="middle")
    svg.line(left, top + plot_h, left + plot_w, top + plot_h)
    for si, s in enumerate(series):
        x = left + si * 200
        svg.rect(x, height - 30, 12, 12, COLORS.get(s, "#999"))
        svg.text(x + 16, height - 20, s, size=11)
    svg.save(path)


def short(scenario):
    """Axis label for a stall scenario."""
    return scenario.replace("resident, ", "no fault, ").replace(" gaps (control)", " gaps")


def plot_study(s, out):
    strategies = ["reserve-copy-commit", "bounce", "prefault-restart"]
    payloads = sorted({r["payload"] for r in s["resident"]})
    vals = [
        [
            next((r["ns_median"] for r in s["resident"] if r["payload"] == p and r["strategy"] == st), None)
            for st in strategies
        ]
        for p in payloads
    ]
    grouped_chart(
        os.path.join(out, "study-resident.svg"),
        "Copy strategies, resident data: ns per event",
        f'1 pinned thread, no consumer; median of {s["rounds"]} rounds; load {s["load_before"]:.2f}',
        [f"{p} B" for p in payloads],
        strategies,
        vals,
        "ns / event",
        fmt="{:.0f}",
    )
    scen = []
    for r in s["stalls"]:
        if r["scenario"] not in scen:
            scen.append(r["scenario"])

    def get(sc, st, key):
        return next((r[key] for r in s["stalls"] if r["scenario"] == sc and r["strategy"] == st), None)

    grouped_chart(
        os.path.join(out, "study-stall-losses.svg"),
        "Events lost on A's CPU because a sub-buffer was held (lost_stalled), per stall",
        "A: 256 B from a non-resident page; B: same CPU, tracing continuously; 4 x 256 KiB buffers",
        [short(sc) for sc in scen],
        strategies,
        [[get(sc, st, "stalled_per_stall") for st in strategies] for sc in scen],
        "events lost to a held sub-buffer, per stall (log)",
        log=True,
    )
    grouped_chart(
        os.path.join(out, "study-stall-delay.svg"),
        "Worst consumer delay (packet closed -> taken out)",
        "same runs as the losses plot",
        [short(sc) for sc in scen],
        strategies,
        [[get(sc, st, "delay_ms_max") for st in strategies] for sc in scen],
        "ms",
        fmt="{:.2f}",
    )


def fmt(v, spec="{:.1f}", none="–"):
    return none if v is None else spec.format(v)


def md_bench(b):
    m = b["machine"]
    print(
        f'Run: {b["rounds"]} rounds x {b["iters"]} events/thread (LTTng: {b["lttng_events"]} '
        f'events/thread/run); {m["cpus"]} CPUs ({m["cpu_model"]}), kernel {m["kernel"]}, '
        f'1-min load {m["load_before"]:.2f} before, {m["load_after"]:.2f} after. '
        f'LTTng: {b["lttng"] or b["lttng_missing"]}.'
    )
    print()
    print("| group | operation | path | threads | buffers per CPU | ns/event (median) | spread | Mev/s (all threads) | lost | bytes/event | consumer CPU | x floor | LTTng / faultline |")
    print("|---|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in b["rows"]:
        lost = "?" if r["lost"] is None and r["group"] == "lttng" else fmt(r["lost"], "{}")
        print(
            f'| {r["group"]} | {r["name"]} | {r["path"]} | {r["threads"]} | {r.get("buffers") or "–"} | {r["ns_median"]:.2f} | '
            f'{r["ns_min"]:.2f}..{r["ns_max"]:.2f} | {fmt(r["mevents_per_s"])} | {lost} | '
            f'{fmt(r["bytes_per_event"])} | {fmt(r.get("consumer_cpu") and 100 * r["consumer_cpu"], "{:.0f} %")} | {fmt(r["vs_floor"], "{:.2f}")} | {fmt(r["lttng_ratio"], "{:.2f}")} |'
        )
    print()
    print("| target | goal | measured | verdict |")
    print("|---|---|---:|---|")
    for t in b["targets"]:
        spec = "{:.0f}" if "lost" in t["name"] else "{:.2f}"
        print(f"| {t['name']} | {t['goal']} | {fmt(t['value'], spec)} | {t['detail']} |")
    print()


def md_study(s):
    print(f'Study: {s["rounds"]} rounds; 1-min load {s["load_before"]:.2f} before, {s["load_after"]:.2f} after.')
    if s.get("uffd"):
        print(s["uffd"])
    print()
    print("| strategy | payload | ns/event (median) | spread | vs reserve-copy-commit |")
    print("|---|---:|---:|---|---:|")
    for r in s["resident"]:
        print(f'| {r["strategy"]} | {r["payload"]} B | {r["ns_median"]:.1f} | {r["ns_min"]:.1f}..{r["ns_max"]:.1f} | {r["vs_rcc"]:.2f} |')
    print()
    print("| scenario | strategy | A events | A ns/event median | A ns max | A lost | B events | B lost | lost to held sub-buffer / stall | lost, consumer late | consumer delay max | p99 | packets held > 1 ms | restarts |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in s["stalls"]:
        print(
            f'| {r["scenario"]} | {r["strategy"]} | {r["events"]} | {r["event_ns_median"]:.0f} | {r["event_ns_max"]:.0f} | '
            f'{r["own_lost"]} | {r["neighbour_events"]} | {r["neighbour_lost"]} | {r["stalled_per_stall"]:.0f} | {r["lost_full"]} | '
            f'{r["delay_ms_max"]:.2f} ms | {r["delay_ms_p99"]:.2f} ms | {r["packets_held"]} | {r["restarts"]} |'
        )
    print()
    print("| scenario | strategy | Mev/s (median) | spread | ns in trace call | lost | of which held sub-buffer | restarts | fallbacks | REMOTE commits | migrations | consumer delay max |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in s["load"]:
        print(
            f'| {r["scenario"]} | {r["strategy"]} | {r["mevents_per_s"]:.2f} | {r["mevents_min"]:.2f}..{r["mevents_max"]:.2f} | '
            f'{r["trace_ns"]:.0f} | {r["lost"]} | {r["lost_stalled"]} | {r["restarts"]} | {r["fallbacks"]} | '
            f'{r["remote_commits"]} | {r["migrations"]} | {r["delay_ms_max"]:.1f} ms |'
        )
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="output of `faultline bench --json`")
    ap.add_argument("--study", help="output of `faultline bench --study --json`")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables on stdout")
    a = ap.parse_args()
    if not a.bench and not a.study:
        ap.error("give --bench and/or --study")
    os.makedirs(a.out, exist_ok=True)
    if a.bench:
        with open(a.bench) as f:
            b = json.load(f)
        plot_bench(b, a.out)
        if a.markdown:
            md_bench(b)
    if a.study:
        with open(a.study) as f:
            st = json.load(f)
        plot_study(st, a.out)
        if a.markdown:
            md_study(st)


if __name__ == "__main__":
    main()
