// DIS inverse search: the flow of one 8 x 8 patch of I0 into I1 at one pyramid level, by Gauss–Newton on
// mean-normalised patches from the initial flow u₀ (the dense initial flow of the level sampled bilinearly at the
// patch centre), 12 iterations at most with an early stop at |Δ| < 0.01 px; a patch whose Hessian is singular or
// whose final residual is not below its initial one keeps u₀ (docs/MATHS.md, "Video: optical flow, warping, the
// temporal loss", **Flow**). I0's gradient is taken here (central differences, indices clamped) rather than by a
// kernel of its own: each patch reads its own 10 x 10 neighbourhood once. One invocation per patch; patches are
// numbered row by row of the patch grid and each writes its (u, v).

const GROUP_SIZE: u32 = 64u;
const PIXELS: u32 = 64u; // 8 x 8
const ITERATIONS: u32 = 12u;

// The invocation's template and gradient, mean-normalised, and its warped patch: private arrays rather than
// function arguments (WGSL passes arrays by value).
var<private> template_n: array<f32, 64>;
var<private> grad_x: array<f32, 64>;
var<private> grad_y: array<f32, 64>;
var<private> warped: array<f32, 64>;

fn grey0(x: i32, y: i32) -> f32 {
    let cx = u32(clamp(x, 0, i32(params.width) - 1));
    let cy = u32(clamp(y, 0, i32(params.height) - 1));
    return i0[cy * params.width + cx];
}

fn sample_i1(x: f32, y: f32) -> f32 {
    let b = bilinear_at(x, y, params.width, params.height);
    return bilinear_mix(b, i1[b.i00], i1[b.i10], i1[b.i01], i1[b.i11]);
}

// Fills the private arrays with T̃ and J̃ of the patch at (x0, y0); returns H = Σ J̃·J̃ᵀ as (Hxx, Hxy, Hyy).
fn load_template(x0: u32, y0: u32) -> vec3<f32> {
    var mean = vec3<f32>(0.0);
    for (var i = 0u; i < PIXELS; i++) {
        let x = i32(x0 + i % 8u);
        let y = i32(y0 + i / 8u);
        template_n[i] = grey0(x, y);
        grad_x[i] = (grey0(x + 1, y) - grey0(x - 1, y)) * 0.5;
        grad_y[i] = (grey0(x, y + 1) - grey0(x, y - 1)) * 0.5;
        mean += vec3<f32>(template_n[i], grad_x[i], grad_y[i]);
    }
    mean /= f32(PIXELS);
    var h = vec3<f32>(0.0);
    for (var i = 0u; i < PIXELS; i++) {
        template_n[i] -= mean.x;
        grad_x[i] -= mean.y;
        grad_y[i] -= mean.z;
        h += vec3<f32>(grad_x[i] * grad_x[i], grad_x[i] * grad_y[i], grad_y[i] * grad_y[i]);
    }
    return h;
}

// At flow u: (Σ J̃_i·r_i, Σ r_i²) with r_i = (I1(p_i + u) − mean) − T̃_i, as (bx, by, ssd).
fn residual(x0: u32, y0: u32, u: vec2<f32>) -> vec3<f32> {
    var mean = 0.0;
    for (var i = 0u; i < PIXELS; i++) {
        warped[i] = sample_i1(f32(x0 + i % 8u) + u.x, f32(y0 + i / 8u) + u.y);
        mean += warped[i];
    }
    mean /= f32(PIXELS);
    var acc = vec3<f32>(0.0);
    for (var i = 0u; i < PIXELS; i++) {
        let r = (warped[i] - mean) - template_n[i];
        acc += vec3<f32>(grad_x[i] * r, grad_y[i] * r, r * r);
    }
    return acc;
}

fn initial_flow(x0: u32, y0: u32) -> vec2<f32> {
    let b = bilinear_at(f32(x0) + 3.5, f32(y0) + 3.5, params.width, params.height);
    let v = params.width * params.height;
    return vec2<f32>(
        bilinear_mix(b, init[b.i00], init[b.i10], init[b.i01], init[b.i11]),
        bilinear_mix(b, init[v + b.i00], init[v + b.i10], init[v + b.i01], init[v + b.i11]),
    );
}

fn search(x0: u32, y0: u32) -> vec2<f32> {
    let h = load_template(x0, y0);
    let u0 = initial_flow(x0, y0);
    let det = h.x * h.z - h.y * h.y;
    let trace = h.x + h.z;
    // Flat, or an edge in one direction only: the search is not posed.
    if (det <= 1e-3 * trace * trace + 1e-9) {
        return u0;
    }
    var u = u0;
    var initial_ssd = 0.0;
    for (var it = 0u; it < ITERATIONS; it++) {
        let r = residual(x0, y0, u);
        if (it == 0u) {
            initial_ssd = r.z;
        }
        // Δ = H⁻¹·b; the inverse-compositional update of a translation is u − Δ.
        let delta = vec2<f32>(h.z * r.x - h.y * r.y, h.x * r.y - h.y * r.x) / det;
        u -= delta;
        if (length(delta) < 0.01) {
            break;
        }
    }
    // OpenCV's rule: a search that did not lower the residual keeps u₀.
    if (!(residual(x0, y0, u).z < initial_ssd)) {
        return u0;
    }
    return u;
}

fn workgroup_main(group: u32, li: u32, z: u32) {
    let k = group * GROUP_SIZE + li;
    if (k >= params.patches_x * params.patches_y) {
        return;
    }
    let u = search(patch_pos(k % params.patches_x, params.width), patch_pos(k / params.patches_x, params.height));
    patches[2u * k] = u.x;
    patches[2u * k + 1u] = u.y;
}
