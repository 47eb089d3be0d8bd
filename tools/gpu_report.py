#!/usr/bin/env python3
"""gpu_report: reads what tools/gpu_run.sh's steps leave behind and prints one line (or one table)
of it for the summary. Standard library only: it runs on the GPU machine's python3 as on ours.

    gpu_report.py gtest LOG [--failed FILE]   "passed P failed F skipped S" of a GoogleTest log;
                                              the failed (or unfinished) tests' names to FILE
    gpu_report.py sanitizer LOG               compute-sanitizer's count, and how many reports
                                              name our kernels (mg::) or someone else's
    gpu_report.py salvage FILE                makes a cut-off Google Benchmark JSON valid (in
                                              place), keeping every complete benchmark
    gpu_report.py bench FILE                  how many benchmarks, and the training step's time
    gpu_report.py train LOG [--min-accuracy A]  epoch times and the test accuracy of a
                                              `mnist_gpu train` log; exit 1 below A
    gpu_report.py compare --ours LABEL=METRICS_JSON ... --peer LABEL=PEER_JSON ...
                                              per-epoch training seconds side by side, with the
                                              ratio of each peer to ours at the same precision
"""
import argparse
import json
import os
import re
import sys

def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_text(path):
    with open(path, errors="replace") as f:
        return f.read()


# --- GoogleTest -------------------------------------------------------------------------------

_RUN = re.compile(r"^\[ RUN      \] (\S+)")
_END = re.compile(r"^\[ +(OK|FAILED|SKIPPED) +\] (\S+) \(\d+ ms\)")


def gtest_results(text):
    """{test name: "OK" | "FAILED" | "SKIPPED" | "UNFINISHED"} in the order they started, and the
    first skip reason seen. A test that started and never ended crashed or hung (a timeout)."""
    results, reason, after_skipped, ever_failed = {}, None, False, set()
    for line in text.splitlines():
        m = _RUN.match(line)
        if m:
            results[m.group(1)] = "UNFINISHED"
            continue
        m = _END.match(line)
        if m and m.group(2) in results:
            results[m.group(2)] = m.group(1)
            if m.group(1) == "FAILED":
                ever_failed.add(m.group(2))  # with --gtest_repeat, a failure in any round counts
            continue
        # GTEST_SKIP() prints "file:line: Skipped", then the reason, before "[  SKIPPED ]".
        if line.rstrip().endswith(": Skipped"):
            after_skipped = True
        elif after_skipped and line.strip():
            reason = reason or line.strip()
            after_skipped = False
    for name in ever_failed:
        if results[name] != "UNFINISHED":
            results[name] = "FAILED"
    return results, reason


def cmd_gtest(args):
    with open(args.log, errors="replace") as f:
        results, reason = gtest_results(f.read())
    counts = {k: sum(1 for v in results.values() if v == k)
              for k in ("OK", "FAILED", "SKIPPED", "UNFINISHED")}
    line = (f"passed {counts['OK']} failed {counts['FAILED']} skipped {counts['SKIPPED']}")
    if counts["UNFINISHED"]:
        line += f" unfinished {counts['UNFINISHED']} (crashed or cut off)"
    if counts["SKIPPED"] and reason:
        line += f"; skip reason: {reason[:100]}"
    print(line)
    if args.failed:
        with open(args.failed, "a") as f:
            for name, result in results.items():
                if result in ("FAILED", "UNFINISHED"):
                    f.write(f"test {name}\n")
    return 0


# --- compute-sanitizer ------------------------------------------------------------------------

# A report starts with one of these after the "========= " prefix; the frames that follow name
# the kernel ("at mg::kern::...::im2col_3x3_kernel(...)", "Write access at ... in ...").
_REPORT_START = re.compile(
    r"^=+ (Invalid |Uninitialized |Error: Race|Warning: Race|Race reported|Program hit|"
    r"Leaked |Potential |Barrier error|Unused memory|Error: |Warning: )")
_SUMMARY = {"racecheck": re.compile(r"RACECHECK SUMMARY: (\d+) hazard"),
            "memcheck": re.compile(r"ERROR SUMMARY: (\d+) error"),
            "initcheck": re.compile(r"ERROR SUMMARY: (\d+) error")}


def sanitizer_counts(tool, text):
    """(the tool's own summary count, or None when it printed none; reports naming our kernels;
    other reports). racecheck sums up as "RACECHECK SUMMARY: N hazards displayed (E errors, W
    warnings)", the others as "ERROR SUMMARY: N errors"; the last run in the log counts."""
    total, ours, others = None, 0, 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _SUMMARY[tool].search(line)
        if m:
            total = int(m.group(1))
            continue
        if _REPORT_START.match(line) and "SUMMARY" not in line:
            frames = " ".join(lines[i:i + 4])
            if "mg::" in frames or "_ZN2mg" in frames:
                ours += 1
            else:
                others += 1
    return total, ours, others


