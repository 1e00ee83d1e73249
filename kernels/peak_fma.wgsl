// Peak-throughput probe: a long register-resident chain of fused multiply-adds per thread. Nothing is read or
// written inside the loop, so the time is the FMA pipes' alone. Eight independent vec4 chains (32 scalars) per
// thread hide the FMA latency; each loop trip runs 4 rounds over them = 128 FMAs = 256 FLOPs per thread.
//   acc[c][l] starts at seeds[idx] + 0.125 * (4c + l);  every round acc = fma(acc, mul, add);
//   out[idx] = sum over chains c = 0..7 (in order) of the vec4s, then lanes x + y + z + w.
// mul and add come from the uniform so nothing folds; with |mul| < 1 the chain contracts to add / (1 - mul),
// so the values stay finite (and never denormal) for any iteration count.

fn element_count() -> u32 {
    return params.count;
}

fn element(idx: u32) {
    let s = vec4<f32>(seeds[idx]);
    let lanes = vec4<f32>(0.0, 0.125, 0.25, 0.375);
    var a0 = s + lanes;
    var a1 = s + lanes + 0.5;
    var a2 = s + lanes + 1.0;
    var a3 = s + lanes + 1.5;
    var a4 = s + lanes + 2.0;
    var a5 = s + lanes + 2.5;
    var a6 = s + lanes + 3.0;
    var a7 = s + lanes + 3.5;
    let m = vec4<f32>(params.mul);
    let c = vec4<f32>(params.add);
    for (var i = 0u; i < params.iters; i++) {
        for (var r = 0u; r < 4u; r++) {
            a0 = fma(a0, m, c);
            a1 = fma(a1, m, c);
            a2 = fma(a2, m, c);
            a3 = fma(a3, m, c);
            a4 = fma(a4, m, c);
            a5 = fma(a5, m, c);
            a6 = fma(a6, m, c);
            a7 = fma(a7, m, c);
        }
    }
    let t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    out[idx] = t.x + t.y + t.z + t.w;
}
