#!/usr/bin/env python3
"""The Python side of tests/test_checkpoint.cpp.

    torch_checkpoint_check.py CKPT INPUTS.npy
        Loads CKPT with tools/mnist_gpu_torch.py (strict state_dict), checks that every trainable
        tensor (the module's parameters; BN's running statistics are buffers) has its two Adam
        moments beside it, runs INPUTS (float32 [n, C, H, W]) through the
        model and prints {"probs": softmax(logits), "keys": state_dict keys, "metadata": ...} as
        JSON for the C++ test to compare with mnist_gpu's own probabilities. Exits 1 on a problem,
        77 when torch or numpy cannot be imported.

    torch_checkpoint_check.py --rewrite CKPT OUT
        A second, independent writer (json + struct only): copies CKPT's tensors into OUT with the
        header keys in another order, __metadata__ last, the data in reverse order with gaps, and
        no padding, so the C++ test can check that its reader takes any valid safetensors layout.
"""
import json
import os
import struct
import sys

SKIP = 77  # the check's exit status when torch or numpy is missing


def read_raw(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__")
    tensors = {name: (info, data[info["data_offsets"][0]:info["data_offsets"][1]])
               for name, info in header.items()}
    return meta, tensors


def rewrite(src, dst):
    meta, tensors = read_raw(src)
    header, data = {}, b""
    for name in sorted(tensors, reverse=True):
        info, raw = tensors[name]
        data += b"\0" * 4  # a gap: safetensors offsets need not be contiguous for this reader
        header[name] = {"shape": info["shape"], "data_offsets": [len(data), len(data) + len(raw)],
                        "dtype": info["dtype"]}
        data += raw
    header["__metadata__"] = meta
    text = json.dumps(header, indent=1).encode()
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def check(ckpt, inputs):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(f"{sys.executable} cannot import torch and numpy: {e}", file=sys.stderr)
        return SKIP
    import mnist_gpu_torch

    model, meta = mnist_gpu_torch.load_checkpoint(ckpt)  # load_state_dict(strict=True)
    keys = list(model.state_dict().keys())
    problems = []
    trainable = [k for k, _ in model.named_parameters()]
    expected_moments = {f"optimizer.adam_{m}.{k}" for k in trainable for m in ("m", "v")}
    if set(meta["optimizer_tensors"]) != expected_moments:
        problems.append(f"optimizer tensors {meta['optimizer_tensors']} are not the moments of {keys}")
    x = torch.from_numpy(np.load(inputs))
    with torch.no_grad():
        logits = model(x).double()
    probs = torch.softmax(logits, dim=1)
    json.dump({"probs": probs.tolist(), "keys": keys, "metadata": meta, "problems": problems}, sys.stdout)
    sys.stdout.write("\n")
    return 1 if problems else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--rewrite":
        rewrite(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 3:
        return check(sys.argv[1], sys.argv[2])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
