#!/usr/bin/python3
"""Reads bench_kernels' JSON output (--benchmark_format=json or --benchmark_out=RUN.json).

  bench_report.py table RUN.json [--filter REGEX]
      per benchmark: time, work per call, GFLOP/s, GB/s, % of the device's peak FLOP/s and
      bandwidth, the floor (the roofline's time) and the % of it reached
  bench_report.py roofline RUN.json -o roofline.svg [--filter REGEX] [--title TEXT]
      a log-log roofline picture: the roofs of each backend from the run's peaks, one labelled
      point per benchmark
  bench_report.py compare BEFORE.json AFTER.json [--filter REGEX]
      per benchmark present in both: the two times and the speed-up (before / after)
  bench_report.py floor RUN.json [--batch N] [--device NAME | --peak-flops X --peak-bw Y]
      the floor of one training step and of one epoch (49,000 images) at a batch size, op by op,
      on this run's device or a known GPU, against the measured times
  bench_report.py variants RUN.json [--filter REGEX]
      the numbered kernel variants (rows <backend>/<op>/v<N>/<batch>): per op and batch, its
      variants ranked by time, each with its floor, % of the roofline and speed-up over v0

Peaks come from the run's context (cpu_peak_flops, cpu_peak_bytes_per_s, cuda_peak_...), which
bench_kernels fills from a measurement (CPU) or a table of known GPUs. With --benchmark_repetitions
the median of the repetitions is used (--stat min: the fastest). Python 3 standard library only.
"""

import argparse
import json
import math
import re
import signal
import statistics
import sys
from html import escape

# Known GPUs, FP32 without tensor cores and memory bandwidth (as bench/bench_cuda.cu's table).
KNOWN_DEVICES = {
    "h100-sxm": (67e12, 3.35e12),
    "h100-pcie": (51e12, 2.0e12),
    "h200": (67e12, 4.8e12),
    "a100-40gb": (19.5e12, 1.555e12),
    "a100-80gb": (19.5e12, 2.039e12),
}

TRAIN_IMAGES = 49_000
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
SUFFIX = re.compile(r"/(manual_time|real_time)$")
VARIANT = re.compile(r"^v\d+$")


class Bench:
    """One benchmark of a run: its seconds per call and its work per call."""

    def __init__(self, name, seconds, flop, nbytes, iterations):
        self.name = name
        self.seconds = seconds
        self.flop = flop
        self.bytes = nbytes
        self.iterations = iterations

    @property
    def backend(self):
        return self.name.split("/", 1)[0]

    @property
    def batch(self):
        last = self.name.rsplit("/", 1)[-1]
        return int(last) if last.isdigit() else None

    @property
    def op(self):
        """The name without backend and batch: conv2d_1/backward, train_step, adam/update."""
        parts = self.name.split("/")[1:]
        if parts and parts[-1].isdigit():
            parts = parts[:-1]
        return "/".join(parts)

    @property
    def variant(self):
        """'v1' of a variant row (<backend>/<op>/v1/<batch>), else None."""
        parts = self.op.split("/")
        return parts[-1] if len(parts) > 1 and VARIANT.match(parts[-1]) else None

    @property
    def variant_op(self):
        """The op a variant row times: conv2d_1/im2col of cuda/conv2d_1/im2col/v1/128."""
        return self.op.rsplit("/", 1)[0] if self.variant else None


