"""Edge study (issue 21; docs/PERFORMANCE.md, "Edges"): which boundary treatment removes the dark frame?

Usage (PyTorch, numpy, safetensors and Pillow; e.g. the venv scripts/cpu-bench.sh makes):
  python scripts/edge-study.py CONTENT STYLE SIDE ITERATIONS [METHOD,METHOD,...] [TAG] [OUTDIR]
  python scripts/edge-study.py --measure STYLE SIDE PNG...     # the bars of finished paintings (e.g. the engine's)
  python scripts/edge-study.py --patch STYLE SIDE PNG          # the zero-padding score with the outer k px replaced

Same maths as docs/MATHS.md (VGG16 to relu5_1, content relu4_2 w 5, Gram style relu1_1..5_1 w 100, TV 1e-3,
Adam lr 10 from the content image), in PyTorch float32 on the CPU, with the shipped weights. Each method paints,
then the painting is measured: (a) outer band, (b) lines near the edge, (c) style loss scored by today's maths.
"""
import json, os, sys, time
import numpy as np
import torch, torch.nn.functional as F
from PIL import Image
from safetensors.numpy import load_file

torch.set_num_threads(2)
MEAN = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
LAYERS = ["conv1_1", "conv1_2", "M", "conv2_1", "conv2_2", "M", "conv3_1", "conv3_2", "conv3_3", "M",
          "conv4_1", "conv4_2", "conv4_3", "M", "conv5_1"]
STYLE = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
CONTENT = "conv4_2"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W = {k: torch.from_numpy(v.astype(np.float32))
     for k, v in load_file(os.path.join(ROOT, "weights", "vgg16_conv.safetensors")).items()}


def load(path, side):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = side / max(w, h)
    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)[None] - MEAN


def features(x, pad="zero", pad_layers=None, partial=False):
    """Activations of every style and content layer. pad: zero | reflect | replicate; pad_layers: which convs
    get the non-zero padding (None: all). partial: partial-convolution padding (Liu et al. 2018)."""
    out = {}
    for name in LAYERS:
        if name == "M":
            x = F.max_pool2d(x, 2, 2)
            continue
        w, b = W[name + ".weight"], W[name + ".bias"]
        mode = pad if (pad_layers is None or name in pad_layers) else "zero"
        if mode == "zero":
            y = F.conv2d(x, w, None, padding=1)
            if partial:
                ones = torch.ones(1, 1, x.shape[2], x.shape[3])
                cnt = F.conv2d(ones, torch.ones(1, 1, 3, 3), padding=1)
                y = y * (9.0 / cnt)
            y = y + b.view(1, -1, 1, 1)
        else:
            y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), w, b)
        x = F.relu(y)
        if name in STYLE or name == CONTENT:
            out[name] = x
    return out


def gram(f, mask=None):
    _, c, h, w = f.shape
    if mask is None:
        m = f.reshape(c, h * w)
        return m @ m.t() / (c * h * w)
    m = (f * mask).reshape(c, h * w)
    return m @ m.t() / (c * mask.sum())


def interior_mask(f, scale_px, margin_px):
    """1 on the feature positions whose centre lies inside the image (the canvas minus margin_px on each side);
    the layer's stride is scale_px."""
    _, _, h, w = f.shape
    ys = (torch.arange(h) + 0.5) * scale_px
    xs = (torch.arange(w) + 0.5) * scale_px
    H, Wd = h * scale_px, w * scale_px
    my = ((ys >= margin_px) & (ys < H - margin_px)).float()
    mx = ((xs >= margin_px) & (xs < Wd - margin_px)).float()
    return (my[:, None] * mx[None, :])[None, None]


STRIDE = {"conv1_1": 1, "conv2_1": 2, "conv3_1": 4, "conv4_1": 8, "conv4_2": 8, "conv5_1": 16}


def tv(x):
    dx = x[:, :, :-1, :-1] - x[:, :, :-1, 1:]
    dy = x[:, :, :-1, :-1] - x[:, :, 1:, :-1]
    return 1e-3 / 2 * (dx.pow(2).sum() + dy.pow(2).sum())


