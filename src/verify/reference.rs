//! Plain CPU implementations of every kernel and of the whole loss, accumulating in f64. Tests and
//! `neural-style selftest` compare the GPU against these; they are written for clarity, not speed, and share no
//! code with the GPU path, except L-BFGS's line search: that is scalar logic on the CPU in both
//! ([`crate::optim::line_search`], with its own unit tests), so [`lbfgs`] checks the GPU's vectors and
//! two-loop recursion, not the search. Tensors are CHW `f64` slices.

/// 3x3 convolution, stride 1, zero pad 1, + bias, optional ReLU. `w` is OIHW.
pub fn conv3x3(
    x: &[f64],
    (cin, h, wd): (usize, usize, usize),
    w: &[f64],
    b: &[f64],
    cout: usize,
    relu: bool,
) -> Vec<f64> {
    assert_eq!(x.len(), cin * h * wd);
    assert_eq!(w.len(), cout * cin * 9);
    let mut out = vec![0.0; cout * h * wd];
    for co in 0..cout {
        for y in 0..h {
            for xx in 0..wd {
                let mut s = b[co];
                for ci in 0..cin {
                    for ky in 0..3 {
                        let iy = y as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..3 {
                            let ix = xx as isize + kx as isize - 1;
                            if ix < 0 || ix >= wd as isize {
                                continue;
                            }
                            s += w[((co * cin + ci) * 3 + ky) * 3 + kx] * x[(ci * h + iy as usize) * wd + ix as usize];
                        }
                    }
                }
                out[(co * h + y) * wd + xx] = if relu { s.max(0.0) } else { s };
            }
        }
    }
    out
}

/// Gradient w.r.t. the input of conv3x3+ReLU: `gy` is the gradient w.r.t. the post-ReLU output `y`.
pub fn conv3x3_backward_data(
    gy: &[f64],
    y: &[f64],
    cin: usize,
    cout: usize,
    h: usize,
    wd: usize,
    w: &[f64],
) -> Vec<f64> {
    let mut gx = vec![0.0; cin * h * wd];
    for co in 0..cout {
        for oy in 0..h {
            for ox in 0..wd {
                let o = (co * h + oy) * wd + ox;
                if y[o] <= 0.0 {
                    continue;
                }
                let g = gy[o];
                for ci in 0..cin {
                    for ky in 0..3 {
                        let iy = oy as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..3 {
                            let ix = ox as isize + kx as isize - 1;
                            if ix < 0 || ix >= wd as isize {
                                continue;
                            }
                            gx[(ci * h + iy as usize) * wd + ix as usize] += w[((co * cin + ci) * 3 + ky) * 3 + kx] * g;
                        }
                    }
                }
            }
        }
    }
    gx
}

/// ReLU backward: `g` where `y > 0`, else 0.
/// Central differences of `loss` at `x`, one coordinate at a time with step `eps`: the gradient checks' ground
/// truth for the analytic gradients.
pub fn central_differences(x: &[f64], eps: f64, loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let (mut p, mut m) = (x.to_vec(), x.to_vec());
            p[i] += eps;
            m[i] -= eps;
            (loss(&p) - loss(&m)) / (2.0 * eps)
        })
        .collect()
}

pub fn relu_mask(g: &[f64], y: &[f64]) -> Vec<f64> {
    g.iter().zip(y).map(|(&g, &y)| if y > 0.0 { g } else { 0.0 }).collect()
}

/// 2x2/2 FLOOR max pool.
pub fn maxpool2x2(x: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0; c * oh * ow];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (i, _) = argmax_window(x, ch, h, w, oy, ox);
                out[(ch * oh + oy) * ow + ox] = x[i];
            }
        }
    }
    out
}

