#!/usr/bin/env python3
"""mnist_gpu_torch: load a mnist_gpu checkpoint (safetensors) as a PyTorch module.

    /usr/bin/python3 tools/mnist_gpu_torch.py model.safetensors            # summary
    /usr/bin/python3 tools/mnist_gpu_torch.py model.safetensors --logits-of x.npy

--logits-of takes a float32 .npy of shape [n, C, H, W] (pixels scaled to [0, 1], as mnist_gpu
feeds them) and writes {"logits": [[...]], "predictions": [...]} to stdout as JSON.

As a library:

    from mnist_gpu_torch import load_checkpoint
    model, meta = load_checkpoint("model.safetensors")   # eval mode, strict state_dict load
    probs = torch.softmax(model(x), dim=1)

The module's attributes carry mnist_gpu's layer names (conv2d, conv2d_1, max_pooling2d, dropout,
flatten, dense, dense_1, batch_normalization, ...), so its state_dict keys are the checkpoint's
tensor names. A `bn` layer is nn.BatchNorm2d (after convs) or nn.BatchNorm1d (after flatten or
dense) with eps=1e-3 and momentum=0.01 (Keras' momentum 0.99 in PyTorch's convention). In eval
mode both normalize by the running statistics, so predictions agree; should the module be trained
further, PyTorch would put the unbiased batch variance into running_var where mnist_gpu (as Keras)
puts the biased one. The file
format is described in docs/checkpoints.md. Reads the file with the safetensors package when it is
installed, else with the small reader below (json + numpy).
"""
import argparse
import json
import re
import struct
import sys

import numpy as np
import torch
from torch import nn

FORMAT = "mnist_gpu/1"
OPTIMIZER_PREFIX = "optimizer."


# --- file ----------------------------------------------------------------------------------------