class Run:
    def __init__(self, path, stat="median"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        self.path = path
        self.context = data.get("context", {})
        self.benches = load_benches(data.get("benchmarks", []), stat)

    def peak(self, backend):
        """(FLOP/s, bytes/s, source) of a backend from the run's context, or None."""
        try:
            flops = float(self.context[backend + "_peak_flops"])
            bw = float(self.context[backend + "_peak_bytes_per_s"])
        except (KeyError, ValueError):
            return None
        if flops <= 0 or bw <= 0:
            return None
        return flops, bw, self.context.get(backend + "_peak_source", "")

    def select(self, pattern):
        rx = re.compile(pattern) if pattern else None
        return [b for b in self.benches if rx is None or rx.search(b.name)]


def load_benches(rows, stat="median"):
    """Benchmarks by name, in the run's order. With --benchmark_repetitions, the median (or the
    minimum, stat="min") of the repetitions' times; the median aggregate row when the run kept
    only aggregates."""
    groups = {}
    for row in rows:
        if row.get("error_occurred"):
            continue
        name = SUFFIX.sub("", row.get("run_name", row["name"]))
        groups.setdefault(name, {"iter": [], "median": None})
        if row.get("run_type") == "aggregate":
            if row.get("aggregate_name") == "median":
                groups[name]["median"] = row
        else:
            groups[name]["iter"].append(row)
    pick = min if stat == "min" else statistics.median
    benches = []
    for name, g in groups.items():
        rows_used = g["iter"] or ([g["median"]] if g["median"] is not None else [])
        if not rows_used:
            continue
        secs, flops, nbytes = [], [], []
        for r in rows_used:
            s = r["real_time"] * UNIT_SECONDS[r.get("time_unit", "ns")]
            secs.append(s)
            # The counters are rates over the same time: rate * time is the work of one call.
            flops.append(r.get("FLOP/s", 0.0) * s)
            nbytes.append(r.get("B/s", 0.0) * s)
        iters = sum(int(r.get("iterations", 0)) for r in rows_used)
        benches.append(Bench(name, pick(secs), statistics.median(flops),
                             statistics.median(nbytes), iters))
    return benches


def fmt_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_num(v, digits=3):
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def print_table(headers, rows, out=None):
    out = out or sys.stdout
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i])
                     for i, h in enumerate(headers))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                        for i, c in enumerate(r)), file=out)


def print_peaks(run, backends):
    for be in backends:
        p = run.peak(be)
        if p:
            print(f"{be} peak: {p[0] / 1e9:.1f} GFLOP/s, {p[1] / 1e9:.1f} GB/s ({p[2]})")
        else:
            print(f"{be} peak: not in the run's context; no % of peak")
    if run.context.get("cuda", "").startswith("absent"):
        print(f"cuda: {run.context['cuda']}")


def cmd_table(args):
    run = Run(args.run, args.stat)
    benches = run.select(args.filter)
    if not benches:
        sys.exit(f"bench_report: no benchmark in {args.run} matches")
    print_peaks(run, sorted({b.backend for b in benches}))
    print()
    headers = ["benchmark", "time", "MFLOP", "MB", "GFLOP/s", "GB/s", "%FLOP", "%BW", "floor",
               "%roof"]
    rows = []
    for b in benches:
        gflops = b.flop / b.seconds / 1e9
        gbps = b.bytes / b.seconds / 1e9
        row = [b.name, fmt_time(b.seconds), fmt_num(b.flop / 1e6), fmt_num(b.bytes / 1e6),
               fmt_num(gflops), fmt_num(gbps)]
        p = run.peak(b.backend)
        if p:
            floor = max(b.flop / p[0], b.bytes / p[1])
            row += [fmt_num(100 * b.flop / b.seconds / p[0], 2),
                    fmt_num(100 * b.bytes / b.seconds / p[1], 2), fmt_time(floor),
                    fmt_num(100 * floor / b.seconds, 2)]
        else:
            row += ["-", "-", "-", "-"]
        rows.append(row)
    print_table(headers, rows)
    print("\n%FLOP, %BW: of the peak; floor = max(FLOP / peak FLOP/s, bytes / peak B/s);"
          " %roof = floor / time.")


