// Zeroes the frame of a framed CHW tensor (src/frame.rs) — the zero columns right of each data row, the border
// rows and the padding rows — and nothing else. The plan runs it right before a tensor is first written when
// the tensor's buffer also holds tensors of another frame (which leave their data where this frame has zeros);
// every other buffer keeps its frame zero from allocation. One invocation per frame element.

fn element_count() -> u32 {
    return params.channels * params.per_channel;
}

fn element(idx: u32) {
    let c = idx / params.per_channel;
    let f = idx % params.per_channel;
    let s = params.stride;
    let pad = s - params.width;
    var row: u32;
    var col: u32;
    if (f < params.height * pad) {
        // The zero columns of data row f / pad (frame row + 1).
        row = 1u + f / pad;
        col = params.width + f % pad;
    } else {
        // Whole rows: the top border, then the rows below the data.
        let g = f - params.height * pad;
        let r = g / s;
        row = select(params.height + r, 0u, r == 0u);
        col = g % s;
    }
    tensor[HEAD + c * params.rows * s + row * s + col] = 0.0;
}
