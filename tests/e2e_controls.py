#!/usr/bin/env python3
"""train's controls on real MNIST with a small model: the learning-rate schedules (cosine,
ReduceLROnPlateau), best.safetensors, early stopping with the best weights restored, and --resume
from the middle of each, bit for bit.

  e2e_controls.py MNIST_GPU DATA_DIR

A run's checkpoint after epoch k is caught while the run goes on (the file is replaced atomically
after every epoch; its metadata says how many epochs it holds), so a resume from the middle of a
schedule is compared with the very run it was caught from. Exits 77 (skip) without MNIST.
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

bin_, data = sys.argv[1], sys.argv[2]
if not any(os.path.exists(os.path.join(data, "train-images-idx3-ubyte" + s)) for s in ("", ".gz")):
    print(f"SKIP: no MNIST in {data} (run tools/get_mnist.sh)")
    sys.exit(77)

work = tempfile.mkdtemp(prefix="mg_controls_")
failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    failures += 0 if cond else 1


def metadata(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n])["__metadata__"]


def history(run):
    with open(os.path.join(run, "history.csv")) as f:
        rows = [line.strip().split(",") for line in f]
    head = rows[0]
    return [dict(zip(head, map(float, r))) for r in rows[1:]]


def train(args, out, catch_epoch=None):
    """Runs train to the end; with catch_epoch, also returns the bytes of its checkpoint after that
    epoch, caught while it ran."""
    cmd = [bin_, "train", "--device", "cpu", "--data", data, "--model", "dense16", "--out", out] + args
    caught = None
    ckpt = os.path.join(out, "checkpoint.safetensors")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        while catch_epoch is not None and caught is None and p.poll() is None:
            try:
                with open(ckpt, "rb") as f:
                    blob = f.read()
                done = int(metadata(blob)["epochs_done"])
                if done == catch_epoch:
                    caught = blob
                elif done > catch_epoch:
                    break
            except (OSError, ValueError, struct.error, KeyError):
                pass
            time.sleep(0.01)
        log = p.communicate()[0]
    if p.returncode != 0:
        print(log)
        raise SystemExit(f"FAIL train {' '.join(args)} exited {p.returncode}")
    if catch_epoch is not None and caught is None:
        raise SystemExit(f"FAIL could not catch the checkpoint after epoch {catch_epoch}")
    return log, caught


def read(path):
    with open(path, "rb") as f:
        return f.read()


def resume_from(blob, name, args):
    os.makedirs(os.path.join(work, name + "-from"))
    path = os.path.join(work, name + "-from", "checkpoint.safetensors")
    with open(path, "wb") as f:
        f.write(blob)
    out = os.path.join(work, name)
    log, _ = train(args + ["--resume", path], out)
    return out, log


try:
    # --- cosine: the rate per epoch, and a resume from the middle of the schedule -----------------
    a = os.path.join(work, "cosine")
    log, caught = train(["--epochs", "4", "--lr-schedule", "cosine", "--lr", "0.002"], a, catch_epoch=2)
    h = history(a)
    want = [0.002 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    check(all(abs(r["lr"] - w) <= 1e-15 for r, w in zip(h, want)) and len(h) == 4,
          "cosine: history.csv's lr column is the schedule (" + ", ".join(f"{r['lr']:.6g}" for r in h) + ")")
    ctl = json.loads(metadata(read(os.path.join(a, "checkpoint.safetensors")))["training_controls"])
    check(ctl["lr_schedule"] == "cosine" and ctl["cosine_epochs"] == 4, "cosine: saved in the checkpoint")
    out, _ = resume_from(caught, "cosine-resumed", ["--epochs", "4"])
    check(read(os.path.join(out, "checkpoint.safetensors")) == read(os.path.join(a, "checkpoint.safetensors")),
          "cosine: resumed after epoch 2 of 4, the checkpoint is byte for byte the uninterrupted run's")
    mj = json.load(open(os.path.join(a, "metrics.json")))
    check("cosine" in mj["training_controls"], f"cosine: metrics.json says so ({mj['training_controls']})")
    svg = open(os.path.join(a, "curves.svg")).read()
    check("Learning rate" in svg, "cosine: the curves show the learning rate")

    # best.safetensors is the epoch of the best validation accuracy.
    best = metadata(read(os.path.join(a, "best.safetensors")))
    accs = [r["val_accuracy"] for r in h]
    check(int(best["epochs_done"]) == accs.index(max(accs)) + 1,
          f"best.safetensors holds epoch {best['epochs_done']}, the best val_accuracy's "
          f"({max(accs):.4f})")

    # A resumed run keeps its schedule.
    r = subprocess.run([bin_, "train", "--device", "cpu", "--data", data, "--epochs", "6",
                        "--lr-schedule", "plateau", "--resume", os.path.join(a, "checkpoint.safetensors"),
                        "--out", os.path.join(work, "refused")], capture_output=True, text=True)
    check(r.returncode != 0 and "--lr-schedule differs from the checkpoint's (cosine)" in r.stderr
          and not os.path.exists(os.path.join(work, "refused")),
          f"a different --lr-schedule on resume is refused: {r.stderr.strip()}")

    # --- plateau + early stopping: a high rate makes the validation loss stall ------------------
    args = ["--epochs", "12", "--lr", "0.03", "--lr-schedule", "plateau", "--lr-patience", "1",
            "--lr-factor", "0.5", "--early-stopping", "3"]
    b = os.path.join(work, "stopping")
    log, caught = train(args, b, catch_epoch=3)
    h = history(b)
    # "Epoch N: ReduceLROnPlateau ..." after epoch N: epoch N + 1 runs at half the rate.
    printed = {int(l.split()[1].rstrip(":")) for l in log.splitlines() if "ReduceLROnPlateau reducing" in l}
    halved = {e + 1 for e in range(len(h) - 1) if h[e + 1]["lr"] == 0.5 * h[e]["lr"]}
    kept = {e + 1 for e in range(len(h) - 1) if h[e + 1]["lr"] == h[e]["lr"]}
    check(printed and {n for n in printed if n < len(h)} == halved and len(halved) + len(kept) == len(h) - 1,
          f"plateau: reductions after epochs {sorted(printed)}, halvings in history.csv's lr column after {sorted(halved)}")
    stopped = "early stopping (val_loss has not improved" in log
    losses = [x["val_loss"] for x in h]
    best_epoch = losses.index(min(losses)) + 1
    if stopped:
        check(best_epoch == len(h) - 3,
              f"early stopping: stopped after epoch {len(h)} of 12, 3 epochs after the best val_loss (epoch {best_epoch})")
    else:
        print(f"note: the run did not stop early (best val_loss at epoch {best_epoch} of 12)")
    check(f"the model is epoch {best_epoch}'s" in json.load(open(os.path.join(b, "metrics.json")))["training_controls"],
          "early stopping: the report names the best epoch")
    test_line = [l for l in log.splitlines() if l.startswith("test: ")][-1]
    ev = subprocess.run([bin_, "eval", os.path.join(b, "checkpoint.safetensors"), "--device", "cpu",
                         "--data", data, "--out", os.path.join(work, "eval")], capture_output=True, text=True)
    ev_line = [l for l in ev.stdout.splitlines() if l.startswith("test: ")]
    check(ev.returncode == 0 and ev_line and ev_line[-1] == test_line,
          f"the checkpoint is the restored best model: eval's '{ev_line[-1] if ev_line else ev.stderr}' "
          f"== train's '{test_line}'")
    out, _ = resume_from(caught, "stopping-resumed", ["--epochs", "12"])
    check(read(os.path.join(out, "checkpoint.safetensors")) == read(os.path.join(b, "checkpoint.safetensors")),
          "plateau + early stopping: resumed after epoch 3, the checkpoint is byte for byte the uninterrupted run's")
    if stopped:
        more = os.path.join(work, "after-stop")
        log2, _ = train(["--epochs", str(len(h) + 2), "--resume", os.path.join(b, "checkpoint.safetensors")], more)
        check("had stopped early after epoch" in log2 and len(history(more)) == len(h) + 2,
              "resume after an early stop goes on from the best weights for the epochs asked")
finally:
    shutil.rmtree(work, ignore_errors=True)

print(f"{'all passed' if failures == 0 else str(failures) + ' failed'}")
sys.exit(1 if failures else 0)
