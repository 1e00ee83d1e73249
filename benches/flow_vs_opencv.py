#!/usr/bin/env python3
"""Optical flow: our DIS (src/flow.rs, docs/MATHS.md "Video", **Flow**) beside OpenCV's DIS presets.

Renders synthetic pairs with known flow the way tests/flow.rs does (smooth random textures: sinusoids plus
Gaussian blobs, one texture per channel, sampled at positions moved back through the motion), writes them as PNGs
with the true flow as Middlebury .flo, then for each pair reports the average endpoint error (px, over the pixels
whose true destination is inside the frame, and for the moving square outside its occluded pixels and a 2 px band
at its edges) and the time per pair of:
  - OpenCV's DIS, presets ULTRAFAST, FAST, MEDIUM (grey 8-bit input, as OpenCV takes), timed in-process;
  - ours, through `neural-style flow A.png B.png -o out.flo` (timed as a subprocess, so it includes process start,
    adapter and pipeline setup; if the command prints `ms per pair: X` that figure is shown too).
Or give pairs of your own: --pair A.png B.png [truth.flo] (repeatable).

Needs numpy and OpenCV for this script only (never a dependency of the project):
    pip install opencv-python-headless numpy
Usage:
    python3 benches/flow_vs_opencv.py [--out DIR] [--runs N] [--binary PATH] [--pair A B [FLO]]...
"""

import argparse
import math
import os
import re
import subprocess
import sys
import time

import cv2
import numpy as np

FLO_MAGIC = 202021.25


def write_flo(path, u, v):
    h, w = u.shape
    with open(path, "wb") as f:
        np.array([FLO_MAGIC], "<f4").tofile(f)
        np.array([w, h], "<i4").tofile(f)
        np.stack([u, v], axis=-1).astype("<f4").tofile(f)


def read_flo(path):
    with open(path, "rb") as f:
        magic = np.fromfile(f, "<f4", 1)[0]
        if magic != np.float32(FLO_MAGIC):
            raise ValueError(f"{path}: not a .flo file")
        w, h = np.fromfile(f, "<i4", 2)
        data = np.fromfile(f, "<f4", 2 * w * h).reshape(h, w, 2)
    return data[..., 0], data[..., 1]


class Texture:
    """16 sinusoids (wavelengths log-uniform in `wavelengths`) and 12 Gaussian blobs around grey 128."""

    def __init__(self, rng, size, wavelengths):
        w, h = size
        lam = np.exp(rng.uniform(math.log(wavelengths[0]), math.log(wavelengths[1]), 16))
        angle = rng.uniform(0, 2 * math.pi, 16)
        k = 2 * math.pi / lam
        self.waves = np.stack([rng.uniform(6, 14, 16), k * np.cos(angle), k * np.sin(angle),
                               rng.uniform(0, 2 * math.pi, 16)], 1)
        sign = np.where(rng.random(12) < 0.5, 1.0, -1.0)
        self.blobs = np.stack([rng.uniform(25, 50, 12) * sign, rng.uniform(-0.5 * w, 1.5 * w, 12),
                               rng.uniform(-0.5 * h, 1.5 * h, 12),
                               rng.uniform(wavelengths[0] * 2 / 3, wavelengths[1] / 2, 12)], 1)

    def at(self, x, y):
        v = np.full(x.shape, 128.0)
        for a, kx, ky, phase in self.waves:
            v += a * np.sin(kx * x + ky * y + phase)
        for a, bx, by, s in self.blobs:
            v += a * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * s * s))
        return v


def rgb(textures, xs, ys):
    return np.stack([t.at(xs, ys) for t in textures], -1)


def moved_pair(seed, size, motion, inverse, wavelengths=(6.0, 40.0)):
    """Frames of textures moved by `motion` (frame-0 position -> frame-1 position); truth and measured mask."""
    rng = np.random.default_rng(seed)
    tex = [Texture(rng, size, wavelengths) for _ in range(3)]
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = motion(xs, ys)
    sx, sy = inverse(xs, ys)
    measured = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return rgb(tex, xs, ys), rgb(tex, sx, sy), tx - xs, ty - ys, measured


def square_pair(seed, size=(128, 96), square=(6.0, 3.0), background=(-2.0, 1.0), corner=(40.0, 28.0), side=36.0):
    rng = np.random.default_rng(seed)
    bg = [Texture(rng, size, (6.0, 40.0)) for _ in range(3)]
    sq = [Texture(rng, size, (6.0, 40.0)) for _ in range(3)]
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)

    def in_square(x, y, at, margin=0.0):
        return (x >= at[0] - margin) & (x < at[0] + side + margin) & (y >= at[1] - margin) & (y < at[1] + side + margin)

    def frame(at, shift):
        inside = in_square(xs, ys, at)[..., None]
        return np.where(inside, rgb(sq, xs - at[0] + corner[0], ys - at[1] + corner[1]),
                        rgb(bg, xs - shift[0], ys - shift[1]))

    moved_at = (corner[0] + square[0], corner[1] + square[1])
    on = in_square(xs, ys, corner)
    u = np.where(on, square[0], background[0])
    v = np.where(on, square[1], background[1])
    edge = in_square(xs, ys, corner, 2.0) & ~in_square(xs, ys, corner, -2.0)
    occluded = ~on & in_square(xs + u, ys + v, moved_at, 2.0)
    inside = (xs + u >= 0) & (xs + u <= w - 1) & (ys + v >= 0) & (ys + v <= h - 1)
    return frame(corner, (0.0, 0.0)), frame(moved_at, background), u, v, ~edge & ~occluded & inside


