//! `random`: uniform scores from a seeded generator (a baseline), independent of the weights.

use super::Criterion;

pub struct Random {
    pub seed: u64,
}

/// splitmix64: tiny, deterministic across platforms.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Criterion for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn element(&self, _w: f32) -> f64 {
        0.0
    }

    fn group_scores(&self, space: usize, channels: usize) -> Option<Vec<f64>> {
        let mut state = self.seed ^ (space as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
        Some(
            (0..channels)
                .map(|_| (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64)
                .collect(),
        )
    }
}