def read_header(path):
    """(header dict, offset of the data section)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ValueError(f"{path}: header length {n} is over the 100 MB limit")
        header = json.loads(f.read(n))
    return header, 8 + n


def read_tensors(path):
    """{name: float32 tensor} for every tensor of the file."""
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    header, data_start = read_header(path)
    with open(path, "rb") as f:
        data = f.read()[data_start:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtypes = {"F32": ("<f4", np.float32), "I64": ("<i8", np.int64)}
        if info["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, expected F32 or I64")
        stored, native = dtypes[info["dtype"]]
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=stored).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.astype(native))  # a writable copy
    return tensors


def read_metadata(path):
    header, _ = read_header(path)
    meta = dict(header.get("__metadata__", {}))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    return meta


# --- model ---------------------------------------------------------------------------------------

CONV_TOKEN = re.compile(r"conv([0-9]+)(?:k([1357]))?(v?)(n?)")
DENSE_TOKEN = re.compile(r"dense([0-9]+)(n?)")


def parse_spec(spec):
    """The spec's layers as (kind, value): ("conv", (filters, kernel, valid, relu)), ("pool", None),
    ("drop", rate), ("flatten", None), ("dense", (units, relu)), ("relu", None), ("bn", None). The
    classifier is
    not listed (it is not in the spec). conv<F>[k<K>][v][n]: K x K kernel (3 without k), 'valid'
    padding with v ('same' without), no ReLU with n; dense<U>[n] likewise."""
    layers = []
    for token in (t.strip() for t in spec.split(",")):
        conv = CONV_TOKEN.fullmatch(token)
        dense = DENSE_TOKEN.fullmatch(token)
        if conv:
            kernel = int(conv.group(2) or 3)
            layers.append(("conv", (int(conv.group(1)), kernel, conv.group(3) == "v", conv.group(4) != "n")))
        elif token == "relu":
            layers.append(("relu", None))
        elif token == "bn":
            layers.append(("bn", None))
        elif token == "pool":
            layers.append(("pool", None))
        elif token.startswith("drop"):
            layers.append(("drop", float(token[4:])))
        elif token == "flatten":
            layers.append(("flatten", None))
        elif dense:
            if not any(kind == "flatten" for kind, _ in layers):
                layers.append(("flatten", None))
            layers.append(("dense", (int(dense.group(1)), dense.group(2) != "n")))
        else:
            raise ValueError(f"model spec: unknown layer {token!r}")
    if not any(kind == "flatten" for kind, _ in layers):
        layers.append(("flatten", None))
    return layers


class MnistGpuNet(nn.Module):
    """mnist_gpu's model: conv K x K 'same' or 'valid' (+ ReLU unless n), a ReLU layer, max-pool 2x2 (floor), inverted dropout, NCHW
    flatten, dense + ReLU, and the classifier Dense(classes) whose logits forward() returns."""

    def __init__(self, spec, input_shape=(1, 28, 28), classes=10):
        super().__init__()
        self.order = []  # (attribute name, relu after it)
        counters = {}

        def name(base):
            n = counters.get(base, 0)
            counters[base] = n + 1
            return base if n == 0 else f"{base}_{n}"

        c, h, w = input_shape
        flat = None
        for kind, value in parse_spec(spec):
            if kind == "conv":
                filters, k, valid, relu = value
                pad = 0 if valid else (k - 1) // 2
                layer, key = nn.Conv2d(c, filters, k, padding=pad), name("conv2d")
                c, h, w = filters, h + 2 * pad - k + 1, w + 2 * pad - k + 1
            elif kind == "relu":
                layer, relu, key = nn.ReLU(), False, name("re_lu")
            elif kind == "bn":
                # Keras' BatchNormalization defaults: epsilon 1e-3, momentum 0.99 (PyTorch: 0.01).
                norm = nn.BatchNorm2d if flat is None else nn.BatchNorm1d
                layer, relu, key = norm(c if flat is None else flat, eps=1e-3, momentum=0.01), False, \
                    name("batch_normalization")
            elif kind == "pool":
                layer, relu, key = nn.MaxPool2d(2), False, name("max_pooling2d")
                h, w = h // 2, w // 2
            elif kind == "drop":
                layer, relu, key = nn.Dropout(value), False, name("dropout")
            elif kind == "flatten":
                layer, relu, key = nn.Flatten(), False, name("flatten")
                flat = c * h * w
            else:
                units, relu = value
                layer, key = nn.Linear(flat, units), name("dense")
                flat = units
            setattr(self, key, layer)
            self.order.append((key, relu))
        key = name("dense")
        setattr(self, key, nn.Linear(flat, classes))
        self.order.append((key, False))

    def forward(self, x):
        for key, relu in self.order:
            x = getattr(self, key)(x)
            if relu:
                x = torch.relu(x)
        return x


def load_checkpoint(path):
    """(model in eval mode with the checkpoint's weights, metadata dict with decoded values)."""
    meta = read_metadata(path)
    input_shape = tuple(json.loads(meta["input_shape"]))
    classes = int(meta["classes"])
    model = MnistGpuNet(meta["model_spec"], input_shape, classes)
    tensors = read_tensors(path)
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
    model.load_state_dict(weights, strict=True)
    model.eval()
    decoded = dict(meta)
    decoded["input_shape"] = list(input_shape)
    decoded["class_names"] = json.loads(meta.get("class_names", "[]"))
    decoded["optimizer_tensors"] = sorted(k for k in tensors if k.startswith(OPTIMIZER_PREFIX))
    return model, decoded


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--logits-of", metavar="FILE.npy",
                    help="float32 [n, C, H, W] inputs in [0, 1]; prints their logits as JSON")
    args = ap.parse_args(argv)
    model, meta = load_checkpoint(args.checkpoint)
    if args.logits_of:
        x = np.load(args.logits_of)
        expected = (x.shape[0],) + tuple(meta["input_shape"]) if x.ndim == 4 else None
        if x.dtype != np.float32 or x.shape != expected:
            sys.exit(f"{args.logits_of}: expected float32 [n, {', '.join(map(str, meta['input_shape']))}], "
                     f"found {x.dtype} {list(x.shape)}")
        with torch.no_grad():
            logits = model(torch.from_numpy(x))
        json.dump({"logits": logits.tolist(), "predictions": logits.argmax(dim=1).tolist()}, sys.stdout)
        sys.stdout.write("\n")
        return
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.checkpoint}: {meta['model_spec']} on {meta['input_shape']} -> {meta['classes']} classes, "
          f"{params} parameters")
    print(f"dataset {meta.get('dataset')}, step {meta.get('step')}, epochs done {meta.get('epochs_done')}, "
          f"optimizer state {'yes' if meta['optimizer_tensors'] else 'no'}")
    print(model)


if __name__ == "__main__":
    main()