def cmd_sanitizer(args):
    with open(args.log, errors="replace") as f:
        total, ours, others = sanitizer_counts(args.tool, f.read())
    unit = "hazards" if args.tool == "racecheck" else "errors"
    if total is None:
        print(f"no {args.tool} summary in the log (it did not finish)")
        return 1
    print(f"{total} {unit} ({ours} reports in our kernels, {others} elsewhere)")
    return 0 if total == 0 else 1


# --- Google Benchmark JSON --------------------------------------------------------------------

def salvage_benchmark_json(text):
    """The JSON Google Benchmark was writing when it was cut off, made valid: the context (if it
    was complete) and every complete entry of "benchmarks", with "truncated": true. Whole files
    come back unchanged (truncated: false)."""
    try:
        doc = json.loads(text)
        doc.setdefault("truncated", False)
        return doc
    except json.JSONDecodeError:
        pass
    dec = json.JSONDecoder()
    doc = {"context": {}, "benchmarks": [], "truncated": True}
    m = re.search(r'"context"\s*:\s*', text)
    if m:
        try:
            doc["context"], _ = dec.raw_decode(text, m.end())
        except json.JSONDecodeError:
            pass
    m = re.search(r'"benchmarks"\s*:\s*\[', text)
    if m:
        pos = m.end()
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text) or text[pos] != "{":
                break
            try:
                entry, pos = dec.raw_decode(text, pos)
            except json.JSONDecodeError:
                break
            doc["benchmarks"].append(entry)
    return doc


def cmd_salvage(args):
    text = read_text(args.file) if os.path.exists(args.file) else ""
    doc = salvage_benchmark_json(text)
    if not text.strip():
        doc["truncated"] = False  # nothing was cut: nothing was written
    tmp = args.file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.file)
    n = len(doc["benchmarks"])
    if not text.strip():
        print("0 benchmarks: no JSON was written (now an empty one)")
    else:
        print(f"{n} benchmarks" + (" (cut off: kept the complete ones)" if doc["truncated"] else ""))
    return 0


def cmd_bench(args):
    try:
        doc = read_json(args.file)
    except (OSError, json.JSONDecodeError) as e:
        print(f"no benchmark JSON: {e}")
        return 1
    rows = doc.get("benchmarks", [])
    errors = [r["name"] for r in rows if r.get("error_occurred")]
    parts = [f"{len(rows)} benchmarks" + (" (cut off)" if doc.get("truncated") else "")]
    for r in rows:  # names read cuda/<op>/<batch>/min_time:.../manual_time
        m = re.match(r"^cuda/(train_step(?:_eager)?)/128/", r.get("name", ""))
        if m:
            parts.append(f"{m.group(1)}/128 {r.get('real_time', float('nan')):.1f} "
                         f"{r.get('time_unit', '')}")
    if errors:
        parts.append(f"{len(errors)} with errors: {', '.join(errors[:3])}")
    cuda = doc.get("context", {}).get("cuda")
    if cuda and cuda.startswith("absent"):
        parts.append(cuda[:80])
    print("; ".join(parts))
    return 1 if errors or not rows else 0


# --- mnist_gpu train logs ---------------------------------------------------------------------

_EPOCH = re.compile(r"^Epoch (\d+)/(\d+) - (?:\d+/\d+ - )?([0-9.]+)s")
_TEST = re.compile(r"^test: loss=([0-9.naif]+) accuracy=([0-9.naif]+)")


def cmd_train(args):
    seconds, accuracy = [], None
    with open(args.log, errors="replace") as f:
        for line in f:
            m = _EPOCH.match(line)
            if m:
                seconds.append(float(m.group(3)))
            m = _TEST.match(line)
            if m:
                accuracy = float(m.group(2))
    if accuracy is None:
        print(f"no test line ({len(seconds)} epochs seen)")
        return 1
    line = "epochs " + " ".join(f"{s:.2f}" for s in seconds) + f" s; test accuracy {accuracy:.4f}"
    ok = True
    if args.min_accuracy is not None:
        ok = accuracy >= args.min_accuracy
        line += f" {'>=' if ok else '<'} {args.min_accuracy}"
    print(line)
    return 0 if ok else 1


# --- ours against PyTorch ---------------------------------------------------------------------