def cmd_compare(args):
    before, after = Run(args.before, args.stat), Run(args.after, args.stat)
    rx = re.compile(args.filter) if args.filter else None
    b_by = {b.name: b for b in before.benches}
    a_by = {b.name: b for b in after.benches}
    names = [b.name for b in before.benches if b.name in a_by and (rx is None or rx.search(b.name))]
    if not names:
        sys.exit("bench_report: the two runs have no benchmark in common")
    rows, ratios = [], []
    for n in names:
        tb, ta = b_by[n].seconds, a_by[n].seconds
        r = tb / ta
        ratios.append(r)
        mark = "faster" if r > 1.05 else "slower" if r < 1 / 1.05 else ""
        rows.append([n, fmt_time(tb), fmt_time(ta), f"{r:.2f}x", mark])
    print(f"before: {args.before}\nafter:  {args.after}\n")
    print_table(["benchmark", "before", "after", "speed-up", ""], rows)
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\ngeometric mean speed-up over {len(ratios)} benchmarks: {geo:.3f}x"
          " (speed-up = before / after; 'faster'/'slower' beyond 5%)")
    for label, run, other in (("only before", before, a_by), ("only after", after, b_by)):
        missing = [b.name for b in run.benches if b.name not in other
                   and (rx is None or rx.search(b.name))]
        if missing:
            print(f"{label}: " + ", ".join(missing))


def cmd_floor(args):
    run = Run(args.run, args.stat)
    if args.device in KNOWN_DEVICES:
        pf, pb = KNOWN_DEVICES[args.device]
        src = f"table: {args.device}"
    elif args.peak_flops and args.peak_bw:
        pf, pb, src = args.peak_flops, args.peak_bw, "given on the command line"
    else:
        p = run.peak(args.device)
        if not p:
            sys.exit(f"bench_report: no peak for '{args.device}' in the run; give --peak-flops and"
                     f" --peak-bw, or one of {', '.join(KNOWN_DEVICES)}")
        pf, pb, src = p
    backend = args.backend or (args.device if args.device in ("cpu", "cuda") else None)
    # Work per op from any backend's rows (the shapes are the same), times from `backend`'s.
    work, measured = {}, {}
    for b in run.benches:
        if b.batch != args.batch and b.op != "adam/update":
            continue
        if b.variant:  # the variant rows time kernels inside the ops (see `variants`)
            continue
        work.setdefault(b.op, b)
        if backend and b.backend == backend:
            measured[b.op] = b.seconds
    if "train_step" not in work:
        sys.exit(f"bench_report: the run has no train_step at batch {args.batch}")
    print(f"peaks: {pf / 1e9:,.0f} GFLOP/s, {pb / 1e9:,.1f} GB/s ({src}); batch {args.batch}\n")
    rows = []
    total_floor = 0.0
    for op, b in work.items():
        floor = max(b.flop / pf, b.bytes / pb)
        bound = "compute" if b.flop / pf >= b.bytes / pb else "memory"
        t = measured.get(op)
        if op != "train_step":
            total_floor += floor
        rows.append([op, fmt_num(b.flop / 1e6), fmt_num(b.bytes / 1e6), bound, fmt_time(floor),
                     fmt_time(t) if t else "-", f"{t / floor:.1f}x" if t else "-"])
    print_table(["op", "MFLOP", "MB", "bound", "floor", "measured", "gap"], rows)
    steps = math.ceil(TRAIN_IMAGES / args.batch)
    step = work["train_step"]
    step_floor = max(step.flop / pf, step.bytes / pb)
    print(f"\none step: {step.flop / 1e9:.3g} GFLOP, {step.bytes / 1e6:.4g} MB;"
          f" floor of the whole step {fmt_time(step_floor)},"
          f" sum of the ops' floors {fmt_time(total_floor)}")
    print(f"one epoch ({TRAIN_IMAGES} images, {steps} steps of at most {args.batch}):"
          f" floor {fmt_time(steps * step_floor)} (whole step),"
          f" {fmt_time(steps * total_floor)} (op by op)")
    if "train_step" in measured:
        print(f"measured: {fmt_time(steps * measured['train_step'])} per epoch"
              f" ({measured['train_step'] / total_floor:.1f}x the op-by-op floor)")


