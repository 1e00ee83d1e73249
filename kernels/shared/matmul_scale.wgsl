// The product's scale shared by matmul.wgsl and matmul_cpu.wgsl (their uniform: src/kernels/w2.rs, MatmulParams):
//   out = alpha · A·B + beta · I,    alpha = scale · slots[alpha_slot]^alpha_power (scale alone when NONE)
// The kernel file binds a (1), b (2) and out (3) in its own element type; binding 4 is the scalars array.

const NONE: u32 = 0xffffffffu;

@group(0) @binding(4) var<storage, read> slots: array<f32>;

fn product_scale() -> f32 {
    if (params.alpha_slot != NONE) {
        return params.scale * pow(slots[params.alpha_slot], params.alpha_power);
    }
    return params.scale;
}
