// y = keep·y + c·x, one thread per element, where the coefficient c is formed from scalars that earlier kernels
// left in `slots` (so L-BFGS's two-loop recursion runs without reading anything back):
//   c = scale · (slots[num_add] − slots[num_sub]) / slots[den]
// with an index of NONE standing for 1 (num_add, den) or 0 (num_sub). keep is 0 or 1; with keep = 0, y is not
// read (it may hold anything, NaN included).

const NONE: u32 = 0xffffffffu;

fn element_count() -> u32 {
    return params.count;
}

fn coefficient() -> f32 {
    var num = 1.0;
    if (params.num_add != NONE) {
        num = slots[params.num_add];
    }
    if (params.num_sub != NONE) {
        num -= slots[params.num_sub];
    }
    var den = 1.0;
    if (params.den != NONE) {
        den = slots[params.den];
    }
    return params.scale * (num / den);
}

fn element(idx: u32) {
    let cx = coefficient() * x[idx];
    if (params.keep == 1u) {
        y[idx] = y[idx] + cx;
    } else {
        y[idx] = cx;
    }
}