def style_loss_zero(img, A):
    """Today's style loss of an image (zero padding, full Gram)."""
    with torch.no_grad():
        f = features(img)
        return float(100 * sum(((gram(f[k]) - A[k]) ** 2).mean() for k in STYLE))


def paint(content, style, method, iters):
    m = method.get("margin", 0)
    pad = method.get("pad", "zero")
    pad_layers = method.get("pad_layers")
    partial = method.get("partial", False)
    inner = method.get("inner_losses", False)
    with torch.no_grad():
        tied = method.get("tied", False)
        if tied and method.get("style_margin", True):
            sc = F.pad(style, (m, m, m, m), mode="reflect")
            fs = features(sc, pad, pad_layers, partial)
            A = {k: gram(fs[k], interior_mask(fs[k], STRIDE[k], m)) for k in STYLE}
        else:
            fs = features(style, pad, pad_layers, partial)
            sc_px = method.get("style_cut", 0)
            A = {k: gram(fs[k], interior_mask(fs[k], STRIDE[k], sc_px) if sc_px else None) for k in STYLE}
        canvas = F.pad(content, (m, m, m, m), mode=method.get("margin_fill", "reflect")) if m else content
        P = features(canvas, pad, pad_layers, partial)[CONTENT]
    x = (content if tied else canvas).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=10)
    for _ in range(iters):
        opt.zero_grad()
        xc = F.pad(x, (m, m, m, m), mode="reflect") if tied else x
        f = features(xc, pad, pad_layers, partial)
        cut = method.get("cut", 0)
        mw = method.get("margin_gram_weight")
        if mw is not None:
            lc = 5 * ((f[CONTENT] - P) ** 2).mean()
            ls = 0
            for k in STYLE:
                wts = mw + (1 - mw) * interior_mask(f[k], STRIDE[k], m)
                _, c, hh, ww = f[k].shape
                g = (f[k] * wts.sqrt()).reshape(c, hh * ww)
                ls = ls + ((g @ g.t() / (c * wts.sum()) - A[k]) ** 2).mean()
            ls = 100 * ls
        elif cut:
            masks = {k: interior_mask(f[k], STRIDE[k], cut) for k in STYLE}
            lc = 5 * ((f[CONTENT] - P) ** 2).mean()
            ls = 100 * sum(((gram(f[k], masks[k]) - A[k]) ** 2).mean() for k in STYLE)
        elif inner and m:
            masks = {k: interior_mask(f[k], STRIDE[k], m) for k in STYLE + [CONTENT]}
            mc = masks[CONTENT]
            lc = 5 * (((f[CONTENT] - P) ** 2) * mc).sum() / (f[CONTENT].shape[1] * mc.sum())
            ls = 100 * sum(((gram(f[k], masks[k]) - A[k]) ** 2).mean() for k in STYLE)
        else:
            lc = 5 * ((f[CONTENT] - P) ** 2).mean()
            ls = 100 * sum(((gram(f[k]) - A[k]) ** 2).mean() for k in STYLE)
        (lc + ls + tv(x)).backward()
        opt.step()
    x = x.detach()
    if m and not tied:
        x = x[:, :, m:-m, m:-m]
    return x


def to_u8(x):
    return (x + MEAN).clamp(0, 255).round()[0]


def edge_metrics(img):
    """img: 3xHxW 0..255. Returns per side (top, bottom, left, right): (a) the three outer rows' means over the
    mean of rows 8..16 in; (b) the largest jump of a row mean from its neighbours' average in rows 1..23 over the
    largest in the interior (rows 24..H-25)."""
    if min(img.shape[1:]) < 50:
        sys.exit("edge-study: the bars need at least 50 px on each side (24 px near each edge and an interior)")
    lum = img.mean(0).double()  # H x W
    res = {}
    for side, prof in [("top", lum.mean(1)), ("bottom", lum.mean(1).flip(0)),
                       ("left", lum.mean(0)), ("right", lum.mean(0).flip(0))]:
        ref = prof[8:17].mean()
        outer = [float(prof[i] / ref) for i in range(3)]
        jump = (prof[1:-1] - (prof[:-2] + prof[2:]) / 2).abs()  # jump[i-1] is row i
        near = float(jump[0:23].max())
        inner = float(jump[23:len(prof) - 25].max())
        res[side] = {"outer": outer, "line": near / inner}
    worst_outer = max(abs(v - 1) for s in res.values() for v in s["outer"])
    worst_line = max(s["line"] for s in res.values())
    return res, worst_outer, worst_line