/// Index of a window's max: first in row-major order on ties.
fn argmax_window(x: &[f64], ch: usize, h: usize, w: usize, oy: usize, ox: usize) -> (usize, f64) {
    let mut best = (usize::MAX, f64::NEG_INFINITY);
    for dy in 0..2 {
        for dx in 0..2 {
            let i = (ch * h + 2 * oy + dy) * w + 2 * ox + dx;
            if best.0 == usize::MAX || x[i] > best.1 {
                best = (i, x[i]);
            }
        }
    }
    best
}

pub fn maxpool2x2_backward(x: &[f64], gy: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut gx = vec![0.0; c * h * w];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (i, _) = argmax_window(x, ch, h, w, oy, ox);
                gx[i] += gy[(ch * oh + oy) * ow + ox];
            }
        }
    }
    gx
}

pub fn avgpool2x2(x: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0; c * oh * ow];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0;
                for dy in 0..2 {
                    for dx in 0..2 {
                        s += x[(ch * h + 2 * oy + dy) * w + 2 * ox + dx];
                    }
                }
                out[(ch * oh + oy) * ow + ox] = 0.25 * s;
            }
        }
    }
    out
}

pub fn avgpool2x2_backward(gy: &[f64], c: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow) = (h / 2, w / 2);
    let mut gx = vec![0.0; c * h * w];
    for ch in 0..c {
        for y in 0..2 * oh {
            for x in 0..2 * ow {
                gx[(ch * h + y) * w + x] = 0.25 * gy[(ch * oh + y / 2) * ow + x / 2];
            }
        }
    }
    gx
}

/// G = F Fᵀ / (C * N) for F: C x N.
pub fn gram(f: &[f64], c: usize, n: usize) -> Vec<f64> {
    let mut g = vec![0.0; c * c];
    let scale = 1.0 / (c as f64 * n as f64);
    for i in 0..c {
        for j in i..c {
            let s: f64 = (0..n).map(|k| f[i * n + k] * f[j * n + k]).sum();
            g[i * c + j] = s * scale;
            g[j * c + i] = s * scale;
        }
    }
    g
}

pub fn sum_sq_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Content loss w·mean((F−P)²) and its gradient w.r.t. F.
pub fn content_loss(f: &[f64], p: &[f64], weight: f64) -> (f64, Vec<f64>) {
    let n = f.len() as f64;
    let loss = weight * sum_sq_diff(f, p) / n;
    let grad = f.iter().zip(p).map(|(a, b)| 2.0 * weight * (a - b) / n).collect();
    (loss, grad)
}

/// Style loss of one layer w·mean over C² of (G(F)−A)², and its gradient w.r.t. F (C x N).
pub fn style_loss(f: &[f64], a: &[f64], c: usize, n: usize, weight: f64) -> (f64, Vec<f64>) {
    masked_style_loss(f, a, c, &vec![1.0; n], weight)
}

/// The masked Gram G_w = Σ_p w_p·F_p·F_pᵀ / (C·S), S = Σ_p w_p (docs/MATHS.md, "Spatial control").
pub fn masked_gram(f: &[f64], c: usize, w: &[f64]) -> Vec<f64> {
    let (n, s) = (w.len(), w.iter().sum::<f64>());
    let mut g = vec![0.0; c * c];
    for i in 0..c {
        for j in i..c {
            let v: f64 = (0..n).map(|p| w[p] * f[i * n + p] * f[j * n + p]).sum::<f64>() / (c as f64 * s);
            g[i * c + j] = v;
            g[j * c + i] = v;
        }
    }
    g
}

