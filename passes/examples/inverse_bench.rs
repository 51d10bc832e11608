//! Times the dense algebra of `obspa` on one layer: the Cholesky factor and inverse of a `D x D`
//! Hessian (`math::spd_inverse`, once per consumer) and the greedy search over `D` one-column
//! channels of a `ROWS x D` weight (`math::greedy_scores`, a Linear's input channels).
//!
//! cargo run --release -p spa-passes --example inverse_bench -- ROWS D
//! (e.g. `1024 4096`: ViT-L's second MLP Linear)

use ndarray::Array2;
use spa_passes::score::obspa::math::{self, InverseHessian, Layer};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [rows, d] = args[..] else {
        eprintln!("usage: inverse_bench ROWS D");
        std::process::exit(2);
    };
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    // H = X^T X / n + 0.01 I from 2 d random rows: well conditioned, like a damped Hessian.
    let n = 2 * d;
    let x = Array2::from_shape_fn((n, d), |_| rnd());
    let mut h = x.t().dot(&x) / n as f64;
    h.diag_mut().iter_mut().for_each(|v| *v += 0.01);
    let w = Array2::from_shape_fn((rows, d), |_| rnd());
    let t = Instant::now();
    let l = match math::cholesky(&h) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let chol = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let hinv = math::inverse_lower_from_factor(l);
    let inv = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut layers = vec![Layer {
        w,
        hinv: InverseHessian::Dense(hinv),
        blocks: (0..d).map(|c| vec![c]).collect(),
    }];
    let scores = match math::greedy_scores(&mut layers, d, 128) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let greedy = t.elapsed().as_secs_f64();
    let check: f64 = scores.iter().sum();
    println!(
        "d={d} rows={rows}: cholesky {chol:.3} s, inverse from factor {inv:.3} s, greedy {greedy:.3} s \
         (score sum {check:.15e})"
    );
}