def _labelled(values, what):
    out = []
    for v in values or []:
        label, sep, path = v.partition("=")
        if not sep:
            raise SystemExit(f"gpu_report: {what} wants LABEL=FILE, got {v!r}")
        out.append((label, path))
    return out


def load_ours(path):
    """Training seconds per epoch and the precision, from mnist_gpu's metrics.json."""
    m = read_json(path)
    return {"seconds": list(m.get("timings", {}).get("epoch_seconds", [])),
            "precision": m.get("precision", "fp32"), "device": m.get("device", "?"),
            "accuracy": m.get("test", {}).get("accuracy")}


def load_peer(path):
    """Training seconds per epoch and the precision, from torch_peer.py --json."""
    p = read_json(path)
    return {"seconds": [h["train_seconds"] for h in p.get("history", [])],
            "precision": p.get("precision", "fp32"), "device": p.get("device_name", "?"),
            "accuracy": p.get("test_accuracy"), "flags": p.get("precision_flags", ""),
            "compiled": p.get("compiled"), "mode": p.get("compile_mode")}


def compare_table(ours, peers):
    """The lines of the table: per epoch, ours and each peer with the peer's time over ours (the
    run of ours at the peer's precision, else the first): above 1, ours is faster."""
    lines = []
    for label, o in ours:
        lines.append(f"ours  {label}: precision {o['precision']}, {o['device']}, "
                     f"test accuracy {o['accuracy']}")
    for label, p in peers:
        how = f"compiled ({p['mode'] or 'default'})" if p["compiled"] else "eager"
        lines.append(f"torch {label}: {how}, precision {p['precision']} ({p['flags']}), "
                     f"{p['device']}, test accuracy {p['accuracy']}")
    base = {}
    for label, o in ours:
        base.setdefault(o["precision"], (label, o))
    head = ["epoch"] + [f"ours {label}" for label, _ in ours]
    for label, p in peers:
        ref = base.get(p["precision"], (ours[0][0], ours[0][1]) if ours else (None, None))
        head += [f"torch {label}", f"/ours {ref[0]}" if ref[0] else "ratio"]
    lines.append("  ".join(f"{h:>14}" for h in head))
    n = max([len(o["seconds"]) for _, o in ours] + [len(p["seconds"]) for _, p in peers] + [0])

    def cell(v):
        return f"{v:14.3f}" if v is not None else f"{'-':>14}"

    for e in range(n):
        row = [f"{e + 1:>14}"]
        for _, o in ours:
            row.append(cell(o["seconds"][e] if e < len(o["seconds"]) else None))
        for _, p in peers:
            ref = base.get(p["precision"], (None, ours[0][1]) if ours else (None, None))[1]
            t = p["seconds"][e] if e < len(p["seconds"]) else None
            r = ref["seconds"][e] if ref and e < len(ref["seconds"]) else None
            row.append(cell(t))
            row.append(cell(t / r if t is not None and r else None))
        lines.append("  ".join(row))
    lines.append("(training seconds per epoch, validation excluded; ratio = PyTorch / ours: "
                 "above 1, ours is faster)")
    return lines


def cmd_compare(args):
    ours, peers, missing = [], [], []
    for label, path in _labelled(args.ours, "--ours"):
        if os.path.exists(path):
            ours.append((label, load_ours(path)))
        else:
            missing.append(f"ours  {label}: no {path} (the run did not finish)")
    for label, path in _labelled(args.peer, "--peer"):
        if os.path.exists(path):
            peers.append((label, load_peer(path)))
        else:
            missing.append(f"torch {label}: no {path} (the run did not finish)")
    if not ours and not peers:
        return 1  # nothing ran: nothing to say
    print("\n".join(missing + compare_table(ours, peers)))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gtest")
    p.add_argument("log")
    p.add_argument("--failed", help="append 'test NAME' lines of failed or unfinished tests")
    p.set_defaults(fn=cmd_gtest)
    p = sub.add_parser("sanitizer")
    p.add_argument("tool", choices=("memcheck", "racecheck", "initcheck"))
    p.add_argument("log")
    p.set_defaults(fn=cmd_sanitizer)
    p = sub.add_parser("salvage")
    p.add_argument("file")
    p.set_defaults(fn=cmd_salvage)
    p = sub.add_parser("bench")
    p.add_argument("file")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("train")
    p.add_argument("log")
    p.add_argument("--min-accuracy", type=float)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("compare")
    p.add_argument("--ours", action="append", metavar="LABEL=METRICS_JSON")
    p.add_argument("--peer", action="append", metavar="LABEL=PEER_JSON")
    p.set_defaults(fn=cmd_compare)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