/// The style loss of one region at one layer, w·a·mean over C² of (G_w − A)² with a = S/N (the region's area),
/// and its gradient w.r.t. F (C x N): w·a/C² · Σ_ij 2(G_w − A)_ij · ∂G_ij/∂F_kp with ∂G_ij/∂F_kp =
/// w_p(δ_ik F_jp + δ_jk F_ip)/(C·S). Weights of all ones give the unmasked loss.
pub fn masked_style_loss(f: &[f64], a: &[f64], c: usize, w: &[f64], weight: f64) -> (f64, Vec<f64>) {
    let (n, s) = (w.len(), w.iter().sum::<f64>());
    if s == 0.0 {
        return (0.0, vec![0.0; c * n]);
    }
    let g = masked_gram(f, c, w);
    let scale = weight * (s / n as f64) / (c * c) as f64;
    let loss = scale * sum_sq_diff(&g, a);
    let mut grad = vec![0.0; c * n];
    for k in 0..c {
        for j in 0..c {
            let coef = 2.0 * scale * ((g[k * c + j] - a[k * c + j]) + (g[j * c + k] - a[j * c + k])) / (c as f64 * s);
            if coef == 0.0 {
                continue;
            }
            for p in 0..n {
                grad[k * n + p] += coef * w[p] * f[j * n + p];
            }
        }
    }
    (loss, grad)
}

/// The masked content loss w·Σ_p m_p·Σ_c (F − P)² / (C·N) and its gradient 2w·m_p·(F − P) / (C·N).
pub fn masked_content_loss(f: &[f64], p: &[f64], m: &[f64], weight: f64) -> (f64, Vec<f64>) {
    let total = f.len() as f64;
    let at = |i: usize| m[i % m.len()];
    let loss = weight * (0..f.len()).map(|i| at(i) * (f[i] - p[i]) * (f[i] - p[i])).sum::<f64>() / total;
    let grad = (0..f.len()).map(|i| 2.0 * weight * at(i) * (f[i] - p[i]) / total).collect();
    (loss, grad)
}

/// The canvas of docs/MATHS.md, "Edges: the margin": `c` planes of `h` x `w` inside a margin of `m` on every
/// side, filled by mirroring about the edge pixels (canvas index −k holds image index k). Written as a periodic
/// fold (period 2(n − 1)), not as the engine's two-sided test.
pub fn reflect_pad(x: &[f64], c: usize, h: usize, w: usize, m: usize) -> Vec<f64> {
    let fold = |i: isize, n: usize| -> usize {
        let period = 2 * (n as isize - 1);
        let k = (i).rem_euclid(period);
        (if k < n as isize { k } else { period - k }) as usize
    };
    let (ch, cw) = (h + 2 * m, w + 2 * m);
    let mut out = vec![0.0; c * ch * cw];
    for k in 0..c {
        for y in 0..ch {
            for x0 in 0..cw {
                let (sy, sx) = (fold(y as isize - m as isize, h), fold(x0 as isize - m as isize, w));
                out[(k * ch + y) * cw + x0] = x[(k * h + sy) * w + sx];
            }
        }
    }
    out
}

/// TV loss (w/2)·Σ_{c, i<H−1, j<W−1} [(x_ij − x_i,j+1)² + (x_ij − x_i+1,j)²] and its gradient.
pub fn tv_loss(x: &[f64], h: usize, w: usize, weight: f64) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut grad = vec![0.0; x.len()];
    for c in 0..3 {
        for i in 0..h.saturating_sub(1) {
            for j in 0..w.saturating_sub(1) {
                let a = (c * h + i) * w + j;
                let dr = x[a] - x[a + 1];
                let dd = x[a] - x[a + w];
                loss += 0.5 * weight * (dr * dr + dd * dd);
                grad[a] += weight * (dr + dd);
                grad[a + 1] -= weight * dr;
                grad[a + w] -= weight * dd;
            }
        }
    }
    (loss, grad)
}

/// torch.optim.Adam, one step t (1-based), in f64.
pub fn adam_step(x: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], lr: f64, t: u64) {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let bc1 = 1.0 - b1.powi(t as i32);
    let bc2 = 1.0 - b2.powi(t as i32);
    for i in 0..x.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        let denom = v[i].sqrt() / bc2.sqrt() + eps;
        x[i] -= lr / bc1 * m[i] / denom;
    }
}

