// Indexing shared by the 2x2/2 FLOOR pooling kernels (CHW; an odd last row/column is dropped). This piece
// owns binding 0 (the shape, in `params`); each pooling file declares its buffers from binding 1.

struct Params {
    channels: u32,
    height: u32, // input
    width: u32,
    out_height: u32,
    out_width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// Index in the input of the top-left element of output (c, oy, ox)'s window.
fn window_base(c: u32, oy: u32, ox: u32) -> u32 {
    return c * params.height * params.width + (2u * oy) * params.width + 2u * ox;
}

// (channel, output row, output column) of output element idx.
fn output_position(idx: u32) -> vec3<u32> {
    let out_plane = params.out_height * params.out_width;
    let r = idx % out_plane;
    return vec3<u32>(idx / out_plane, r / params.out_width, r % params.out_width);
}

// (channel, window row, window column) of input element idx; the window may lie in a dropped row/column.
fn input_window(idx: u32) -> vec3<u32> {
    let plane = params.height * params.width;
    let r = idx % plane;
    return vec3<u32>(idx / plane, (r / params.width) / 2u, (r % params.width) / 2u);
}

fn window_exists(oy: u32, ox: u32) -> bool {
    return oy < params.out_height && ox < params.out_width;
}

fn output_index(c: u32, oy: u32, ox: u32) -> u32 {
    return c * params.out_height * params.out_width + oy * params.out_width + ox;
}
