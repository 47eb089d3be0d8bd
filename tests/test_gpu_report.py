#!/usr/bin/python3
"""Tests of tools/gpu_report.py, the reader of the GPU check's logs, on made-up logs in the
formats GoogleTest, compute-sanitizer, Google Benchmark, mnist_gpu and tools/torch_peer.py
write. Run: python3 tests/test_gpu_report.py   (ctest runs it as gpu_report).
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import gpu_report  # noqa: E402

GTEST_LOG = """\
[==========] Running 5 tests from 2 test suites.
[ RUN      ] Cuda.Passes
[       OK ] Cuda.Passes (12 ms)
[ RUN      ] Cuda.Fails
tests/test_cuda.cpp:99: Failure
Expected equality of these values:
[  FAILED  ] Cuda.Fails (3 ms)
[ RUN      ] Grids/CudaOp.Skips/FullGrid
tests/test_cuda.cpp:183: Skipped
no CUDA GPU: no NVIDIA driver is installed (cudaErrorInsufficientDriver: ...)

[  SKIPPED ] Grids/CudaOp.Skips/FullGrid (0 ms)
[ RUN      ] Cuda.Crashes
"""

RACECHECK_LOG = """\
========= COMPUTE-SANITIZER
========= Error: Race reported between Write access at mg::kern::block_sum<double>(double, double *)+0x1a0 in device.cuh:32
=========     and Read access at mg::kern::block_sum<double>(double, double *)+0x1f0 in device.cuh:35 [128 hazards]
=========
========= Warning: Race reported between Write access at cutlass::Kernel2<cutlass_80_tensorop>(Params)+0x10
=========     and Write access at cutlass::Kernel2<cutlass_80_tensorop>(Params)+0x20 [4 hazards]
=========
========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)
"""

MEMCHECK_LOG = """\
========= COMPUTE-SANITIZER
[==========] 3 tests from 1 test suite ran. (800 ms total)
========= LEAK SUMMARY: 0 bytes leaked in 0 allocations
========= ERROR SUMMARY: 0 errors
"""

TRAIN_LOG = """\
data: data/mnist (70000 images; train 49000, val 10500, test 10500)
model: conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5 (421642 parameters), device cuda:0 NVIDIA H200 (sm_90), batch 128, lr 0.001, fp32
Epoch 1/3 - 383/383 - 1.52s - 4.0ms/step - loss: 0.2 - accuracy: 0.9 - val_loss: 0.1 - val_accuracy: 0.97
Epoch 2/3 - 383/383 - 0.71s - 1.9ms/step - loss: 0.1 - accuracy: 0.96 - val_loss: 0.05 - val_accuracy: 0.98
Epoch 3/3 - 383/383 - 0.70s - 1.8ms/step - loss: 0.08 - accuracy: 0.97 - val_loss: 0.04 - val_accuracy: 0.988
report: runs/x/report.html
test: loss=0.0400 accuracy=0.9871
"""


def bench_row(name, ms, **extra):
    r = {"name": name, "run_name": name, "run_type": "iteration", "iterations": 10,
         "real_time": ms, "cpu_time": ms, "time_unit": "us"}
    r.update(extra)
    return r


def run(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = gpu_report.main(list(argv))
    return rc, out.getvalue()


class Files(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class GTest(Files):
    def test_counts_every_outcome_and_lists_failed_and_unfinished_tests(self):
        failed = os.path.join(self.dir.name, "failed.txt")
        rc, out = run("gtest", self.write("t.log", GTEST_LOG), "--failed", failed)
        self.assertEqual(rc, 0)
        self.assertIn("passed 1 failed 1 skipped 1 unfinished 1", out)
        self.assertIn("skip reason: no CUDA GPU: no NVIDIA driver", out)
        self.assertEqual(gpu_report.read_text(failed).splitlines(), ["test Cuda.Fails", "test Cuda.Crashes"])

    def test_a_failure_in_any_repetition_counts(self):
        log = ("[ RUN      ] Cuda.Flaky\n[  FAILED  ] Cuda.Flaky (1 ms)\n"
               "[ RUN      ] Cuda.Flaky\n[       OK ] Cuda.Flaky (1 ms)\n")
        results, _ = gpu_report.gtest_results(log)
        self.assertEqual(results, {"Cuda.Flaky": "FAILED"})


class Sanitizer(Files):
    def test_racecheck_reads_its_own_summary_and_tells_our_kernels_from_cutlass(self):
        rc, out = run("sanitizer", "racecheck", self.write("r.log", RACECHECK_LOG))
        self.assertEqual(rc, 1)
        self.assertIn("2 hazards (1 reports in our kernels, 1 elsewhere)", out)

    def test_memcheck_with_no_errors_passes_and_a_leak_summary_is_not_the_count(self):
        rc, out = run("sanitizer", "memcheck", self.write("m.log", MEMCHECK_LOG))
        self.assertEqual(rc, 0)
        self.assertIn("0 errors (0 reports in our kernels, 0 elsewhere)", out)

    def test_no_summary_means_the_tool_did_not_finish(self):
        rc, out = run("sanitizer", "initcheck", self.write("i.log", "========= COMPUTE-SANITIZER\n"))
        self.assertEqual(rc, 1)
        self.assertIn("did not finish", out)
        # racecheck's summary is not memcheck's
        self.assertIsNone(gpu_report.sanitizer_counts("racecheck", MEMCHECK_LOG)[0])


class Benchmarks(Files):
    def doc(self):
        return {"context": {"cuda": "NVIDIA H200 (sm_90, 132 SMs)"},
                "benchmarks": [bench_row("cuda/conv2d/forward/128/min_time:0.020/manual_time", 30.5),
                               bench_row("cuda/train_step/128/min_time:0.020/manual_time", 812.25),
                               bench_row("cuda/adam/128/min_time:0.020/manual_time", 9.0)]}

    def test_a_whole_file_is_kept_as_it_is(self):
        path = self.write("b.json", json.dumps(self.doc()))
        rc, out = run("salvage", path)
        self.assertEqual(rc, 0)
        self.assertIn("3 benchmarks", out)
        doc = gpu_report.read_json(path)
        self.assertFalse(doc["truncated"])
        self.assertEqual(doc["benchmarks"], self.doc()["benchmarks"])

    def test_a_file_cut_inside_an_entry_keeps_the_complete_entries(self):
        text = json.dumps(self.doc(), indent=2)
        cut = text[:text.index('"cuda/adam') + 20]  # inside the third entry
        path = self.write("b.json", cut)
        with self.assertRaises(json.JSONDecodeError):
            json.loads(cut)
        rc, out = run("salvage", path)
        self.assertEqual(rc, 0)
        self.assertIn("2 benchmarks (cut off", out)
        doc = gpu_report.read_json(path)
        self.assertTrue(doc["truncated"])
        self.assertEqual(doc["context"], self.doc()["context"])
        self.assertEqual([b["real_time"] for b in doc["benchmarks"]], [30.5, 812.25])

    def test_an_empty_or_missing_file_becomes_valid_json(self):
        for path in (self.write("e.json", ""), os.path.join(self.dir.name, "missing.json")):
            run("salvage", path)
            self.assertEqual(gpu_report.read_json(path)["benchmarks"], [])

    def test_the_note_names_the_count_and_the_training_step(self):
        rc, out = run("bench", self.write("b.json", json.dumps(self.doc())))
        self.assertEqual(rc, 0)
        self.assertIn("3 benchmarks; train_step/128 812.2 us", out)
        doc = self.doc()
        doc["benchmarks"][0]["error_occurred"] = True
        rc, out = run("bench", self.write("b.json", json.dumps(doc)))
        self.assertEqual(rc, 1)
        self.assertIn("1 with errors", out)


class Train(Files):
    def test_epoch_times_and_the_accuracy_against_the_bar(self):
        log = self.write("t.log", TRAIN_LOG)
        rc, out = run("train", log, "--min-accuracy", "0.985")
        self.assertEqual(rc, 0)
        self.assertIn("epochs 1.52 0.71 0.70 s; test accuracy 0.9871 >= 0.985", out)
        rc, out = run("train", log, "--min-accuracy", "0.99")
        self.assertEqual(rc, 1)
        self.assertIn("< 0.99", out)
        rc, out = run("train", self.write("x.log", "mnist_gpu: error: --device cuda: no CUDA GPU\n"))
        self.assertEqual(rc, 1)
        self.assertIn("no test line", out)


class Compare(Files):
    def test_ratios_are_per_epoch_against_ours_at_the_peers_precision(self):
        ours32 = self.write("o32.json", json.dumps({"precision": "fp32", "device": "cuda:0 H200",
                                                    "test": {"accuracy": 0.99},
                                                    "timings": {"epoch_seconds": [2.0, 1.0, 1.0]}}))
        ours_tf = self.write("otf.json", json.dumps({"precision": "tf32", "device": "cuda:0 H200",
                                                     "timings": {"epoch_seconds": [1.0, 0.5]}}))
        eager = self.write("e.json", json.dumps({
            "precision": "fp32", "precision_flags": "matmul ieee, conv ieee", "compiled": False,
            "device_name": "NVIDIA H200", "test_accuracy": 0.99,
            "history": [{"train_seconds": 3.0}, {"train_seconds": 2.5}, {"train_seconds": 2.0}]}))
        tf = self.write("t.json", json.dumps({
            "precision": "tf32", "compiled": True, "compile_mode": "reduce-overhead",
            "history": [{"train_seconds": 2.0}, {"train_seconds": 1.0}]}))
        rc, out = run("compare", "--ours", f"fp32={ours32}", "--ours", f"tf32={ours_tf}",
                      "--peer", f"eager-fp32={eager}", "--peer", f"compiled-tf32={tf}",
                      "--peer", f"gone={os.path.join(self.dir.name, 'nope.json')}")
        self.assertEqual(rc, 0)
        self.assertIn("torch gone: no ", out)
        self.assertIn("compiled (reduce-overhead), precision tf32", out)
        self.assertIn("eager, precision fp32 (matmul ieee, conv ieee)", out)
        rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
        # epoch, ours fp32, ours tf32, eager, eager/ours fp32, compiled tf32, compiled/ours tf32
        self.assertEqual(rows[0], ["1", "2.000", "1.000", "3.000", "1.500", "2.000", "2.000"])
        self.assertEqual(rows[1], ["2", "1.000", "0.500", "2.500", "2.500", "1.000", "2.000"])
        self.assertEqual(rows[2], ["3", "1.000", "-", "2.000", "2.000", "-", "-"])

    def test_nothing_to_compare_fails(self):
        rc, _ = run("compare", "--ours", f"fp32={os.path.join(self.dir.name, 'none.json')}")
        self.assertEqual(rc, 1)


if __name__ == "__main__":
    unittest.main()