def variant_key(v):
    return int(v[1:]) if v[1:].isdigit() else 0


def cmd_variants(args):
    run = Run(args.run, args.stat)
    rx = re.compile(args.filter) if args.filter else None
    groups = {}
    for b in run.benches:
        if b.variant and (rx is None or rx.search(b.name)):
            groups.setdefault((b.backend, b.variant_op, b.batch), []).append(b)
    if not groups:
        sys.exit(f"bench_report: no variant rows (<backend>/<op>/v<N>/<batch>) in {args.run}")
    print_peaks(run, sorted({k[0] for k in groups}))
    print()
    rows, winners = [], []
    for (backend, op, batch), benches in groups.items():
        p = run.peak(backend)
        base = next((b for b in benches if b.variant == "v0"), None)
        ranked = sorted(benches, key=lambda b: (b.seconds, variant_key(b.variant)))
        label = f"{backend}/{op}" + (f"/{batch}" if batch is not None else "")
        for rank, b in enumerate(ranked, 1):
            floor = max(b.flop / p[0], b.bytes / p[1]) if p else None
            rows.append([label if rank == 1 else "", str(rank), b.variant, fmt_time(b.seconds),
                         fmt_time(floor) if floor else "-",
                         fmt_num(100 * floor / b.seconds, 2) if floor else "-",
                         f"{base.seconds / b.seconds:.2f}x" if base else "-"])
        best = ranked[0]
        if base and best is not base and base.seconds / best.seconds > 1.05:
            winners.append(f"{label}: {best.variant} ({base.seconds / best.seconds:.2f}x v0)")
    print_table(["op", "rank", "variant", "time", "floor", "%roof", "vs v0"], rows)
    print("\nfloor = max(FLOP / peak FLOP/s, bytes / peak B/s) of the row's own work;"
          " %roof = floor / time; vs v0 = v0's time / this time.")
    if winners:
        print("faster than v0 by more than 5%: " + "; ".join(winners))
    else:
        print("no variant beats v0 by more than 5%")


# --- roofline picture ---------------------------------------------------------------------------

BATCH_COLORS = {1: "#6a3d9a", 8: "#1f78b4", 32: "#33a02c", 128: "#e31a1c", 512: "#ff7f00",
                1024: "#b15928", None: "#444444"}
ROOF_COLORS = {"cpu": "#1f4e79", "cuda": "#76b900"}


def decades(lo, hi):
    return range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)


def tick_label(v):
    if v >= 1:
        return f"{v:,.0f}"
    return f"{v:g}"


