//! `l2`: Euclidean norm of each channel's weights within one member tensor.

use super::{Criterion, MemberView};

pub struct L2;

impl Criterion for L2 {
    fn name(&self) -> &'static str {
        "l2"
    }

    fn member_scores(&self, m: &MemberView<'_>) -> Vec<f64> {
        let mut s = m.per_channel(|acc, w| acc + (w as f64) * (w as f64));
        s.iter_mut().for_each(|x| *x = x.sqrt());
        s
    }
}
