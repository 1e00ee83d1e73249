// One layer's Wasserstein-2 style loss into its loss slot (docs/MATHS.md, "Style loss: Wasserstein-2"):
//   L = w / C · [ Σ_c (mean[c] − target_mean[c])² + tr Σ̂ + tr Σ̂_t − 2 · tr √M ]
// with tr √M = ‖M‖_F^½ · tr Y (Y the Newton–Schulz iterate for M / ‖M‖_F; slots[norm_slot] = ‖M‖_F²) and
// tr Σ̂_t from the host. One workgroup, a strided sum in order and a fixed tree: bit-identical reruns.

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_index) li: u32) {
    let c = params.channels;
    let root_norm = sqrt(sqrt(slots[params.norm_slot]));
    var s = 0.0;
    for (var i = li; i < c; i += 256u) {
        let d = mean[i] - target_mean[i];
        s += d * d + cov[i * c + i] - 2.0 * root_norm * y[i * c + i];
    }
    let total = workgroup_sum(li, s);
    if (li == 0u) {
        losses[params.loss_slot] = params.weight_over_c * (total + params.target_trace);
    }
}