/// The bias-corrected image average after update t (docs/MATHS.md, "Image averaging"): `biased` takes in x
/// (restarting at t = 0) and the average is returned.
pub fn image_average(biased: &mut [f64], x: &[f64], decay: f64, t: u64) -> Vec<f64> {
    for (b, &xi) in biased.iter_mut().zip(x) {
        *b = if t == 0 { 0.0 } else { decay * *b } + (1.0 - decay) * xi;
    }
    let correction = 1.0 - decay.powi(t as i32 + 1);
    biased.iter().map(|b| b / correction).collect()
}

pub use crate::gaussian::{sym_fn, sym_max_eigenvalue, w2_target, W2Target};

/// Channel means μ (C) and second raw moments S = F·Fᵀ/N (C x C) of features F (C x N).
pub fn moments(f: &[f64], c: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mean = (0..c).map(|i| f[i * n..(i + 1) * n].iter().sum::<f64>() / n as f64).collect();
    let srm = gram(f, c, n).into_iter().map(|g| g * c as f64).collect();
    (mean, srm)
}

/// C x C product A·B (row-major).
pub fn matmul(a: &[f64], b: &[f64], c: usize) -> Vec<f64> {
    let mut out = vec![0.0; c * c];
    for i in 0..c {
        for k in 0..c {
            let aik = a[i * c + k];
            for j in 0..c {
                out[i * c + j] += aik * b[k * c + j];
            }
        }
    }
    out
}

/// The W2 style loss of one layer, w·[mean over C of (μ − μ_t)² + tr(Σ̂ + Σ̂_t − 2·(T·Σ̂·T)^½) / C], and its
/// gradient w.r.t. F (C x N): w·(2·K·(F − μ·1ᵀ) + 2·(μ − μ_t)·1ᵀ / C) / N with K = (I − T·M^−½·T) / C.
pub fn w2_loss(f: &[f64], t: &W2Target, c: usize, n: usize, weight: f64) -> (f64, Vec<f64>) {
    masked_w2_loss(f, t, c, &vec![1.0; n], weight)
}

/// The W2 loss of one region: the weighted mean μ_w = Σ_p w_p·F_p / S and second moment, the loss times the
/// area a = S/N, and the gradient w·a·(2·K·(F_p − μ_w) + 2·(μ_w − μ_t)/C)·w_p/S (docs/MATHS.md, "Spatial
/// control"). Weights of all ones give the unmasked loss.
pub fn masked_w2_loss(f: &[f64], t: &W2Target, c: usize, w: &[f64], weight: f64) -> (f64, Vec<f64>) {
    let (n, s) = (w.len(), w.iter().sum::<f64>());
    if s == 0.0 {
        return (0.0, vec![0.0; c * n]);
    }
    let weight = weight * s / n as f64;
    let mean: Vec<f64> = (0..c).map(|i| (0..n).map(|p| w[p] * f[i * n + p]).sum::<f64>() / s).collect();
    let srm: Vec<f64> = masked_gram(f, c, w).into_iter().map(|g| g * c as f64).collect();
    let mut cov: Vec<f64> = (0..c * c).map(|k| srm[k] - mean[k / c] * mean[k % c]).collect();
    (0..c).for_each(|i| cov[i * c + i] += t.ridge);
    let m = matmul(&t.sqrt, &matmul(&cov, &t.sqrt, c), c);
    let m_sqrt = sym_fn(&m, c, |l| l.max(0.0).sqrt());
    let trace = |a: &[f64]| (0..c).map(|i| a[i * c + i]).sum::<f64>();
    let mean_term = sum_sq_diff(&mean, &t.mean) / c as f64;
    let loss = weight * (mean_term + (trace(&cov) + trace(&t.cov) - 2.0 * trace(&m_sqrt)) / c as f64);
    let m_inv_sqrt = sym_fn(&m, c, |l| 1.0 / l.sqrt());
    let tzt = matmul(&t.sqrt, &matmul(&m_inv_sqrt, &t.sqrt, c), c);
    let k: Vec<f64> = (0..c * c).map(|q| (if q / c == q % c { 1.0 } else { 0.0 } - tzt[q]) / c as f64).collect();
    let mut grad = vec![0.0; c * n];
    for i in 0..c {
        let bias = 2.0 * (mean[i] - t.mean[i]) / c as f64;
        for p in 0..n {
            let centred: f64 = (0..c).map(|j| k[i * c + j] * (f[j * n + p] - mean[j])).sum();
            grad[i * n + p] = weight * (2.0 * centred + bias) * w[p] / s;
        }
    }
    (loss, grad)
}

