//! Coarse-to-fine scales (docs/MATHS.md, "Coarse-to-fine"): the image sizes a run goes through and the
//! iterations it spends at each. Pure functions of plain numbers, unit-tested without a GPU.

/// Longest sides of the scales, ascending: `target`, target/√2, target/2, … (rounded) while at least `min`.
/// Always ends at `target`; a single scale when `target` ≤ `min`.
pub fn scale_sizes(target: usize, min: usize) -> Vec<usize> {
    let mut sizes = vec![target];
    for k in 1.. {
        let s = (target as f64 / std::f64::consts::SQRT_2.powi(k)).round() as usize;
        if s < min.max(1) || s == 0 {
            break;
        }
        sizes.push(s);
    }
    sizes.reverse();
    sizes
}

/// Iterations at each of `scales` scales out of `total`: the first (coarsest) gets two shares, where it paints
/// the composition from the initial image; the others one each. Sums to `total`.
pub fn iterations_per_scale(total: usize, scales: usize) -> Vec<usize> {
    assert!(scales > 0, "at least one scale");
    let share = total / (scales + 1);
    let mut v = vec![share; scales];
    v[0] = total - share * (scales - 1);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_halve_every_two_steps_down_to_the_minimum() {
        assert_eq!(scale_sizes(512, 128), vec![128, 181, 256, 362, 512]);
        assert_eq!(scale_sizes(256, 128), vec![128, 181, 256]);
        assert_eq!(scale_sizes(1024, 128), vec![128, 181, 256, 362, 512, 724, 1024]);
        assert_eq!(scale_sizes(300, 128), vec![150, 212, 300]);
        assert_eq!(scale_sizes(128, 128), vec![128]);
        assert_eq!(scale_sizes(100, 128), vec![100]);
        assert_eq!(scale_sizes(512, 400), vec![512]);
        assert_eq!(scale_sizes(512, 362), vec![362, 512]);
        for t in [16usize, 17, 200, 513, 4096] {
            let s = scale_sizes(t, 16);
            assert_eq!(*s.last().unwrap(), t);
            assert!(s.windows(2).all(|w| w[0] < w[1]) && s[0] >= 16, "{t}: {s:?}");
        }
    }

    #[test]
    fn iterations_give_the_first_scale_two_shares_and_sum_to_the_total() {
        assert_eq!(iterations_per_scale(1000, 5), vec![336, 166, 166, 166, 166]);
        assert_eq!(iterations_per_scale(300, 3), vec![150, 75, 75]);
        assert_eq!(iterations_per_scale(7, 1), vec![7]);
        assert_eq!(iterations_per_scale(2, 3), vec![2, 0, 0]);
        for (t, n) in [(0, 3), (1, 1), (99, 4), (1001, 7)] {
            assert_eq!(iterations_per_scale(t, n).iter().sum::<usize>(), t);
        }
    }
}
