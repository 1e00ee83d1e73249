// Exponential moving average of the image, bias-corrected (docs/MATHS.md, "Image averaging"), one thread per
// element:
//   b = decay·b + (1 − decay)·x        (b = (1 − decay)·x when restarting: b is then not read)
//   a = b · correction                 correction = 1 / (1 − decay^(t+1)), from the host in f64 (a = x when
//                                      restarting)
// The optimiser never reads b or a; the run writes a.

fn element_count() -> u32 {
    return params.count;
}

fn element(idx: u32) {
    let xi = x[idx];
    var b = (1.0 - params.decay) * xi;
    if (params.restart == 0u) {
        b = b + params.decay * biased[idx];
    }
    biased[idx] = b;
    // a₀ = x₀ exactly (b₀ · correction is x₀ only up to rounding), so a run of no updates writes its input.
    average[idx] = select(b * params.correction, xi, params.restart != 0u);
}
