//! Times the dense algebra of `obspa` on one layer: the Cholesky factor and inverse of a `D x D`
//! Hessian (`math::spd_inverse`, once per consumer) and the greedy search over `D` one-column
//! channels of a `ROWS x D` weight (`math::greedy_scores`, a Linear's input channels), or over
//! `D / K` channels of `K` columns side by side (a convolution's kernel elements), in each of `G`
//! layers with channels of their own (a grouped convolution's groups, searched jointly).
//!
//! cargo run --release -p spa-passes --example inverse_bench -- ROWS D [K [G]]
//! (e.g. `1024 4096`: ViT-L's second MLP Linear; `264 2376 9 11`: a 3x3 convolution of
//! RegNetY-128GF's third stage, 11 groups of 264 channels)

use ndarray::Array2;
use spa_passes::score::obspa::math::{self, InverseHessian, Layer};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let (rows, d, k, g) = match args[..] {
        [rows, d] => (rows, d, 1, 1),
        [rows, d, k] if k > 0 && d % k == 0 => (rows, d, k, 1),
        [rows, d, k, g] if k > 0 && d % k == 0 && g > 0 => (rows, d, k, g),
        _ => {
            eprintln!("usage: inverse_bench ROWS D [K [G]] (K divides D)");
            std::process::exit(2);
        }
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
    // Group `i` owns channels `i * c .. (i + 1) * c`; the same Hessian in each, the weights
    // scaled by `1 + i / 100` (no ties between groups).
    let c = d / k;
    let mut layers: Vec<Layer> = (0..g)
        .map(|i| Layer {
            w: w.mapv(|v| v * (1.0 + i as f64 / 100.0)),
            hinv: InverseHessian::Dense(hinv.clone()),
            blocks: (0..g * c)
                .map(|ch| match ch / c == i {
                    true => ((ch % c) * k..(ch % c) * k + k).collect(),
                    false => Vec::new(),
                })
                .collect(),
        })
        .collect();
    let t = Instant::now();
    let scores = match math::greedy_scores(&mut layers, g * c, 128) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let greedy = t.elapsed().as_secs_f64();
    let check: f64 = scores.iter().sum();
    println!(
        "d={d} rows={rows} k={k} g={g}: cholesky {chol:.3} s, inverse from factor {inv:.3} s, greedy {greedy:.3} s \
         (score sum {check:.15e})"
    );
}
