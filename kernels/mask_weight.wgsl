// Weights every channel of a framed CHW tensor (src/frame.rs) by a one-channel mask of the same frame:
// dst[c, y, x] = (accumulate ? dst[c, y, x] : 0) + mask[y, x] · src[c, y, x]. Spatial control (docs/MATHS.md,
// "Spatial control") runs it on the features before a masked Gram or mean (mask = (w·HW/S)^½ or w·HW/S), and on a
// term's unmasked gradient before it is added to dL/dF (mask = w).
//
// It also writes zeros over the destination's whole frame: the masked terms share one scratch buffer between
// layers of different frames, so what one layer left in its data pixels lies in another's frame, which the Gram
// and sum kernels read as zeros. One invocation per float of the destination's framed buffer.

fn element_count() -> u32 {
    return HEAD + params.channels * params.plane + TAIL;
}

fn element(idx: u32) {
    if (idx < HEAD || idx >= HEAD + params.channels * params.plane) {
        dst[idx] = 0.0;
        return;
    }
    let r = (idx - HEAD) % params.plane;
    let row = r / params.stride;
    let x = r % params.stride;
    if (row == 0u || row > params.height || x >= params.width) {
        dst[idx] = 0.0;
        return;
    }
    var before = 0.0;
    if (params.accumulate != 0u) {
        before = dst[idx];
    }
    dst[idx] = before + mask[HEAD + r] * src[idx];
}
