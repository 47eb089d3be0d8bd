#!/usr/bin/env python3
"""Writes regress/npz/directory_claims_*.npz: an npz whose zip directory (and x_train.npy header)
claim far more data than the member holds. Before the fix read_mnist_npz allocated the claimed
size (3.9 GB) before reading. Run from the repository root."""
import io, struct, zipfile, sys
sys.path.insert(0, 'tests/fuzz')
import make_corpus as mc
def lying(n_claimed, out):
    # x_train.npy's header says n_claimed images; the zip directory says the member holds them all;
    # the member really holds one image.
    px = bytes(range(256)) * 4
    real = mc.npy((n_claimed, 28, 28), px[:784])
    members = [("x_train.npy", real), ("y_train.npy", mc.npy((1,), b"\x03")),
               ("x_test.npy", mc.npy((1, 28, 28), px[:784])), ("y_test.npy", mc.npy((1,), b"\x04"))]
    data = bytearray(mc.npz(members, zipfile.ZIP_DEFLATED))
    claimed = len(real) - 784 + n_claimed * 784
    assert claimed < 2**32
    # local header of the first member: uncompressed size at offset 22
    assert data[0:4] == b"PK\x03\x04"
    struct.pack_into("<I", data, 22, claimed)
    cd = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, claimed)
    open(out, "wb").write(bytes(data))
lying(5_000_000, "tests/fuzz/regress/npz/directory_claims_3.9_GB.npz")
lying(1_000_000, "tests/fuzz/regress/npz/directory_claims_784_MB.npz")
