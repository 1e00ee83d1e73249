// One pass of the Gaussian (σ = 0.8 px) that smooths a reliability map (docs/MATHS.md, "Video", Reliability):
// along rows (`vertical` = 0) or columns (1), taps k = −2 … 2 with weights exp(−k²/(2σ²)) normalised over the
// taps that fall inside the image. Dense H x W planes. One invocation per pixel.

fn element_count() -> u32 {
    return params.height * params.width;
}

fn element(p: u32) {
    let w = params.width;
    let h = params.height;
    let x = i32(p % w);
    let y = i32(p / w);
    var sum = 0.0;
    var norm = 0.0;
    for (var k = -2; k <= 2; k++) {
        var qx = x;
        var qy = y;
        if (params.vertical != 0u) {
            qy = y + k;
        } else {
            qx = x + k;
        }
        if (qx >= 0 && qy >= 0 && qx < i32(w) && qy < i32(h)) {
            let weight = exp(-f32(k * k) / (2.0 * 0.8 * 0.8));
            sum += weight * src[u32(qy) * w + u32(qx)];
            norm += weight;
        }
    }
    dst[p] = sum / norm;
}
