//! Times `obspa::math::saliency`, the inner step of the greedy OBS search (one call per channel
//! and consumer at every step), on a layer of `ROWS` outputs whose `CHANNELS` channels own `K`
//! input columns each (a Linear after a flatten: `K` = spatial positions; a 3x3 conv: `K` = 9).
//!
//! cargo run --release -p spa-passes --example saliency_bench -- ROWS CHANNELS K
//! (e.g. `4096 256 36`: AlexNet's first classifier Linear)

use ndarray::Array2;
use spa_passes::score::obspa::math;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let [rows, channels, k] = args[..] else {
        eprintln!("usage: saliency_bench ROWS CHANNELS K");
        std::process::exit(2);
    };
    let d = channels * k;
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let w = Array2::from_shape_fn((rows, d), |_| rnd());
    // A diagonal inverse Hessian: the saliency's cost does not depend on its values.
    let mut hinv = Array2::<f64>::zeros((d, d));
    for i in 0..d {
        hinv[[i, i]] = 1.0 + rnd().abs();
    }
    let t = Instant::now();
    let mut total = 0.0;
    for c in 0..channels {
        let q: Vec<usize> = (c * k..(c + 1) * k).collect();
        match math::saliency(w.view(), &hinv, &q) {
            Ok(e) => total += e,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "{channels} saliencies of {rows}x{k} columns: {:.3} s (sum {total:.6e})",
        t.elapsed().as_secs_f64()
    );
}