class Labeller:
    """Greedy label placement: the first spot around a point that overlaps nothing placed."""

    def __init__(self, box):
        self.box = box  # x0, y0, x1, y1 of the plot area
        self.taken = []

    def occupy(self, rect):
        self.taken.append(rect)

    def overlap(self, r):
        area = 0.0
        for t in self.taken:
            w = min(r[2], t[2]) - max(r[0], t[0])
            h = min(r[3], t[3]) - max(r[1], t[1])
            if w > 0 and h > 0:
                area += w * h
        x0, y0, x1, y1 = self.box
        outside = (max(0, x0 - r[0]) + max(0, r[2] - x1)) * 20 + (max(0, y0 - r[1]) +
                                                                 max(0, r[3] - y1)) * 20
        return area + outside * 100

    def place(self, x, y, w, h):
        best = None
        for dist in (6, 14, 26, 40, 58):
            for dx, dy in ((1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (-1, -1), (1, 1), (-1, 1)):
                lx = x + dx * dist + (0 if dx > 0 else -w if dx < 0 else -w / 2)
                ly = y + dy * dist + (h / 2 if dy == 0 else 0 if dy > 0 else 0)
                rect = (lx, ly - h + 2, lx + w, ly + 2)
                cost = self.overlap(rect) + dist * 0.01
                if best is None or cost < best[0]:
                    best = (cost, lx, ly, rect, dist)
            if best[0] < 1:
                break
        _, lx, ly, rect, dist = best
        self.occupy(rect)
        return lx, ly, dist > 6


def cmd_roofline(args):
    run = Run(args.run, args.stat)
    benches = run.select(args.filter)
    backends = sorted({b.backend for b in benches})
    peaks = {be: run.peak(be) for be in backends if run.peak(be)}
    plotted = [b for b in benches if b.flop > 0 and b.bytes > 0]
    skipped = [b for b in benches if not (b.flop > 0 and b.bytes > 0)]
    if not plotted:
        sys.exit("bench_report: nothing to plot")

    width, height = args.width, args.height
    left, right, top, bottom = 80, 30, 60, 70 + 14 * math.ceil(len(skipped) / 2)
    px0, px1, py0, py1 = left, width - right, top, height - bottom

    ai = [b.flop / b.bytes for b in plotted]
    perf = [b.flop / b.seconds for b in plotted]
    xs_all = ai + [p[0] / p[1] for p in peaks.values()]
    ys_all = perf + [p[0] for p in peaks.values()]
    x_lo, x_hi = 10 ** math.floor(math.log10(min(xs_all) / 1.5)), 10 ** math.ceil(
        math.log10(max(xs_all) * 1.5))
    y_lo, y_hi = 10 ** math.floor(math.log10(min(ys_all) / 1.5)), 10 ** math.ceil(
        math.log10(max(ys_all) * 1.5))

    def sx(v):
        return px0 + (math.log10(v) - math.log10(x_lo)) / (
            math.log10(x_hi) - math.log10(x_lo)) * (px1 - px0)

    def sy(v):
        return py1 - (math.log10(v) - math.log10(y_lo)) / (
            math.log10(y_hi) - math.log10(y_lo)) * (py1 - py0)

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    title = args.title or f"Roofline: {run.path}"
    svg.append(f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="16" '
               f'font-weight="bold">{escape(title)}</text>')
    sub = "; ".join(f"{be}: {p[0] / 1e9:.0f} GFLOP/s, {p[1] / 1e9:.0f} GB/s" for be, p in
                    peaks.items())
    svg.append(f'<text x="{width / 2}" y="42" text-anchor="middle" font-size="11" '
               f'fill="#555">{escape(sub)} (peaks from the run\'s context)</text>')

    # Grid and axes: one line per decade.
    for k in decades(x_lo, x_hi):
        v = 10.0 ** k
        if not x_lo <= v <= x_hi:
            continue
        x = sx(v)
        svg.append(f'<line x1="{x:.1f}" y1="{py0}" x2="{x:.1f}" y2="{py1}" stroke="#e4e4e4"/>')
        svg.append(f'<text x="{x:.1f}" y="{py1 + 16}" text-anchor="middle" font-size="11">'
                   f'{tick_label(v)}</text>')
    for k in decades(y_lo, y_hi):
        v = 10.0 ** k
        if not y_lo <= v <= y_hi:
            continue
        y = sy(v)
        svg.append(f'<line x1="{px0}" y1="{y:.1f}" x2="{px1}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        svg.append(f'<text x="{px0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{tick_label(v / 1e9)}</text>')
    svg.append(f'<rect x="{px0}" y="{py0}" width="{px1 - px0}" height="{py1 - py0}" '
               f'fill="none" stroke="#333"/>')
    svg.append(f'<text x="{(px0 + px1) / 2}" y="{py1 + 36}" text-anchor="middle" font-size="12">'
               f'arithmetic intensity (FLOP per minimum byte)</text>')
    svg.append(f'<text transform="translate(22,{(py0 + py1) / 2}) rotate(-90)" '
               f'text-anchor="middle" font-size="12">GFLOP/s</text>')

    labeller = Labeller((px0, py0, px1, py1))
    # Roofs: bandwidth * intensity up to the ridge, then the FP32 peak.
    for be, (pf, pb, _) in peaks.items():
        color = ROOF_COLORS.get(be, "#000")
        ridge = pf / pb
        xa = x_lo
        xb = min(ridge, x_hi)
        pts = [(sx(xa), sy(max(pb * xa, y_lo))), (sx(xb), sy(pb * xb))]
        if ridge < x_hi:
            pts.append((sx(x_hi), sy(pf)))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        svg.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5" '
                   f'opacity="0.8"/>')
        label = f"{be} FP32 peak {pf / 1e9:.0f} GFLOP/s"
        lx = px1 - 7 * len(label) - 6
        svg.append(f'<text x="{lx:.1f}" y="{sy(pf) - 6:.1f}" font-size="11" fill="{color}">'
                   f'{escape(label)}</text>')
        labeller.occupy((lx, sy(pf) - 18, px1, sy(pf) - 2))
        # The bandwidth label sits just above the slope, a decade and a half left of the ridge
        # (points are all below the roofs); its bounding box is kept free of point labels.
        bx = max(x_lo * 1.2, min(ridge, x_hi) / 30)
        text = f"{be} {pb / 1e9:.0f} GB/s"
        angle = -math.degrees(math.atan2(sy(pb * bx) - sy(pb * bx * 10), sx(bx * 10) - sx(bx)))
        tx, ty = sx(bx), sy(pb * bx) - 6
        svg.append(f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="11" fill="{color}" '
                   f'transform="rotate({angle:.1f} {tx:.1f} {ty:.1f})">{escape(text)}</text>')
        run_len = 6.5 * len(text)
        ex = tx + run_len * math.cos(math.radians(angle))
        ey = ty + run_len * math.sin(math.radians(angle))
        labeller.occupy((min(tx, ex) - 2, min(ty, ey) - 12, max(tx, ex) + 2, max(ty, ey) + 4))

    # Points, then labels (placed after every point is known, so labels avoid all points).
    coords = []
    for b in plotted:
        x, y = sx(b.flop / b.bytes), sy(b.flop / b.seconds)
        coords.append((b, x, y))
        labeller.occupy((x - 4, y - 4, x + 4, y + 4))
    for b, x, y in coords:
        color = BATCH_COLORS.get(b.batch, "#444")
        if b.backend == "cuda":
            svg.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" '
                       f'fill="{color}" stroke="white" stroke-width="0.8"/>')
        else:
            svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.2" fill="{color}" '
                       f'stroke="white" stroke-width="0.8"/>')
    order = sorted(coords, key=lambda c: (c[1], c[2]))
    for b, x, y in order:
        text = b.name if len(backends) > 1 else b.name.split("/", 1)[1]
        w, h = 5.6 * len(text), 10
        lx, ly, lead = labeller.place(x, y, w, h)
        color = BATCH_COLORS.get(b.batch, "#444")
        if lead:
            cx = min(max(x, lx), lx + w)
            cy = min(max(y, ly - h + 2), ly + 2)
            svg.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{cx:.1f}" y2="{cy:.1f}" '
                       f'stroke="{color}" stroke-width="0.6" opacity="0.7"/>')
        svg.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" fill="{color}">'
                   f'{escape(text)}</text>')

    # Legend: batch colours and backend markers.
    batches = sorted({b.batch for b in plotted if b.batch is not None})
    lx = px0 + 10
    ly = py0 + 16
    svg.append(f'<rect x="{lx - 6}" y="{ly - 13}" width="{92}" '
               f'height="{18 + 15 * (len(batches) + len(backends))}" fill="white" '
               f'stroke="#bbb" opacity="0.9"/>')
    for i, n in enumerate(batches):
        yy = ly + 15 * i
        svg.append(f'<circle cx="{lx + 4}" cy="{yy - 4}" r="4.2" fill="{BATCH_COLORS[n]}"/>')
        svg.append(f'<text x="{lx + 14}" y="{yy}" font-size="11">batch {n}</text>')
    for j, be in enumerate(backends):
        yy = ly + 15 * (len(batches) + j)
        marker = (f'<rect x="{lx}" y="{yy - 8}" width="8" height="8" fill="#777"/>'
                  if be == "cuda" else f'<circle cx="{lx + 4}" cy="{yy - 4}" r="4.2" fill="#777"/>')
        svg.append(marker)
        svg.append(f'<text x="{lx + 14}" y="{yy}" font-size="11">{escape(be)}</text>')

    if skipped:
        y0 = py1 + 56
        svg.append(f'<text x="{px0}" y="{y0}" font-size="11" fill="#333">Not on the plot '
                   f'(0 FLOP by the convention; their bandwidth):</text>')
        for i, b in enumerate(skipped):
            col, row = i % 2, i // 2
            p = peaks.get(b.backend)
            pct = f", {100 * b.bytes / b.seconds / p[1]:.1f}% of peak" if p else ""
            svg.append(f'<text x="{px0 + col * (px1 - px0) / 2:.1f}" y="{y0 + 14 * (row + 1)}" '
                       f'font-size="10" fill="#555">{escape(b.name)}: '
                       f'{b.bytes / b.seconds / 1e9:.2f} GB/s{pct}</text>')
    svg.append("</svg>")
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n".join(svg) + "\n")
    print(f"wrote {args.output}: {len(plotted)} points"
          + (f", {len(skipped)} listed below the plot (0 FLOP)" if skipped else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="time, GFLOP/s, GB/s and % of peak per benchmark")
    t.add_argument("run")
    t.add_argument("--filter", help="regular expression on the benchmark name")
    t.set_defaults(func=cmd_table)
    r = sub.add_parser("roofline", help="a roofline picture as SVG")
    r.add_argument("run")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--filter", default=r"^[^/]+/(?!.*/v\d+/)[^ ]*/128$|/adam/",
                   help="regular expression on the benchmark name (default: batch 128 and Adam,"
                        " not the variant rows; '.' for every benchmark)")
    r.add_argument("--title")
    r.add_argument("--width", type=int, default=1100)
    r.add_argument("--height", type=int, default=760)
    r.set_defaults(func=cmd_roofline)
    c = sub.add_parser("compare", help="speed-up per benchmark between two runs")
    c.add_argument("before")
    c.add_argument("after")
    c.add_argument("--filter", help="regular expression on the benchmark name")
    c.set_defaults(func=cmd_compare)
    f = sub.add_parser("floor", help="the floor of a step and of an epoch")
    f.add_argument("run")
    f.add_argument("--batch", type=int, default=128)
    f.add_argument("--device", default="cpu",
                   help=f"cpu or cuda (the run's peaks), or one of {', '.join(KNOWN_DEVICES)}")
    f.add_argument("--backend", help="whose measured times to set against the floor "
                                     "(default: the device, when it is cpu or cuda)")
    f.add_argument("--peak-flops", type=float)
    f.add_argument("--peak-bw", type=float)
    f.set_defaults(func=cmd_floor)
    v = sub.add_parser("variants", help="the kernel variants of each op ranked against its floor")
    v.add_argument("run")
    v.add_argument("--filter", help="regular expression on the benchmark name")
    v.set_defaults(func=cmd_variants)
    for p in (t, r, c, f, v):
        p.add_argument("--stat", choices=("median", "min"), default="median",
                       help="with --benchmark_repetitions: the median of the repetitions' times"
                            " (default) or the fastest, e.g. on a shared machine")
    args = ap.parse_args(argv)
    if hasattr(signal, "SIGPIPE"):  # `bench_report.py table X | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args.func(args)


if __name__ == "__main__":
    main()
