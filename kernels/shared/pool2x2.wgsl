// Indexing shared by the 2x2/2 FLOOR pooling kernels (CHW; an odd last row/column is dropped), from the shape
// in `params` (src/kernels/pool.rs, PoolParams); each pooling file declares its buffers from binding 1.

// Both tensors are framed CHW; the kernels run one invocation per data element (dense numbering) and index
// the frames with these helpers, so the frames' zeros are never written.

// Index in the input of the top-left element of output (c, oy, ox)'s window.
fn window_base(c: u32, oy: u32, ox: u32) -> u32 {
    return input_index(c, 2u * oy, 2u * ox);
}

fn input_index(c: u32, y: u32, x: u32) -> u32 {
    return HEAD + c * params.plane + (y + 1u) * params.stride + x;
}

fn output_index(c: u32, oy: u32, ox: u32) -> u32 {
    return HEAD + c * params.out_plane + (oy + 1u) * params.out_stride + ox;
}

// (channel, output row, output column) of output element idx (dense numbering).
fn output_position(idx: u32) -> vec3<u32> {
    let out_plane = params.out_height * params.out_width;
    let r = idx % out_plane;
    return vec3<u32>(idx / out_plane, r / params.out_width, r % params.out_width);
}

// (channel, row, column) of input element idx (dense numbering).
fn input_position(idx: u32) -> vec3<u32> {
    let plane = params.height * params.width;
    let r = idx % plane;
    return vec3<u32>(idx / plane, r / params.width, r % params.width);
}

fn window_exists(oy: u32, ox: u32) -> bool {
    return oy < params.out_height && ox < params.out_width;
}
