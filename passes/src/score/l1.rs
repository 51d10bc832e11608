//! `l1`: sum of absolute values of each channel's weights.

use super::Criterion;

pub struct L1;

impl Criterion for L1 {
    fn name(&self) -> &'static str {
        "l1"
    }

    fn element(&self, w: f32) -> f64 {
        (w as f64).abs()
    }
}
