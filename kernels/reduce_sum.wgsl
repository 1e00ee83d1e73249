// Final reduction of per-workgroup partial sums into one loss slot: losses[slot] = scale * sum(partials).
// One workgroup; each thread adds a strided subset in order, then a fixed tree: deterministic.

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = li; i < params.count; i += 256u) {
        s += partials[i];
    }
    let total = workgroup_sum(li, s);
    if (li == 0u) {
        losses[params.slot] = params.scale * total;
    }
}
