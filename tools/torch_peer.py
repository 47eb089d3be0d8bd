#!/usr/bin/env python3
"""torch_peer: the notebook's CNN and protocol in PyTorch, as a benchmark peer for mnist_gpu.

Same model, initialisation, optimiser, batch size and split as the Keras notebook and as
mnist_gpu's seed model, so epoch times and accuracies can be compared like for like:

    /usr/bin/python3 tools/torch_peer.py --epochs 1
    python3 tools/torch_peer.py --device cuda --epochs 5 --compile --json peer.json
    python3 tools/torch_peer.py --device cuda --compile --compile-mode reduce-overhead

Runs on PyTorch 1.13 (Debian) and 2.x. --compile needs torch.compile (2.x); without it the
model runs eagerly and the JSON says compiled=false.

--precision (fp32, the default, or tf32) sets PyTorch's TF32 switches for both the matmuls and
cuDNN's convolutions, explicitly: PyTorch's own default on Ampere and later GPUs is TF32 for
convolutions and float32 for matmuls, so a comparison must say which it ran. mnist_gpu's
--precision means the same (its GEMMs, the convolutions' included). The switches are printed
and written to the JSON.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 42


# --- data ----------------------------------------------------------------------------------------

def _find_idx(data_dir, stem):
    # The files come under several spellings (train-images-idx3-ubyte, train-images.idx3-ubyte),
    # raw or gzipped, depending on where they were downloaded from.
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            path = os.path.join(data_dir, name + suffix)
            if os.path.exists(path):
                return path
    raise FileNotFoundError(f"{stem}[.gz] not found in {data_dir}")


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims}, found {arr.size} bytes")
    return arr.reshape(dims)


def load_mnist(data_dir):
    """All 70,000 images, training set first, as the notebook's np.concatenate does."""
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        parts[split] = (read_idx(_find_idx(data_dir, f"{prefix}-images-idx3-ubyte")),
                        read_idx(_find_idx(data_dir, f"{prefix}-labels-idx1-ubyte")))
    x = np.concatenate([parts["train"][0], parts["test"][0]]).astype(np.float32) / 255.0
    y = np.concatenate([parts["train"][1], parts["test"][1]]).astype(np.int64)
    return x.reshape(-1, 1, 28, 28), y


def _train_test_split(n, test_size, seed):
    """Indices of sklearn's train_test_split(range(n), test_size, random_state=seed)."""
    try:
        from sklearn.model_selection import train_test_split
        train, test = train_test_split(np.arange(n), test_size=test_size, random_state=seed)
        return train, test, "sklearn"
    except ImportError:
        # What ShuffleSplit does underneath, so a torch install without sklearn splits the same.
        n_test = math.ceil(test_size * n)
        perm = np.random.RandomState(seed).permutation(n)
        return perm[n_test:], perm[:n_test], "numpy (sklearn-equivalent)"


def seed_split(n, seed=SEED):
    """The notebook's protocol: 70/30, then the 30 halved into validation and test."""
    train, temp, how = _train_test_split(n, 0.3, seed)
    val_pos, test_pos, _ = _train_test_split(len(temp), 0.5, seed)
    return train, temp[val_pos], temp[test_pos], how


# --- model ---------------------------------------------------------------------------------------

def build_model():
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),  # softmax lives in CrossEntropyLoss
    )
    # Keras' defaults rather than PyTorch's (Kaiming-uniform): glorot_uniform kernels, zero biases.
    # torch's fan computation for conv weights (channels x receptive field) matches Keras'.
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# --- precision -----------------------------------------------------------------------------------

def set_precision(precision):
    """Sets the TF32 switches of matmuls and cuDNN convolutions to `precision` ("fp32" or
    "tf32") and returns how they read back. PyTorch 2.9 and later have fp32_precision ("ieee" or
    "tf32") and refuse to mix it with the older allow_tf32 flags, which are all earlier ones have."""
    def has(obj, name):  # torch 1.13's backend modules raise AssertionError for unknown names
        try:
            getattr(obj, name)
            return True
        except (AttributeError, AssertionError):
            return False

    tf32 = precision == "tf32"
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if has(matmul, "fp32_precision") and has(conv, "fp32_precision"):
        matmul.fp32_precision = "tf32" if tf32 else "ieee"
        conv.fp32_precision = "tf32" if tf32 else "ieee"
        return (f"torch.backends.cuda.matmul.fp32_precision={matmul.fp32_precision}, "
                f"torch.backends.cudnn.conv.fp32_precision={conv.fp32_precision}")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return (f"torch.backends.cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
            f"torch.backends.cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}")


