#!/usr/bin/env python3
"""SIGINT and SIGTERM sent to a running `mnist_gpu train`, on real MNIST with a small model.

  e2e_interrupt.py MNIST_GPU DATA_DIR

Each interrupted run must exit with 128 + the signal (130, 143), print one "to resume: <command>"
line and leave a loadable checkpoint that records where it stopped; running that very command
(with --out added) must end with a checkpoint and a history.csv byte-identical to those of a run
never interrupted. The signal is aimed with the live progress bar (the run's stdout is a pseudo
terminal, so train draws "<step>/<steps> [...]" a few times a second): early in an epoch, late in
one, at an epoch's end, twice at once, and into a resumed run again. Also train --serve, stopped by
SIGTERM during training: exit 143, the live view's port closed. Exits 77 (skip) without MNIST.
"""
import json
import os
import pty
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

bin_, data = sys.argv[1], sys.argv[2]
if not any(os.path.exists(os.path.join(data, "train-images-idx3-ubyte" + s)) for s in ("", ".gz")):
    print(f"SKIP: no MNIST in {data} (run tools/get_mnist.sh)")
    sys.exit(77)

work = tempfile.mkdtemp(prefix="mg_interrupt_")
os.chdir(work)
failures = 0
EPOCHS = 2
# A small model, small batches (many steps per epoch, so the signal can be aimed inside one), a
# schedule whose rate changes every epoch, and early stopping (its best weights travel in the
# checkpoint): all must continue exactly. The conv layer makes an epoch last seconds even on a
# fast machine (dense16 alone took 0.45 s, over before the progress bar showed 80% of it).
OPTS = ["--device", "cpu", "--data", data, "--model", "conv32,pool,dense16", "--batch-size", "64",
        "--epochs", str(EPOCHS), "--lr-schedule", "cosine", "--early-stopping", "5"]
os.environ["OMP_NUM_THREADS"] = "2"  # the same thread count for every run (docs/reliability.md)
os.environ["MNIST_GPU_MIRROR"] = "http://127.0.0.1:9/"  # nothing may be downloaded


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    failures += 0 if cond else 1
    return cond


