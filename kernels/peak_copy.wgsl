// Bandwidth probe: dst = src, one vec4 (16 bytes) per thread, fully coalesced. Bytes moved = 32 per vec4
// (read + write). Buffers should be far larger than the last-level cache (the host uses 256 MiB where the
// adapter's binding limit allows).

fn element_count() -> u32 {
    return params.count;
}

fn element(idx: u32) {
    dst[idx] = src[idx];
}