def scenes():
    def translation(t):
        return (lambda x, y: (x + t[0], y + t[1])), (lambda x, y: (x - t[0], y - t[1]))

    def about_centre(size, f):
        cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
        return lambda x, y: tuple(a + b for a, b in zip((cx, cy), f(x - cx, y - cy)))

    def rotation(size, degrees):
        s, c = math.sin(math.radians(degrees)), math.cos(math.radians(degrees))
        return (about_centre(size, lambda x, y: (c * x - s * y, s * x + c * y)),
                about_centre(size, lambda x, y: (c * x + s * y, -s * x + c * y)))

    def zoom(size, k):
        return about_centre(size, lambda x, y: (k * x, k * y)), about_centre(size, lambda x, y: (x / k, y / k))

    small = (128, 96)
    yield "translation (0.37, -0.61) 128x96", moved_pair(1, small, *translation((0.37, -0.61)))
    yield "translation (23, -17) 256x256", moved_pair(2, (256, 256), *translation((23.0, -17.0)), (6.0, 120.0))
    yield "rotation 3 deg 128x96", moved_pair(3, small, *rotation(small, 3.0))
    yield "zoom 1.05 128x96", moved_pair(4, small, *zoom(small, 1.05))
    yield "square (6,3) over (-2,1) 128x96", square_pair(5)
    yield "translation (2.5, 1.5) 640x480", moved_pair(6, (640, 480), *translation((2.5, 1.5)), (6.0, 120.0))


def to_png(path, frame):
    cv2.imwrite(path, cv2.cvtColor(np.clip(np.rint(frame), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))


def epe(u, v, tu, tv, measured):
    if tu is None:
        return float("nan")
    return float(np.hypot(u - tu, v - tv)[measured].mean())


def opencv(a_png, b_png, runs):
    g0 = cv2.imread(a_png, cv2.IMREAD_GRAYSCALE)
    g1 = cv2.imread(b_png, cv2.IMREAD_GRAYSCALE)
    out = {}
    for name in ["ULTRAFAST", "FAST", "MEDIUM"]:
        dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{name}"))
        flow = dis.calc(g0, g1, None)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            flow = dis.calc(g0, g1, None)
            times.append(1e3 * (time.perf_counter() - start))
        out[name] = (flow[..., 0], flow[..., 1], float(np.median(times)))
    return out


def ours(command, a_png, b_png, out_flo):
    start = time.perf_counter()
    p = subprocess.run(command + ["flow", a_png, b_png, "-o", out_flo], capture_output=True, text=True)
    wall = 1e3 * (time.perf_counter() - start)
    if p.returncode != 0 or not os.path.exists(out_flo):
        return None, f"failed ({p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode})"
    m = re.search(r"ms per pair:\s*([0-9.]+)", p.stderr + p.stdout)
    u, v = read_flo(out_flo)
    return (u, v), f"{wall:.0f} ms process" + (f", {float(m.group(1)):.2f} ms per pair" if m else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="target/flow-bench", help="where the pairs and flows are written")
    ap.add_argument("--runs", type=int, default=20, help="timed OpenCV runs per pair (median shown)")
    ap.add_argument("--binary", help="our binary (default: cargo run --release --)")
    ap.add_argument("--pair", nargs="+", action="append", metavar="PNG", help="A.png B.png [truth.flo]")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    command = [args.binary] if args.binary else ["cargo", "run", "--release", "--quiet", "--"]

    pairs = []
    if args.pair:
        for p in args.pair:
            truth = read_flo(p[2]) if len(p) > 2 else (None, None)
            g = cv2.imread(p[0], cv2.IMREAD_GRAYSCALE)
            pairs.append((os.path.basename(p[0]), p[0], p[1], truth[0], truth[1], np.ones(g.shape, bool)))
    else:
        for i, (name, (f0, f1, tu, tv, measured)) in enumerate(scenes()):
            a, b = os.path.join(args.out, f"pair{i}_a.png"), os.path.join(args.out, f"pair{i}_b.png")
            to_png(a, f0)
            to_png(b, f1)
            write_flo(os.path.join(args.out, f"pair{i}_truth.flo"), tu, tv)
            pairs.append((name, a, b, tu, tv, measured))

    print(f"OpenCV {cv2.__version__}; EPE in px; OpenCV ms per pair: median of {args.runs} runs, one thread pool")
    for i, (name, a, b, tu, tv, measured) in enumerate(pairs):
        print(f"\n{name}")
        for preset, (u, v, ms) in opencv(a, b, args.runs).items():
            print(f"  opencv DIS {preset:<10} EPE {epe(u, v, tu, tv, measured):7.3f}   {ms:8.2f} ms per pair")
        flow, how = ours(command, a, b, os.path.join(args.out, f"pair{i}_ours.flo"))
        if flow is None:
            print(f"  ours (neural-style flow): {how}")
        else:
            print(f"  ours (neural-style flow)  EPE {epe(*flow, tu, tv, measured):7.3f}   {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
