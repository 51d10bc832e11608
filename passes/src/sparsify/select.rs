//! Which weights to zero: the smallest magnitudes, per layer or under one global threshold, for a
//! sparsity or for a FLOPs target. Magnitudes are compared as the bit patterns of `|w|` (`u32`
//! keys, ordered like the floats; NaN sorts above infinity, so it is never zeroed first), which
//! makes every threshold exact and every search a bisection over integers.

use rayon::prelude::*;

/// The magnitude key of a weight.
pub fn key(w: f32) -> u32 {
    w.abs().to_bits()
}

/// What to zero in one weight: every key below `below`, and the first `ties` keys equal to it
/// (in element order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub below: u32,
    pub ties: u64,
}

impl Cut {
    pub const NONE: Cut = Cut { below: 0, ties: 0 };

    /// Zero every key at or below `t`.
    pub fn at_or_below(t: u32) -> Cut {
        Cut {
            below: t,
            ties: u64::MAX,
        }
    }

    /// The zero mask of `keys` (true: zero it).
    pub fn apply(&self, keys: &[u32]) -> Vec<bool> {
        let mut ties = self.ties;
        keys.iter()
            .map(|&k| {
                if k < self.below {
                    true
                } else if k == self.below && ties > 0 {
                    ties -= 1;
                    true
                } else {
                    false
                }
            })
            .collect()
    }

    /// How many elements of `keys` this cut zeroes.
    pub fn count(&self, keys: &[u32]) -> u64 {
        let (lt, eq) = count_lt_eq(keys, self.below);
        lt + eq.min(self.ties)
    }
}

fn count_lt_eq(keys: &[u32], t: u32) -> (u64, u64) {
    keys.iter().fold((0, 0), |(lt, eq), &k| {
        (lt + (k < t) as u64, eq + (k == t) as u64)
    })
}

fn count_at_or_below(keys: &[&[u32]], t: u32) -> u64 {
    keys.par_iter()
        .map(|k| k.iter().filter(|&&x| x <= t).count() as u64)
        .sum()
}