def metadata(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))["__metadata__"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


PROGRESS = re.compile(rb"\r(\d+)/(\d+) \[")
EPOCH = re.compile(rb"Epoch (\d+)/\d+")


class Run:
    """mnist_gpu with its stdout on a pseudo terminal, read as it goes."""

    def __init__(self, args):
        master, slave = pty.openpty()
        self.p = subprocess.Popen([bin_] + args, stdout=slave, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, close_fds=True)
        os.close(slave)
        self.fd, self.out = master, b""
        self.epoch, self.step, self.steps = 0, 0, 0

    def pump(self, timeout=0.05):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child has gone and closed its side
            chunk = b""
        if not chunk:
            return False
        self.out += chunk
        for m in EPOCH.finditer(chunk):
            self.epoch, self.step = int(m.group(1)), 0
        for m in PROGRESS.finditer(chunk):
            self.step, self.steps = int(m.group(1)), int(m.group(2))
        return True

    def wait_for(self, cond, what, limit=600):
        t0 = time.time()
        while not cond():
            if self.p.poll() is not None and not self.pump(0):
                raise SystemExit(f"FAIL the run ended before {what}:\n{self.text()}")
            if time.time() - t0 > limit:
                self.p.kill()
                raise SystemExit(f"FAIL no {what} within {limit} s:\n{self.text()}")
            self.pump()

    def finish(self, limit=900):
        # Read while waiting: a full pseudo terminal would block the child's progress bar.
        t0 = time.time()
        while self.p.poll() is None:
            self.pump(0.1)
            if time.time() - t0 > limit:
                self.p.kill()
        rc = self.p.wait()
        while self.pump(0.1):
            pass
        os.close(self.fd)
        return rc

    def text(self):
        return self.out.decode(errors="replace")


def reference():
    r = Run(["train"] + OPTS + ["--out", "ref"])
    rc = r.finish()
    if rc != 0:
        raise SystemExit(f"FAIL the uninterrupted run exited {rc}:\n{r.text()}")
    return read("ref/checkpoint.safetensors"), read("ref/history.csv")


def resume_line(text, run):
    lines = [l for l in text.splitlines() if l.startswith("to resume: ")]
    if not check(len(lines) == 1, f"{run}: one 'to resume:' line"):
        print(text)
        return None
    words = shlex.split(lines[0][len("to resume: "):])
    check(words[:2] == [bin_, "train"] and "--resume" in words, f"{run}: it is a train --resume command")
    return words


def interrupted(name, sig, aim, args=None, second=False):
    """Starts a run, waits until aim(run) is true, sends sig (twice when second); checks the exit
    status, the resume line and the checkpoint. Returns (the resume command, the checkpoint's
    metadata)."""
    args = args or ["train"] + OPTS + ["--out", name]
    r = Run(args)
    r.wait_for(lambda: aim(r), f"the aim of {name}")
    at = f"epoch {r.epoch} step {r.step}/{r.steps}"
    r.p.send_signal(sig)
    if second:
        r.p.send_signal(sig)
    rc = r.finish()
    text = r.text()
    check(rc == 128 + sig, f"{name}: {signal.Signals(sig).name} sent at {at}: exit {rc}, expected {128 + sig}")
    out = args[args.index("--out") + 1]
    ckpt = os.path.join(out, "checkpoint.safetensors")
    check(not [f for f in os.listdir(out) if ".tmp-" in f] or second, f"{name}: no temporary file left")
    if not check(os.path.exists(ckpt), f"{name}: a checkpoint is there"):
        print(text)
        return None, None
    md = metadata(ckpt)
    steps_done = int(md.get("epoch_steps_done", "0"))
    print(f"     {name}: stopped with epochs_done={md['epochs_done']} epoch_steps_done={steps_done}")
    has_line = "to resume: " in text
    words = resume_line(text, name) if has_line or not second else None
    if second:
        print(f"     {name}: {'saved and printed the resume line' if has_line else 'ended at once'}")
    if words is not None:
        check(words[words.index("--resume") + 1] == ckpt, f"{name}: the line resumes from {ckpt}")
        if steps_done:
            check(f"after step {steps_done}/" in text, f"{name}: the message says where it stopped")
        check(os.path.exists(os.path.join(out, "history.csv")), f"{name}: history.csv written")
        if not second:
            check(os.path.exists(os.path.join(out, "report.html")), f"{name}: the report so far written")
    elif second:  # ended at once: the previous checkpoint (an epoch's end) must resume exactly
        check(steps_done == 0, f"{name}: the checkpoint left is an epoch's")
        words = [bin_, "train", "--resume", ckpt, "--epochs", str(EPOCHS), "--device", "cpu",
                 "--data", data]
    return words, md


def resumed_matches(name, words, ref_ckpt, ref_hist):
    out = name + "-resumed"
    r = Run(words[1:] + ["--out", out])  # words[0] is the program
    rc = r.finish()
    if not check(rc == 0, f"{name}: the resume command ran (exit {rc})"):
        print(r.text())
        return
    check(read(os.path.join(out, "checkpoint.safetensors")) == ref_ckpt,
          f"{name}: resumed checkpoint byte-identical to the uninterrupted run's")
    check(read(os.path.join(out, "history.csv")) == ref_hist,
          f"{name}: resumed history.csv byte-identical to the uninterrupted run's")


ref_ckpt, ref_hist = reference()
print(f"reference: {EPOCHS} epochs, history:\n{ref_hist.decode()}", flush=True)
steps_of = lambda r: r.steps or 1

# Early in epoch 2: its first progress line.
w, md = interrupted("early", signal.SIGINT, lambda r: r.epoch == 2 and r.step > 0)
if w:
    check(md["epochs_done"] == "1", "early: epochs_done 1")
    resumed_matches("early", w, ref_ckpt, ref_hist)

# Late in epoch 2.
w, md = interrupted("late", signal.SIGTERM, lambda r: r.epoch >= 2 and r.step >= 0.8 * steps_of(r))
if w:
    resumed_matches("late", w, ref_ckpt, ref_hist)
    late_words = w

# At the end of epoch 1: sent when its closing line (validated, being saved) appears.
w, md = interrupted("boundary", signal.SIGINT, lambda r: b"val_accuracy" in r.out)
if w:
    resumed_matches("boundary", w, ref_ckpt, ref_hist)

# Twice at once, in the middle of epoch 2: the program either saved (the second signal waited for
# the checkpoint) or ended at once; either way the checkpoint there resumes exactly.
w, md = interrupted("twice", signal.SIGINT, lambda r: r.epoch >= 2 and r.step >= 0.5 * steps_of(r),
                    second=True)
if w:
    resumed_matches("twice", w, ref_ckpt, ref_hist)

# A resumed run interrupted again, early in its first (part) epoch, then resumed once more.
if "late_words" in globals():
    w, md = interrupted("again", signal.SIGINT, lambda r: r.step > 0,
                        args=late_words[1:] + ["--out", "again"])
    if w:
        resumed_matches("again", w, ref_ckpt, ref_hist)


# train --serve: SIGTERM during training stops the run and the server.
def port_open(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


r = Run(["train"] + OPTS + ["--out", "served", "--serve", "0"])
r.wait_for(lambda: re.search(rb"live view: http://127.0.0.1:(\d+)/", r.out), "the live view's URL")
port = int(re.search(rb"live view: http://127.0.0.1:(\d+)/", r.out).group(1))
r.wait_for(lambda: r.epoch == 1 and r.step > 0, "training to start")
with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/train", timeout=10) as resp:
    check(json.load(resp)["status"] == "training", "serve: the live view says training")
r.p.send_signal(signal.SIGTERM)
rc = r.finish()
check(rc == 143, f"serve: SIGTERM during training: exit {rc}, expected 143")
check("to resume: " in r.text(), "serve: the resume line is printed")
check(int(metadata("served/checkpoint.safetensors").get("epoch_steps_done", "0")) > 0,
      "serve: the checkpoint is mid-epoch")
check(not port_open(port), "serve: the port is closed")

subprocess.run(["rm", "-rf", work])
print("all passed" if failures == 0 else f"{failures} failed")
sys.exit(1 if failures else 0)
