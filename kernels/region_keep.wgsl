// Zeroes every data pixel of a framed CHW tensor (src/frame.rs) outside the rectangle x0 <= x < x1,
// y0 <= y < y1, leaving the rectangle and the frame as they are. Tiled evaluation (docs/MATHS.md, "Tiled
// evaluation") runs it on a block's features before their Gram and means, so the block adds only the positions it
// owns (each position of the canvas is counted by exactly one block), and on the content features and targets
// before the content loss's sum. One invocation per data pixel.

fn element_count() -> u32 {
    return params.channels * params.height * params.width;
}

fn element(idx: u32) {
    let pixels = params.height * params.width;
    let c = idx / pixels;
    let r = idx % pixels;
    let y = r / params.width;
    let x = r % params.width;
    if (x < params.x0 || x >= params.x1 || y < params.y0 || y >= params.y1) {
        tensor[HEAD + c * params.plane + (y + 1u) * params.stride + x] = 0.0;
    }
}