/// The smallest key `t` such that at least `k` keys (over all sets) are `<= t` (`k >= 1`, and at
/// most the number of keys).
fn kth_key(keys: &[&[u32]], k: u64) -> u32 {
    let (mut lo, mut hi) = (0u32, u32::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_at_or_below(keys, mid) >= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Cuts zeroing exactly `k` of the smallest keys over all sets together (ties in set order, then
/// element order).
pub fn smallest(keys: &[&[u32]], k: u64) -> Vec<Cut> {
    let total: u64 = keys.iter().map(|x| x.len() as u64).sum();
    let k = k.min(total);
    if k == 0 {
        return vec![Cut::NONE; keys.len()];
    }
    let t = kth_key(keys, k);
    let counts: Vec<(u64, u64)> = keys.par_iter().map(|x| count_lt_eq(x, t)).collect();
    let mut quota = k - counts.iter().map(|c| c.0).sum::<u64>();
    counts
        .iter()
        .map(|&(_, eq)| {
            let ties = eq.min(quota);
            quota -= ties;
            Cut { below: t, ties }
        })
        .collect()
}

/// Elements to zero in a set of `n` for sparsity `s`.
pub fn count_for(s: f64, n: usize) -> u64 {
    ((s * n as f64).round().max(0.0) as u64).min(n as u64)
}

/// One global threshold for a FLOPs target: `flops(t) = rest + sum_w per_weight[w] * #(keys of w
/// above t)` keeps at least `goal` for the largest `t` found by bisection; the next distinct key
/// above it is taken instead when that lands closer to the goal.
pub fn global_threshold(keys: &[&[u32]], per_weight: &[f64], rest: f64, goal: f64) -> u32 {
    let kept = |t: u32| -> f64 {
        rest + keys
            .par_iter()
            .zip(per_weight)
            .map(|(k, &f)| f * k.iter().filter(|&&x| x > t).count() as f64)
            .sum::<f64>()
    };
    // Zeroing the exact zeros (t = 0) changes no value; that is where sparse counting starts.
    if kept(0) < goal {
        return 0;
    }
    let (mut lo, mut hi) = (0u32, u32::MAX);
    // Invariant: kept(lo) >= goal.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if kept(mid) >= goal {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    // The state at `lo` is defined by the largest key at or below it.
    let lo = keys
        .par_iter()
        .filter_map(|k| k.iter().copied().filter(|&x| x <= lo).max())
        .max()
        .unwrap_or(0);
    let next = keys
        .par_iter()
        .filter_map(|k| k.iter().copied().filter(|&x| x > lo).min())
        .min();
    match next {
        Some(n) if (goal - kept(n)).abs() < (kept(lo) - goal).abs() => n,
        _ => lo,
    }
}

/// One sparsity for every layer for a FLOPs target: bisection on `s` in [0, 1] for the largest
/// `s` keeping at least `goal`, or the next step when closer. `zeros[w]`: exact zeros already in
/// weight `w` (they stay zero whatever `s`).
pub fn uniform_sparsity(
    sizes: &[usize],
    zeros: &[u64],
    per_weight: &[f64],
    rest: f64,
    goal: f64,
) -> f64 {
    let kept = |s: f64| -> f64 {
        rest + sizes
            .iter()
            .zip(zeros)
            .zip(per_weight)
            .map(|((&n, &z), &f)| f * (n as u64 - count_for(s, n).max(z).min(n as u64)) as f64)
            .sum::<f64>()
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    if kept(hi) >= goal {
        return hi;
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if kept(mid) >= goal {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if (goal - kept(hi)).abs() < (kept(lo) - goal).abs() {
        hi
    } else {
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(w: &[f32]) -> Vec<u32> {
        w.iter().map(|&x| key(x)).collect()
    }

    #[test]
    fn smallest_zeroes_exactly_k_with_ties_in_order() {
        let a = keys(&[0.5, -0.1, 0.3, 0.1]);
        let b = keys(&[0.1, 2.0]);
        // The three smallest magnitudes: 0.1 (a[1]), 0.1 (a[3]), 0.1 (b[0]) are tied; k = 2 takes
        // the first two in order.
        let cuts = smallest(&[&a, &b], 2);
        assert_eq!(cuts[0].apply(&a), vec![false, true, false, true]);
        assert_eq!(cuts[1].apply(&b), vec![false, false]);
        let cuts = smallest(&[&a, &b], 4);
        assert_eq!(cuts[0].apply(&a), vec![false, true, true, true]);
        assert_eq!(cuts[1].apply(&b), vec![true, false]);
        assert_eq!(cuts[0].count(&a) + cuts[1].count(&b), 4);
        // k larger than everything zeroes everything; k = 0 nothing.
        let cuts = smallest(&[&a, &b], 99);
        assert_eq!(cuts[0].count(&a) + cuts[1].count(&b), 6);
        assert_eq!(smallest(&[&a], 0)[0].count(&a), 0);
    }

    #[test]
    fn nan_is_never_zeroed_before_numbers() {
        let a = keys(&[f32::NAN, 1.0, f32::INFINITY]);
        let cuts = smallest(&[&a], 2);
        assert_eq!(cuts[0].apply(&a), vec![false, true, true]);
    }

    #[test]
    fn global_threshold_hits_a_flops_goal() {
        // Weight a costs 1 FLOP per element, b 10; rest 0. Dense = 4 + 20 = 24.
        let a = keys(&[0.1, 0.2, 0.3, 0.4]);
        let b = keys(&[0.15, 0.5]);
        let per = [1.0, 10.0];
        // Zeroing everything at or below 0.15 (a[0], b[0]) keeps 3 + 10 = 13.
        let t = global_threshold(&[&a, &b], &per, 0.0, 13.0);
        assert_eq!(t, key(0.15));
        // For 12.4, the next step (also zeroing a[1], keeping 12) is closer than 13.
        let t = global_threshold(&[&a, &b], &per, 0.0, 12.4);
        assert_eq!(t, key(0.2));
        // Goal above the dense count: nothing but exact zeros.
        assert_eq!(global_threshold(&[&a], &[1.0], 0.0, 9.0), 0);
    }

    #[test]
    fn uniform_sparsity_solves_the_linear_case() {
        // Two layers of 100 weights, 1 FLOP each, rest 50: keep 125 of 250 -> s = 0.625.
        let s = uniform_sparsity(&[100, 100], &[0, 0], &[1.0, 1.0], 50.0, 125.0);
        assert!((s - 0.625).abs() < 0.006, "{s}");
        assert_eq!(count_for(0.9, 10), 9);
        assert_eq!(count_for(1.0, 3), 3);
    }
}