# --- training ------------------------------------------------------------------------------------

class Runner:
    def __init__(self, model, fwd, device, batch_size, eval_batch_size):
        self.model = model      # owns the parameters and the train/eval mode
        self.fwd = fwd          # the model or its torch.compile'd wrapper
        self.device = device
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.loss_fn = nn.CrossEntropyLoss()
        self.sum_loss_fn = nn.CrossEntropyLoss(reduction="sum")
        # Keras' Adam epsilon; note Keras adds it to sqrt(v) before bias correction of the step
        # size, torch after, which differs only while sqrt(v) is of the order of 1e-7.
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def train_epoch(self, x, y, gen):
        """One pass in shuffled batches, the last partial one kept. Returns Keras-style running
        mean loss and accuracy over the epoch's batches (dropout on, weights changing)."""
        self.model.train()
        n = x.shape[0]
        perm = torch.randperm(n, generator=gen).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, n, self.batch_size):
            idx = perm[start:start + self.batch_size]
            xb, yb = x[idx], y[idx]
            logits = self.fwd(xb)
            loss = self.loss_fn(logits, yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            # Accumulated on the device: a .item() per batch would stall the GPU every step.
            loss_sum += loss.detach() * idx.numel()
            correct += (logits.detach().argmax(1) == yb).sum()
        return loss_sum.item() / n, correct.item() / n

    @torch.no_grad()
    def evaluate(self, x, y):
        self.model.eval()
        n = x.shape[0]
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, n, self.eval_batch_size):
            xb, yb = x[start:start + self.eval_batch_size], y[start:start + self.eval_batch_size]
            logits = self.fwd(xb)
            loss_sum += self.sum_loss_fn(logits, yb)
            correct += (logits.argmax(1) == yb).sum()
        return loss_sum.item() / n, correct.item() / n

    def warm_up(self, x, y, n_train, eval_sizes):
        """Runs every batch shape the timed epochs will see, so compilation (and CUDA/cuDNN
        lazy initialisation) is paid here and not inside an epoch. Gradients are discarded and no
        optimiser step is taken, so the weights the epochs start from are unchanged."""
        train_shapes = {min(self.batch_size, n_train)}
        if n_train % self.batch_size:
            train_shapes.add(n_train % self.batch_size)
        self.model.train()
        for b in sorted(train_shapes, reverse=True):
            loss = self.loss_fn(self.fwd(x[:b]), y[:b])
            loss.backward()
        self.opt.zero_grad(set_to_none=True)
        self.model.eval()
        with torch.no_grad():
            for b in sorted(eval_sizes, reverse=True):
                self.fwd(x[:b])
        self.sync()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(REPO_ROOT, "data", "mnist"),
                    help="folder with the four MNIST IDX files, raw or .gz (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model, if available")
    ap.add_argument("--compile-mode", default=None,
                    choices=("default", "reduce-overhead", "max-autotune",
                             "max-autotune-no-cudagraphs"),
                    help="torch.compile's mode (reduce-overhead: CUDA graphs; max-autotune also "
                         "tries many kernel configurations, which takes minutes)")
    ap.add_argument("--precision", choices=("fp32", "tf32"), default="fp32",
                    help="float32 matmuls and convolutions, or TF32 for both (GPU only)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eval-batch-size", type=int, default=None,
                    help="validation/test batch (default: --batch-size, as Keras' fit validates)")
    ap.add_argument("--seed", type=int, default=SEED, help="torch seed (init, shuffle, dropout)")
    ap.add_argument("--json", metavar="FILE", help="write the results here")
    args = ap.parse_args()
    if args.epochs < 1:
        ap.error("--epochs must be at least 1")
    # Large evaluation batches are slower on CPU, not faster: their activations fall out of cache.
    args.eval_batch_size = args.eval_batch_size or args.batch_size

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_peer: --device cuda but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    precision_flags = set_precision(args.precision)
    if args.device == "cpu":
        precision_flags += " (TF32 does not apply on the CPU: float32)"
    print(f"precision: {args.precision} ({precision_flags})")

    t0 = time.perf_counter()
    x_all, y_all = load_mnist(args.data)
    train_idx, val_idx, test_idx, split_how = seed_split(len(x_all))
    # The whole dataset goes to the device once; batches are gathered there, so the timed loop
    # measures the model, not host-to-device copies or a DataLoader.
    x_all = torch.from_numpy(x_all).to(device)
    y_all = torch.from_numpy(y_all).to(device)
    split = {}
    for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        i = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)).to(device)
        split[name] = (x_all[i].contiguous(), y_all[i].contiguous())
    load_seconds = time.perf_counter() - t0
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}; "
          f"split by {split_how}: train {len(train_idx)}, val {len(val_idx)}, "
          f"test {len(test_idx)} ({load_seconds:.1f}s to load)")

    model = build_model().to(device)
    fwd = model
    compiled = False
    if args.compile:
        if hasattr(torch, "compile"):
            mode = None if args.compile_mode in (None, "default") else args.compile_mode
            fwd = torch.compile(model, mode=mode)
            compiled = True
        else:
            print(f"torch_peer: torch {torch.__version__} has no torch.compile; running eagerly")
    runner = Runner(model, fwd, device, args.batch_size, args.eval_batch_size)

    # Warm up in every mode; with --compile this is the compile time, reported on its own.
    n_val, n_test = len(val_idx), len(test_idx)
    eval_sizes = {min(args.eval_batch_size, n) for n in (n_val, n_test)}
    eval_sizes |= {n % args.eval_batch_size for n in (n_val, n_test) if n % args.eval_batch_size}
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    runner.warm_up(*split["train"], len(train_idx), eval_sizes)
    warmup_seconds = time.perf_counter() - t0
    print(f"{'compile' if compiled else 'warm-up'}: {warmup_seconds:.2f}s")

    history = []
    for epoch in range(1, args.epochs + 1):
        runner.sync()
        t0 = time.perf_counter()
        loss, acc = runner.train_epoch(*split["train"], gen)
        runner.sync()
        train_seconds = time.perf_counter() - t0
        val_loss, val_acc = runner.evaluate(*split["val"])
        runner.sync()
        epoch_seconds = time.perf_counter() - t0
        history.append(dict(epoch=epoch, seconds=epoch_seconds, train_seconds=train_seconds,
                            loss=loss, accuracy=acc, val_loss=val_loss, val_accuracy=val_acc))
        print(f"Epoch {epoch}/{args.epochs} - {epoch_seconds:.2f}s (train {train_seconds:.2f}s)"
              f" - loss: {loss:.4f} - accuracy: {acc:.4f}"
              f" - val_loss: {val_loss:.4f} - val_accuracy: {val_acc:.4f}", flush=True)

    test_loss, test_acc = runner.evaluate(*split["test"])
    print(f"test_loss: {test_loss:.4f} - test_accuracy: {test_acc:.4f}")

    # Steady state: with several epochs the first is left out (allocator growth, cache warm-up).
    times = [h["seconds"] for h in history]
    steady = times[1:] if len(times) > 1 else times
    mean_epoch = sum(steady) / len(steady)
    print(f"torch_peer: device={args.device} epoch_seconds={mean_epoch:.3f} "
          f"test_accuracy={test_acc:.4f}")

    if args.json:
        result = dict(
            tool="torch_peer", torch=torch.__version__, device=args.device,
            device_name=(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
            threads=torch.get_num_threads(), epochs=args.epochs, batch_size=args.batch_size,
            seed=args.seed, split=split_how,
            sizes=dict(train=len(train_idx), val=n_val, test=n_test),
            compiled=compiled, compile_mode=(args.compile_mode or "default") if compiled else None,
            compile_seconds=warmup_seconds if compiled else None,
            precision=args.precision if args.device == "cuda" else "fp32",
            precision_flags=precision_flags,
            warmup_seconds=warmup_seconds, load_seconds=load_seconds,
            epoch_seconds_mean_steady=mean_epoch, epoch_seconds_best=min(times),
            history=history, test_loss=test_loss, test_accuracy=test_acc)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
