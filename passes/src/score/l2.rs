//! `l2`: Euclidean norm of each channel's weights within one member tensor.

use super::Criterion;

pub struct L2;

impl Criterion for L2 {
    fn name(&self) -> &'static str {
        "l2"
    }

    fn element(&self, w: f32) -> f64 {
        let w = w as f64;
        w * w
    }

    fn finish(&self, sum: f64) -> f64 {
        sum.sqrt()
    }
}