METHODS = {
    "zero": {},
    "replicate_all": {"pad": "replicate"},
    "reflect_all": {"pad": "reflect"},
    "partial_conv": {"partial": True},
    "margin8": {"margin": 8},
    "margin16": {"margin": 16},
    "margin32": {"margin": 32},
    "margin16_inner": {"margin": 16, "inner_losses": True},
    "tied16": {"margin": 16, "tied": True, "inner_losses": True},
    "tied32": {"margin": 32, "tied": True, "inner_losses": True},
    "tied16_zerostyle": {"margin": 16, "tied": True, "inner_losses": True, "style_margin": False},
    "cut4": {"cut": 4, "style_cut": 4},
    "cut16": {"cut": 16, "style_cut": 16},
    "margin4": {"margin": 4},
    "margin8_stylecut8": {"margin": 8, "style_cut": 8},
    "margin8_w25": {"margin": 8, "margin_gram_weight": 0.25},
    "margin16_reflectpad": {"margin": 16, "pad": "reflect"},
}

def zero_score(img, A, cut=0):
    """Today's style loss (zero padding) of an image, optionally with `cut` px removed from every side."""
    if cut:
        img = img[:, :, cut:-cut, cut:-cut]
    return style_loss_zero(img, A)


def read_png(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)


def report(tag, name, u8, A, base, extra=None):
    per, wo, wl = edge_metrics(u8)
    whole, interior = zero_score(u8[None] - MEAN, A), zero_score(u8[None] - MEAN, A, 16)
    out = {"tag": tag, "method": name, "a_outer": round(wo, 3), "b_line": round(wl, 2),
           "c_whole": round(whole), "c_interior": round(interior),
           "sides": {k: {"outer": [round(v, 2) for v in s["outer"]], "line": round(s["line"], 2)} for k, s in per.items()}}
    if base:
        out["c_whole_vs_zero"] = round(whole / base[0], 3)
        out["c_interior_vs_zero"] = round(interior / base[1], 3)
    out.update(extra or {})
    print(json.dumps(out), flush=True)
    return whole, interior


if __name__ == "__main__":
    if sys.argv[1] == "--measure":
        style = load(sys.argv[2], int(sys.argv[3]))
        with torch.no_grad():
            A0 = {k: gram(features(style)[k]) for k in STYLE}
        base = None
        for path in sys.argv[4:]:
            sc = report("measure", path, read_png(path), A0, base)
            base = base or sc
        sys.exit(0)
    if sys.argv[1] == "--patch":
        style = load(sys.argv[2], int(sys.argv[3]))
        with torch.no_grad():
            A0 = {k: gram(features(style)[k]) for k in STYLE}
        z = read_png(sys.argv[4])[None] - MEAN
        print(json.dumps({"as_is": round(zero_score(z, A0))}))
        for k in (2, 3, 4, 6):
            p = F.pad(z[:, :, k:-k, k:-k], (k, k, k, k), mode="reflect")
            print(json.dumps({"outer_px_replaced_by_reflection": k, "c_whole": round(zero_score(p, A0))}))
        sys.exit(0)
    content_path, style_path, side, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    names = sys.argv[5].split(",") if len(sys.argv) > 5 else list(METHODS)
    tag = sys.argv[6] if len(sys.argv) > 6 else "run"
    outdir = sys.argv[7] if len(sys.argv) > 7 else "."
    content = load(content_path, side)
    style = load(style_path, side)
    with torch.no_grad():
        A0 = {k: gram(features(style)[k]) for k in STYLE}
    base = None
    for name in names:
        t = time.time()
        torch.manual_seed(0)
        u8 = to_u8(paint(content, style, METHODS[name], iters))
        Image.fromarray(u8.permute(1, 2, 0).byte().numpy()).save(os.path.join(outdir, f"{tag}_{name}.png"))
        sc = report(tag, name, u8, A0, base, {"s": round(time.time() - t, 1)})
        if name == "zero":
            base = sc
