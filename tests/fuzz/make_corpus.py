#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/ (corpus/<target>/) from real files, each under 64 KiB.

Usage: tests/fuzz/make_corpus.py FASHION_DIR CHECKPOINT... [--jpeg-helper CC]
  FASHION_DIR   the four Fashion-MNIST IDX .gz files (Debian: /usr/share/datasets/fashion-mnist)
  CHECKPOINT    small checkpoint.safetensors files made by `mnist_gpu train` with tiny models
Cuts the first images and labels of the real files into small IDX (raw and gzip) and npz (stored
and deflated) files, draws the first train image as PGM, PNG, BMP and JPEG (JPEG through
stb_image_write, compiled here with cc), and writes model specs, checkpoint-to-spec inputs and
HTTP requests. The standard library only (no numpy, no PIL).
"""
import gzip
import io
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    assert len(data) <= 64 * 1024, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        return f.read()


def idx_images(raw, n):
    count, rows, cols = struct.unpack(">III", raw[4:16])
    return struct.pack(">IIII", 0x803, n, rows, cols) + raw[16:16 + n * rows * cols]


def idx_labels(raw, n):
    return struct.pack(">II", 0x801, n) + raw[8:8 + n]


def npy(shape, payload, version=1):
    dims = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': %s, }" % dims
    pre = 10 if version == 1 else 12
    header += " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode() + payload


def npz(members, compression):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # the same bytes each run
            info.compress_type = compression
            z.writestr(info, data)
    return buf.getvalue()


def png(w, h, gray):
    rows = b"".join(b"\0" + gray[y * w:(y + 1) * w] for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def bmp(w, h, gray):
    stride = (w * 3 + 3) & ~3
    rows = b""
    for y in reversed(range(h)):
        row = b"".join(bytes([v, v, v]) for v in gray[y * w:(y + 1) * w])
        rows += row + b"\0" * (stride - len(row))
    head = struct.pack("<2sIHHI", b"BM", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return head + info + rows


def jpeg(w, h, gray, cc):
    src = r'''
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#include <stdio.h>
int main(int c, char** v) {
  static unsigned char px[1 << 20];
  int w = atoi(v[1]), h = atoi(v[2]);
  fread(px, 1, (size_t)w * h, stdin);
  return !stbi_write_jpg(v[3], w, h, 1, px, 90);
}
'''
    with tempfile.TemporaryDirectory() as t:
        c, exe, out = (os.path.join(t, n) for n in ("j.c", "j", "o.jpg"))
        with open(c, "w") as f:
            f.write(src)
        subprocess.run([cc, "-O1", "-I/usr/include/stb", c, "-o", exe, "-lm"], check=True)
        subprocess.run([exe, str(w), str(h), out], input=gray, check=True)
        with open(out, "rb") as f:
            return f.read()


def upscale(w, h, gray, k):
    return bytes(gray[(y // k) * w + x // k] for y in range(h * k) for x in range(w * k))


def main():
    args = sys.argv[1:]
    cc = "cc"
    if "--jpeg-helper" in args:
        i = args.index("--jpeg-helper")
        cc = args[i + 1]
        del args[i:i + 2]
    fashion, checkpoints = args[0], args[1:]
    train_x = read_idx(os.path.join(fashion, "train-images-idx3-ubyte.gz"))
    train_y = read_idx(os.path.join(fashion, "train-labels-idx1-ubyte.gz"))
    test_x = read_idx(os.path.join(fashion, "t10k-images-idx3-ubyte.gz"))
    test_y = read_idx(os.path.join(fashion, "t10k-labels-idx1-ubyte.gz"))

    # IDX: raw and gzip, images and labels, one image and several.
    for n in (1, 4):
        put("idx", "images_%d.idx" % n, idx_images(train_x, n))
        put("idx", "images_%d.idx.gz" % n, gzip.compress(idx_images(train_x, n), mtime=0))
    put("idx", "labels_20.idx", idx_labels(train_y, 20))
    put("idx", "labels_20.idx.gz", gzip.compress(idx_labels(train_y, 20), mtime=0))
    put("idx", "test_images_2.idx", idx_images(test_x, 2))
    put("idx", "test_labels_2.idx", idx_labels(test_y, 2))

    # npz: Keras' four members, stored and deflated, .npy 1.0 and 2.0.
    def members(n_train, n_test, version):
        px = 28 * 28
        return [("x_train.npy", npy((n_train, 28, 28), train_x[16:16 + n_train * px], version)),
                ("y_train.npy", npy((n_train,), train_y[8:8 + n_train], version)),
                ("x_test.npy", npy((n_test, 28, 28), test_x[16:16 + n_test * px], version)),
                ("y_test.npy", npy((n_test,), test_y[8:8 + n_test], version))]

    put("npz", "stored_3_2.npz", npz(members(3, 2, 1), zipfile.ZIP_STORED))
    put("npz", "deflated_8_4.npz", npz(members(8, 4, 1), zipfile.ZIP_DEFLATED))
    put("npz", "v2_2_1.npz", npz(members(2, 1, 2), zipfile.ZIP_DEFLATED))

    # Pictures: the first train image as each format predict and serve read.
    w = h = 28
    img = train_x[16:16 + w * h]
    put("image", "item.pgm", b"P5\n28 28\n255\n" + img)
    put("image", "item.png", png(w, h, img))
    put("image", "item_inverted.png", png(w, h, bytes(255 - v for v in img)))
    put("image", "item.bmp", bmp(w, h, img))
    put("image", "item.jpg", jpeg(w, h, img, cc))
    put("image", "item_x3.jpg", jpeg(3 * w, 3 * h, upscale(w, h, img, 3), cc))
    put("image", "item.ppm", b"P6\n28 28\n255\n" + b"".join(bytes([v, v, v]) for v in img))

    # Checkpoints as written by mnist_gpu train.
    for i, path in enumerate(checkpoints):
        with open(path, "rb") as f:
            put("safetensors", "%d_%s" % (i, os.path.basename(path)), f.read())

    # Model specs: the seed model, every layer kind and suffix.
    for i, spec in enumerate(["conv32,pool,conv64,pool,drop0.25,flatten,dense128,drop0.5",
                              "dense16", "conv8k5vn,relu,pool,conv4k1,flatten,dense8n,relu",
                              "conv4k7v,pool,pool,drop0.9,dense2", "pool,pool,pool,pool,dense1"]):
        put("model_spec", "spec_%d.txt" % i, spec.encode())

    # Checkpoint-to-spec: metadata spec, input shape, classes, the tensors' spec.
    cases = ["dense16\n[1,28,28]\n10\n", "conv2,pool,dense4\n[1,28,28]\n10\nconv2,pool,dense4",
             "dense16\n[1,28,28]\n10\ndense8", "conv3k5v,pool,dense4n,relu\n[3,32,32]\n100\n",
             "pool,dense4\n[1,28,28]\n10\npool,pool,dense4", "dense4\n[2,9,7]\n3\nconv2,dense4",
             "dense4\n[1,1,1]\n1\n"]
    for i, text in enumerate(cases):
        put("checkpoint_spec", "case_%d.txt" % i, text.encode())

    # HTTP: what the page and curl send.
    picture = png(w, h, img)
    def post(body, ctype="image/png", extra=""):
        return (("POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: %s\r\n"
                 "Content-Length: %d\r\n%s\r\n") % (ctype, len(body), extra)).encode() + body
    chunked = b"".join(b"%x\r\n" % len(picture[i:i + 200]) + picture[i:i + 200] + b"\r\n"
                       for i in range(0, len(picture), 200)) + b"0\r\n\r\n"
    requests = {
        "get_root": b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nAccept: text/html\r\n\r\n",
        "get_healthz": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "get_model": b"GET /api/model HTTP/1.1\r\nHost: [::1]:8080\r\nRange: bytes=0-1,3-4\r\n\r\n",
        "get_report": b"GET /run/report.html HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "get_train": b"GET /api/train?x=1 HTTP/1.0\r\n\r\n",
        "rebinding": b"GET /api/model HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n",
        "post_png": post(picture),
        "post_pgm": post(b"P5\n28 28\n255\n" + img, "image/x-portable-graymap"),
        "post_expect": post(picture, "application/octet-stream", "Expect: 100-continue\r\n"),
        "post_text": post(b"hello", "text/plain"),
        "post_chunked": (b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png"
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked),
        "post_gzip": post(gzip.compress(picture, mtime=0), "image/png", "Content-Encoding: gzip\r\n"),
    }
    for name, data in requests.items():
        put("http", name + ".http", data)


if __name__ == "__main__":
    main()