/// A term weighted by a mask (docs/MATHS.md, "Spatial control"): its target, the mask's weights at the term's
/// layer (H·W, row-major), and the region's weight β (1 for the content term).
pub struct Masked<T> {
    pub target: T,
    pub weights: Vec<f64>,
    pub beta: f64,
}

impl StyleTarget for Masked<Vec<f64>> {
    fn loss(&self, f: &[f64], c: usize, _n: usize, weight: f64) -> (f64, Vec<f64>) {
        masked_style_loss(f, &self.target, c, &self.weights, weight * self.beta)
    }
}

impl StyleTarget for Masked<W2Target> {
    fn loss(&self, f: &[f64], c: usize, _n: usize, weight: f64) -> (f64, Vec<f64>) {
        masked_w2_loss(f, &self.target, c, &self.weights, weight * self.beta)
    }
}

/// A content term's target: P (`Vec<f64>`) or P with a mask.
pub trait ContentTarget {
    /// The term's loss for features F with weight w, and its gradient w.r.t. F.
    fn loss(&self, f: &[f64], weight: f64) -> (f64, Vec<f64>);
}

impl ContentTarget for Vec<f64> {
    fn loss(&self, f: &[f64], weight: f64) -> (f64, Vec<f64>) {
        content_loss(f, self, weight)
    }
}

impl ContentTarget for Masked<Vec<f64>> {
    fn loss(&self, f: &[f64], weight: f64) -> (f64, Vec<f64>) {
        masked_content_loss(f, &self.target, &self.weights, weight)
    }
}

/// A style term's target: the blended Gram A (`Vec<f64>`) or a [`W2Target`].
pub trait StyleTarget {
    /// The term's loss for features F (C x N) with weight w, and its gradient w.r.t. F.
    fn loss(&self, f: &[f64], c: usize, n: usize, weight: f64) -> (f64, Vec<f64>);
}

impl StyleTarget for Vec<f64> {
    fn loss(&self, f: &[f64], c: usize, n: usize, weight: f64) -> (f64, Vec<f64>) {
        style_loss(f, self, c, n, weight)
    }
}

impl StyleTarget for W2Target {
    fn loss(&self, f: &[f64], c: usize, n: usize, weight: f64) -> (f64, Vec<f64>) {
        w2_loss(f, self, c, n, weight)
    }
}

/// One reference conv layer: (name, cin, cout, weight OIHW, bias).
pub type RefConv = (String, usize, usize, Vec<f64>, Vec<f64>);

/// A VGG-shaped network for the reference: convs (OIHW f64 weights + bias) and where the pools go.
pub struct RefNet {
    pub convs: Vec<RefConv>,
    /// Pool after these conv indices.
    pub pool_after: Vec<usize>,
    pub avg_pool: bool,
    /// Per-channel input affine (scale, offset) applied to x before conv1_1.
    pub input_affine: Option<([f64; 3], [f64; 3])>,
}

/// Activations of a forward pass: the post-ReLU output of every conv, and the sizes.
pub struct RefForward {
    pub relu: Vec<Vec<f64>>,
    pub shapes: Vec<(usize, usize, usize)>,
}

