#!/usr/bin/python3
"""Tests of tools/bench_report.py on a made-up run whose numbers are known, and, when the
environment names a bench_kernels binary (MG_BENCH_KERNELS), on a short real run of it.

Run: python3 bench/test_bench_report.py   (ctest runs it as bench_report).
"""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import bench_report  # noqa: E402


def row(name, ms, flop, nbytes, **extra):
    """A Google Benchmark JSON row for a call of `ms` milliseconds doing flop and nbytes."""
    s = ms * 1e-3
    r = {"name": name + "/manual_time", "run_name": name + "/manual_time", "run_type": "iteration",
         "iterations": 10, "real_time": ms, "cpu_time": ms / 2, "time_unit": "ms",
         "FLOP/s": flop / s, "B/s": nbytes / s}
    r.update(extra)
    return r


def context(flops=100e9, bw=20e9):
    return {"cpu_peak_flops": f"{flops:.4g}", "cpu_peak_bytes_per_s": f"{bw:.4g}",
            "cpu_peak_source": "test", "cuda": "absent: test"}


def run_main(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench_report.main(list(argv))
    return out.getvalue()


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name, benchmarks, ctx=None):
        path = os.path.join(self.dir.name, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"context": ctx or context(), "benchmarks": benchmarks}, f)
        return path

    def test_table_rates_and_percentages(self):
        # 2 GFLOP and 10 MB in 20 ms: 100 GFLOP/s (100% of peak), 0.5 GB/s (2.5%); floor 20 ms.
        path = self.write("a.json", [row("cpu/conv2d_1/forward/128", 20, 2e9, 10e6),
                                     row("cpu/max_pooling2d/backward/128", 1, 0, 10e6)])
        out = run_main("table", path)
        line = next(l for l in out.splitlines() if l.startswith("cpu/conv2d_1/forward/128"))
        cols = line.split()
        self.assertEqual(cols[1:3], ["20", "ms"])
        self.assertEqual(cols[3:9], ["2000", "10", "100", "0.5", "100", "2.5"])
        self.assertEqual(cols[9:12], ["20", "ms", "100"])
        pool = next(l for l in out.splitlines() if l.startswith("cpu/max_pooling2d/backward"))
        # 10 MB in 1 ms = 10 GB/s = 50% of 20 GB/s; the floor is 0.5 ms, 50% of the time.
        self.assertEqual(pool.split()[-3:], ["500", "us", "50"])

    def test_median_of_repetitions(self):
        rows = [row("cpu/train_step/128", ms, 1e9, 1e6) for ms in (30, 10, 20)]
        for r in rows:
            r["run_type"] = "iteration"
        med = dict(rows[2], run_type="aggregate", aggregate_name="median",
                   name="cpu/train_step/128/manual_time_median")
        mean = dict(rows[0], run_type="aggregate", aggregate_name="mean",
                    name="cpu/train_step/128/manual_time_mean")
        run = bench_report.Run(self.write("r.json", rows + [mean, med]))
        self.assertEqual(len(run.benches), 1)
        self.assertAlmostEqual(run.benches[0].seconds, 0.020)
        self.assertAlmostEqual(run.benches[0].flop, 1e9)
        # Without aggregates, the median of the repetitions; or the fastest.
        run = bench_report.Run(self.write("s.json", rows))
        self.assertAlmostEqual(run.benches[0].seconds, 0.020)
        run = bench_report.Run(self.write("s.json", rows), stat="min")
        self.assertAlmostEqual(run.benches[0].seconds, 0.010)
        self.assertAlmostEqual(run.benches[0].flop, 1e9)
        # Only the aggregates (--benchmark_report_aggregates_only): the median row.
        run = bench_report.Run(self.write("t.json", [mean, med]))
        self.assertAlmostEqual(run.benches[0].seconds, 0.020)

    def test_names(self):
        b = bench_report.Bench("cpu/conv2d_1/backward/512", 1, 1, 1, 1)
        self.assertEqual((b.backend, b.op, b.batch), ("cpu", "conv2d_1/backward", 512))
        b = bench_report.Bench("cuda/adam/update", 1, 1, 1, 1)
        self.assertEqual((b.backend, b.op, b.batch), ("cuda", "adam/update", None))

    def test_compare(self):
        before = self.write("b.json", [row("cpu/dense/forward/128", 10, 1e8, 1e6),
                                       row("cpu/dense/backward/128", 10, 1e8, 1e6),
                                       row("cpu/gone/128", 1, 1, 1)])
        after = self.write("c.json", [row("cpu/dense/forward/128", 5, 1e8, 1e6),
                                      row("cpu/dense/backward/128", 20, 1e8, 1e6),
                                      row("cpu/new/128", 1, 1, 1)])
        out = run_main("compare", before, after)
        self.assertRegex(out, r"cpu/dense/forward/128\s+10 ms\s+5 ms\s+2\.00x\s+faster")
        self.assertRegex(out, r"cpu/dense/backward/128\s+10 ms\s+20 ms\s+0\.50x\s+slower")
        self.assertIn("geometric mean speed-up over 2 benchmarks: 1.000x", out)
        self.assertIn("only before: cpu/gone/128", out)
        self.assertIn("only after: cpu/new/128", out)

    def test_roofline_svg(self):
        path = self.write("a.json", [row("cpu/conv2d_1/forward/128", 20, 2e9, 10e6),
                                     row("cpu/dropout/forward/128", 1, 1e6, 4e6),
                                     row("cpu/max_pooling2d/backward/128", 1, 0, 10e6),
                                     row("cpu/adam/update", 1, 5e6, 12e6),
                                     row("cpu/dense/forward/8", 1, 1e6, 1e6)])
        svg = os.path.join(self.dir.name, "r.svg")
        out = run_main("roofline", path, "-o", svg)
        self.assertIn("3 points", out)  # batch 128 and Adam by default; the pool listed below
        root = ET.parse(svg).getroot()
        ns = "{http://www.w3.org/2000/svg}"
        texts = [t.text for t in root.iter(ns + "text")]
        for label in ("conv2d_1/forward/128", "dropout/forward/128", "adam/update"):
            self.assertIn(label, texts)
        self.assertNotIn("dense/forward/8", texts)
        self.assertTrue(any(t and "max_pooling2d/backward/128" in t for t in texts))
        self.assertEqual(len(list(root.iter(ns + "polyline"))), 1)  # the CPU's two roofs
        # The legend's marker plus one circle per point.
        self.assertEqual(len(list(root.iter(ns + "circle"))), 3 + 1 + 1)
        run_main("roofline", path, "-o", svg, "--filter", ".")
        texts = [t.text for t in ET.parse(svg).getroot().iter(ns + "text")]
        self.assertIn("dense/forward/8", texts)

    def test_floor(self):
        # A step of 1 GFLOP and 2 MB: on 100 GFLOP/s, 20 GB/s the floor is 10 ms (compute).
        path = self.write("a.json", [row("cpu/train_step/128", 50, 1e9, 2e6),
                                     row("cpu/dense/forward/128", 5, 2e8, 1e6)])
        out = run_main("floor", path)
        self.assertRegex(out, r"train_step\s+1000\s+2\s+compute\s+10 ms\s+50 ms\s+5\.0x")
        self.assertIn("383 steps", out)
        # The sum of the ops' floors (dense: 2 ms) is what the step is set against.
        self.assertIn("floor 3.83 s (whole step), 766 ms (op by op)", out)
        out = run_main("floor", path, "--device", "h100-sxm", "--backend", "cpu")
        self.assertIn("67,000 GFLOP/s, 3,350.0 GB/s (table: h100-sxm)", out)

    def variant_run(self):
        # A GPU of 1000 GFLOP/s and 1000 GB/s; im2col moves 10 MB (floor 10 us).
        ctx = {"cuda_peak_flops": "1e12", "cuda_peak_bytes_per_s": "1e12",
               "cuda_peak_source": "test", "cuda": "test GPU"}
        return self.write("v.json", [
            row("cuda/conv2d_1/im2col/v0/128", 0.040, 0, 10e6),
            row("cuda/conv2d_1/im2col/v1/128", 0.020, 0, 10e6),
            row("cuda/max_pooling2d/maxpool_forward/v0/128", 0.010, 1e6, 5e6),
            row("cuda/max_pooling2d/maxpool_forward/v1/128", 0.0102, 1e6, 5e6),
            row("cuda/train_step/v0/128", 0.400, 1e8, 100e6),
            row("cuda/train_step/v1/128", 0.300, 1e8, 100e6),
            row("cuda/train_step/128", 0.400, 1e8, 100e6),
            row("cuda/conv2d_1/forward/128", 0.100, 1e8, 20e6)], ctx)

    def test_names_of_variant_rows(self):
        b = bench_report.Bench("cuda/conv2d_1/conv_grad_prepare/v1/128", 1, 1, 1, 1)
        self.assertEqual((b.backend, b.variant_op, b.variant, b.batch),
                         ("cuda", "conv2d_1/conv_grad_prepare", "v1", 128))
        b = bench_report.Bench("cuda/train_step/v110000/128", 1, 1, 1, 1)
        self.assertEqual((b.variant_op, b.variant), ("train_step", "v110000"))
        self.assertIsNone(bench_report.Bench("cuda/conv2d_1/forward/128", 1, 1, 1, 1).variant)

    def test_variants_ranks_each_op_against_its_floor(self):
        out = run_main("variants", self.variant_run())
        # im2col: v1 first (20 us, floor 10 us: 50% of the roof, 2x v0), then v0 (25%, 1x).
        self.assertRegex(out, r"cuda/conv2d_1/im2col/128\s+1\s+v1\s+20 us\s+10 us\s+50\s+2\.00x")
        self.assertRegex(out, r"\n\s+2\s+v0\s+40 us\s+10 us\s+25\s+1\.00x")
        # The step: floor 100 us (100 MFLOP and 100 MB), 33% of v1's 300 us.
        self.assertRegex(out, r"cuda/train_step/128\s+1\s+v1\s+300 us\s+100 us\s+33\s+1\.33x")
        # Pool: v1 2% slower, ranked second.
        self.assertRegex(out, r"cuda/max_pooling2d/maxpool_forward/128\s+1\s+v0\s+10 us")
        self.assertIn("cuda/conv2d_1/im2col/128: v1 (2.00x v0)", out)
        self.assertIn("cuda/train_step/128: v1 (1.33x v0)", out)
        self.assertNotIn("maxpool_forward/128: v1", out)
        self.assertNotIn("conv2d_1/forward", out)  # not a variant row
        out = run_main("variants", self.variant_run(), "--filter", "maxpool")
        self.assertIn("no variant beats v0 by more than 5%", out)

    def test_floor_and_roofline_leave_the_variant_rows_out(self):
        path = self.variant_run()
        out = run_main("floor", path, "--device", "cuda")
        self.assertNotIn("im2col", out)
        self.assertNotIn("train_step/v1", out)
        svg = os.path.join(self.dir.name, "r.svg")
        self.assertIn("2 points", run_main("roofline", path, "-o", svg))

    def test_variants_without_variant_rows_is_an_error(self):
        path = self.write("a.json", [row("cpu/dense/forward/128", 10, 1e8, 1e6)])
        with self.assertRaises(SystemExit) as e:
            run_main("variants", path)
        self.assertIn("no variant rows", str(e.exception))



