// Copies a rectangle of every channel from one framed CHW tensor to another of a different frame (src/frame.rs):
// dst[c, dst_y + i, dst_x + j] = src[c, src_y + i, src_x + j] for i < height, j < width. Tiled evaluation
// (docs/MATHS.md, "Tiled evaluation") cuts a block's outer rectangle out of the canvas x with it, and pastes the
// block's dL/dx back on the pixels the block owns. Only data pixels are written: the destination's frame stays
// zero. One invocation per copied element.

fn element_count() -> u32 {
    return params.channels * params.height * params.width;
}

fn element(idx: u32) {
    let pixels = params.height * params.width;
    let c = idx / pixels;
    let r = idx % pixels;
    let i = r / params.width;
    let j = r % params.width;
    let read_at = HEAD + c * params.src_plane + (params.src_y + i + 1u) * params.src_stride + params.src_x + j;
    let write_at = HEAD + c * params.dst_plane + (params.dst_y + i + 1u) * params.dst_stride + params.dst_x + j;
    dst[write_at] = src[read_at];
}
