//! `l1`: sum of absolute values of each channel's weights.

use super::{Criterion, MemberView};

pub struct L1;

impl Criterion for L1 {
    fn name(&self) -> &'static str {
        "l1"
    }

    fn member_scores(&self, m: &MemberView<'_>) -> Vec<f64> {
        m.per_channel(|acc, w| acc + (w as f64).abs())
    }
}