impl RefNet {
    pub fn forward(&self, x: &[f64], h: usize, w: usize, up_to: usize) -> RefForward {
        let mut cur: Vec<f64> = match self.input_affine {
            Some((s, o)) => x.iter().enumerate().map(|(i, v)| v * s[i / (h * w)] + o[i / (h * w)]).collect(),
            None => x.to_vec(),
        };
        let (mut ch, mut hh, mut ww) = (3, h, w);
        let mut relu = Vec::new();
        let mut shapes = Vec::new();
        for (i, (_, cin, cout, wt, b)) in self.convs.iter().enumerate().take(up_to + 1) {
            assert_eq!(*cin, ch);
            cur = conv3x3(&cur, (*cin, hh, ww), wt, b, *cout, true);
            ch = *cout;
            relu.push(cur.clone());
            shapes.push((ch, hh, ww));
            if self.pool_after.contains(&i) && i < up_to {
                cur = if self.avg_pool { avgpool2x2(&cur, ch, hh, ww) } else { maxpool2x2(&cur, ch, hh, ww) };
                hh /= 2;
                ww /= 2;
            }
        }
        RefForward { relu, shapes }
    }

    /// Total loss of image x (mean-subtracted, CHW 3 x h x w) for content targets (conv index, P) and style
    /// targets (conv index, A), with weights (w_c, w_s, w_tv). Returns (content, style, tv).
    pub fn losses<C: ContentTarget, S: StyleTarget>(
        &self,
        x: &[f64],
        h: usize,
        w: usize,
        content: &[(usize, C)],
        style: &[(usize, S)],
        weights: (f64, f64, f64),
    ) -> (f64, f64, f64) {
        let deepest = content.iter().map(|(i, _)| *i).chain(style.iter().map(|(i, _)| *i)).max().unwrap_or(0);
        let fwd = self.forward(x, h, w, deepest);
        let lc: f64 = content.iter().map(|(i, p)| p.loss(&fwd.relu[*i], weights.0).0).sum();
        let ls: f64 = style
            .iter()
            .map(|(i, a)| {
                let (c, hh, ww) = fwd.shapes[*i];
                a.loss(&fwd.relu[*i], c, hh * ww, weights.1).0
            })
            .sum();
        let lt = tv_loss(x, h, w, weights.2).0;
        (lc, ls, lt)
    }

    /// Losses (content, style, tv) and dL/dx by the chain rule through the reference primitives.
    pub fn loss_and_gradient<C: ContentTarget, S: StyleTarget>(
        &self,
        x: &[f64],
        h: usize,
        w: usize,
        content: &[(usize, C)],
        style: &[(usize, S)],
        weights: (f64, f64, f64),
    ) -> ((f64, f64, f64), Vec<f64>) {
        let deepest = content.iter().map(|(i, _)| *i).chain(style.iter().map(|(i, _)| *i)).max().unwrap_or(0);
        let fwd = self.forward(x, h, w, deepest);
        let (mut lc, mut ls) = (0.0, 0.0);
        // dL/d relu_i for every layer, filled top-down.
        let mut grads: Vec<Vec<f64>> = fwd.relu.iter().map(|r| vec![0.0; r.len()]).collect();
        for (i, p) in content {
            let (l, g) = p.loss(&fwd.relu[*i], weights.0);
            lc += l;
            grads[*i].iter_mut().zip(g).for_each(|(a, b)| *a += b);
        }
        for (i, a) in style {
            let (c, hh, ww) = fwd.shapes[*i];
            let (l, g) = a.loss(&fwd.relu[*i], c, hh * ww, weights.1);
            ls += l;
            grads[*i].iter_mut().zip(g).for_each(|(a, b)| *a += b);
        }
        let mut gx = Vec::new();
        for i in (0..=deepest).rev() {
            let (c, hh, ww) = fwd.shapes[i];
            let cin = self.convs[i].1;
            let gin = conv3x3_backward_data(&grads[i], &fwd.relu[i], cin, c, hh, ww, &self.convs[i].3);
            if i == 0 {
                gx = gin;
                break;
            }
            let g_prev = if self.pool_after.contains(&(i - 1)) {
                let (pc, ph, pw) = fwd.shapes[i - 1];
                if self.avg_pool {
                    avgpool2x2_backward(&gin, pc, ph, pw)
                } else {
                    maxpool2x2_backward(&fwd.relu[i - 1], &gin, pc, ph, pw)
                }
            } else {
                gin
            };
            grads[i - 1].iter_mut().zip(g_prev).for_each(|(a, b)| *a += b);
        }
        if let Some((s, _)) = self.input_affine {
            let plane = h * w;
            gx.iter_mut().enumerate().for_each(|(k, g)| *g *= s[k / plane]);
        }
        let (lt, gt) = tv_loss(x, h, w, weights.2);
        gx.iter_mut().zip(gt).for_each(|(a, b)| *a += b);
        ((lc, ls, lt), gx)
    }
}