@unittest.skipUnless(os.environ.get("MG_BENCH_KERNELS"), "MG_BENCH_KERNELS names no binary")
class RealRunTest(unittest.TestCase):
    """A short real run: the names, counters and context the report relies on are there."""

    def test_short_run(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "run.json")
            subprocess.run([os.environ["MG_BENCH_KERNELS"], "--benchmark_filter=^cpu/.*/8/|adam",
                            "--benchmark_min_time=0.01", f"--benchmark_out={out}",
                            "--benchmark_out_format=json"], check=True, stdout=subprocess.DEVNULL)
            with open(out, encoding="utf-8") as f:
                data = json.load(f)
            ctx = data["context"]
            self.assertGreater(float(ctx["cpu_peak_flops"]), 1e9)
            self.assertGreater(float(ctx["cpu_peak_bytes_per_s"]), 1e8)
            self.assertIn("cuda", ctx)
            names = [re.sub(r"/manual_time$", "", b["name"]) for b in data["benchmarks"]]
            expected = {"cpu/gather/forward/8", "cpu/conv2d/forward/8", "cpu/conv2d/backward/8",
                        "cpu/conv2d_1/backward/8", "cpu/max_pooling2d/backward/8",
                        "cpu/dropout_1/forward/8", "cpu/dense_1/backward/8",
                        "cpu/softmax_xent/forward_backward/8", "cpu/train_step/8",
                        "cpu/conv2d+max_pooling2d/forward/8",
                        "cpu/conv2d_1+max_pooling2d_1/backward/8", "cpu/adam/update"}
            self.assertTrue(expected <= set(names), expected - set(names))
            # 19 ops at batch 8, the 4 fused conv + pool ops, and Adam
            self.assertEqual(len(names), 24)
            for b in data["benchmarks"]:
                for key in ("FLOP/s", "B/s", "pct_peak_flop", "pct_peak_bw", "pct_roof"):
                    self.assertIn(key, b, b["name"])
                self.assertGreater(b["B/s"], 0, b["name"])
                self.assertGreater(b["pct_roof"], 0, b["name"])
            table = run_main("table", out)
            self.assertIn("cpu/train_step/8", table)

    def test_a_bad_variant_set_is_refused_before_anything_runs(self):
        for args, env in ((["--variants=im2col=7"], {}),
                          ([], {"MNIST_GPU_VARIANTS": "nosuchop=1"})):
            r = subprocess.run([os.environ["MG_BENCH_KERNELS"], "--benchmark_list_tests", *args],
                               env={**os.environ, **env}, capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("bench_kernels: ", r.stderr)
            self.assertIn("conv_grad_prepare (0..1)", r.stderr)


if __name__ == "__main__":
    unittest.main()
