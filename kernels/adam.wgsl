// Fused Adam step (torch.optim.Adam semantics), one thread per element:
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  x -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
// with step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t), computed on the host in f64 for each t.

fn element_count() -> u32 {
    return params.count;
}

fn element(idx: u32) {
    let g = grad[idx];
    let m_new = params.beta1 * m[idx] + (1.0 - params.beta1) * g;
    let v_new = params.beta2 * v[idx] + (1.0 - params.beta2) * (g * g);
    m[idx] = m_new;
    v[idx] = v_new;
    let denom = sqrt(v_new) / params.bc2_sqrt + params.eps;
    x[idx] = x[idx] - params.step_size * (m_new / denom);
}
