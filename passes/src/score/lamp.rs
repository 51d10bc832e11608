//! `lamp`: layer-adaptive magnitude pruning (Lee et al. 2021), lifted to channels. Within each
//! member tensor, a channel's squared magnitude `s_c` (sum of its squared weights) is divided by
//! the sum of the squared magnitudes of the member's channels at least as large:
//! `score_c = s_c / sum_{j: s_j >= s_c} s_j`. The largest channel of every member scores 1, so
//! scores are comparable across layers without normalization (rank globally with `reduce=mean`
//! to keep them in [0, 1]). Scores are then reduced across the group's members.

use super::Criterion;

pub struct Lamp;

/// LAMP scores of one member's channel magnitudes (squared); ties share their denominator.
pub fn lamp_scores(sums: &mut [f64]) {
    let mut order: Vec<usize> = (0..sums.len()).collect();
    order.sort_by(|&a, &b| sums[a].total_cmp(&sums[b]));
    let mut out = vec![0.0; sums.len()];
    // Walk from the largest down, keeping the sum of everything at least as large.
    let mut suffix = 0.0;
    let mut k = order.len();
    while k > 0 {
        // The tie run order[lo..k] shares one value.
        let v = sums[order[k - 1]];
        let mut lo = k - 1;
        while lo > 0 && sums[order[lo - 1]] == v {
            lo -= 1;
        }
        suffix += order[lo..k].iter().map(|&c| sums[c]).sum::<f64>();
        for &c in &order[lo..k] {
            out[c] = if suffix > 0.0 { sums[c] / suffix } else { 0.0 };
        }
        k = lo;
    }
    sums.copy_from_slice(&out);
}

impl Criterion for Lamp {
    fn name(&self) -> &'static str {
        "lamp"
    }

    fn element(&self, w: f32) -> f64 {
        let w = w as f64;
        w * w
    }

    fn finish_member(&self, sums: &mut [f64]) {
        lamp_scores(sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lamp_by_hand() {
        // Squared magnitudes 1, 4, 9, 16 (sum 30): 1/30, 4/29, 9/25, 16/16.
        let mut s = [4.0, 16.0, 1.0, 9.0];
        lamp_scores(&mut s);
        let want = [4.0 / 29.0, 1.0, 1.0 / 30.0, 9.0 / 25.0];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{s:?}");
        }
    }

    #[test]
    fn lamp_ties_share_the_denominator() {
        // 2, 2, 5: both 2s see 2 + 2 + 5 = 9; the 5 sees itself.
        let mut s = [2.0, 5.0, 2.0];
        lamp_scores(&mut s);
        assert_eq!(s, [2.0 / 9.0, 1.0, 2.0 / 9.0]);
        // All zero: no division by zero.
        let mut z = [0.0, 0.0];
        lamp_scores(&mut z);
        assert_eq!(z, [0.0, 0.0]);
    }
}