/// One accepted L-BFGS iterate of [`lbfgs`]: its loss and the evaluations made so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsIterate {
    pub loss: f64,
    pub evals: usize,
}

/// Where [`lbfgs`] takes its steps from.
pub enum LbfgsSteps<'a> {
    /// The strong-Wolfe line search, with at most this many evaluations in all.
    LineSearch { max_evals: usize },
    /// These steps t, one per iteration (replaying another run's line search, whose choices depend on the
    /// last bits of the losses when the cubic fit is ill-conditioned).
    Given(&'a [f64]),
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

/// torch.optim.LBFGS (docs/MATHS.md), in f64: up to `iterations` iterations from `x` (updated in place) with
/// `history` pairs. Returns the initial point and each accepted iterate.
pub fn lbfgs(
    x: &mut [f64],
    iterations: usize,
    history: usize,
    steps: LbfgsSteps<'_>,
    mut loss_and_grad: impl FnMut(&[f64]) -> (f64, Vec<f64>),
) -> Vec<LbfgsIterate> {
    use crate::optim::line_search::{strong_wolfe, LineObjective};
    let (mut f, mut g) = loss_and_grad(x);
    let mut evals = 1;
    let mut trace = vec![LbfgsIterate { loss: f, evals }];
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let (mut h, mut d, mut t_prev, mut g_prev) = (1.0, vec![0.0; x.len()], 0.0, Vec::new());

    struct Phi<'a, F: FnMut(&[f64]) -> (f64, Vec<f64>)> {
        x0: &'a [f64],
        d: &'a [f64],
        f: &'a mut F,
        grads: Vec<Vec<f64>>,
    }
    impl<F: FnMut(&[f64]) -> (f64, Vec<f64>)> LineObjective for Phi<'_, F> {
        type Error = std::convert::Infallible;
        fn evaluate(&mut self, t: f64, _live: &[usize]) -> Result<(f64, f64), Self::Error> {
            let x: Vec<f64> = self.x0.iter().zip(self.d).map(|(a, b)| a + t * b).collect();
            let (f, g) = (self.f)(&x);
            let gtd = dot(&g, self.d);
            self.grads.push(g);
            Ok((f, gtd))
        }
    }

    for k in 0..iterations {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= 1e-7 {
            break;
        }
        if k == 0 {
            d = g.iter().map(|v| -v).collect();
        } else {
            // The last step's pair, kept when yᵀs > 1e-10; then the two-loop recursion.
            let y: Vec<f64> = g.iter().zip(&g_prev).map(|(a, b)| a - b).collect();
            let s: Vec<f64> = d.iter().map(|v| t_prev * v).collect();
            let ys = dot(&y, &s);
            if ys > 1e-10 {
                if pairs.len() == history {
                    pairs.pop_front();
                }
                h = ys / dot(&y, &y);
                pairs.push_back((s, y, ys));
            }
            let mut q: Vec<f64> = g.iter().map(|v| -v).collect();
            let mut alpha = vec![0.0; pairs.len()];
            for (i, (s, y, ys)) in pairs.iter().enumerate().rev() {
                alpha[i] = dot(s, &q) / ys;
                q.iter_mut().zip(y).for_each(|(qv, yv)| *qv -= alpha[i] * yv);
            }
            d = q.iter().map(|v| h * v).collect();
            for (i, (s, y, ys)) in pairs.iter().enumerate() {
                let beta = dot(y, &d) / ys;
                d.iter_mut().zip(s).for_each(|(dv, sv)| *dv += (alpha[i] - beta) * sv);
            }
        }
        let gtd = dot(&g, &d);
        if gtd > -1e-9 {
            break;
        }
        let d_max = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let x0 = x.to_vec();
        let f_prev = f;
        let t = match steps {
            LbfgsSteps::LineSearch { .. } => {
                let t0 = if k == 0 { (1.0 / g.iter().map(|v| v.abs()).sum::<f64>()).min(1.0) } else { 1.0 };
                let mut phi = Phi { x0: &x0, d: &d, f: &mut loss_and_grad, grads: vec![g.clone()] };
                let Ok(acc) = strong_wolfe(&mut phi, f, gtd, t0, d_max);
                evals += acc.evals;
                f = acc.point.f;
                g_prev = std::mem::replace(&mut g, phi.grads.swap_remove(acc.point.id));
                acc.point.t
            }
            LbfgsSteps::Given(ts) => {
                let Some(&t) = ts.get(k) else { break };
                let xt: Vec<f64> = x0.iter().zip(&d).map(|(a, b)| a + t * b).collect();
                let (fnew, gnew) = loss_and_grad(&xt);
                evals += 1;
                f = fnew;
                g_prev = std::mem::replace(&mut g, gnew);
                t
            }
        };
        x.iter_mut().zip(&x0).zip(&d).for_each(|((xv, x0v), dv)| *xv = x0v + t * dv);
        t_prev = t;
        trace.push(LbfgsIterate { loss: f, evals });
        let capped = matches!(steps, LbfgsSteps::LineSearch { max_evals } if evals >= max_evals);
        if capped || t.abs() * d_max <= 1e-9 || (f - f_prev).abs() < 1e-9 {
            break;
        }
    }
    trace
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn features(seed: u64, c: usize, n: usize) -> Vec<f64> {
        let mut g = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // ReLU-like: non-negative, some zeros.
        (0..c * n).map(|_| g.random_range(-1.0f64..3.0).max(0.0)).collect()
    }

    /// The W2 loss is zero at its own target and its gradient matches central finite differences of the loss.
    #[test]
    fn w2_loss_is_zero_at_its_target_and_its_gradient_matches_finite_differences() {
        let (c, n) = (6, 11);
        let f = features(1, c, n);
        let (mean, srm) = moments(&f, c, n);
        let own = w2_target(&mean, &srm, c);
        let (zero, g0) = w2_loss(&f, &own, c, n, 3.0);
        assert!(zero.abs() < 1e-9, "loss at its own target: {zero}");
        assert!(g0.iter().all(|g| g.abs() < 1e-6), "gradient at its own target: {g0:?}");

        let s = features(2, c, 2 * n);
        let (mean, srm) = moments(&s, c, 2 * n);
        let target = w2_target(&mean, &srm, c);
        let tt = matmul(&target.sqrt, &target.sqrt, c);
        let worst = tt.iter().zip(&target.cov).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-9 * target.cov.iter().fold(0.0f64, |m, v| m.max(v.abs())), "T·T ≠ Σ̂_t: {worst}");
        let (loss, grad) = w2_loss(&f, &target, c, n, 3.0);
        assert!(loss > 1e-3, "loss {loss}: the check would prove nothing");
        let h = 1e-5;
        for k in 0..c * n {
            let (mut up, mut down) = (f.clone(), f.clone());
            up[k] += h;
            down[k] -= h;
            let fd = (w2_loss(&up, &target, c, n, 3.0).0 - w2_loss(&down, &target, c, n, 3.0).0) / (2.0 * h);
            assert!((fd - grad[k]).abs() <= 1e-6 + 1e-5 * fd.abs(), "dL/dF[{k}]: {} vs {fd}", grad[k]);
        }
    }
}
