//! Read an ONNX model and write it back unchanged, with timings: the I/O floor of spa-opt.
//!
//! cargo run --release -p spa-frontends --example roundtrip -- IN.onnx [-o] OUT.onnx [THRESHOLD]

use spa_backends::onnx::{write_onnx, WriteOptions};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `-o` is accepted so that scripts/bench_roundtrip.sh can call this like spa-opt.
    let mut args = std::env::args().skip(1).filter(|a| a != "-o");
    let usage = "usage: roundtrip IN.onnx [-o] OUT.onnx [EXTERNAL_THRESHOLD]";
    let input = PathBuf::from(args.next().ok_or(usage)?);
    let output = PathBuf::from(args.next().ok_or(usage)?);
    let threshold = args.next().map(|s| s.parse::<u64>()).transpose()?;

    let t = Instant::now();
    let model = read_onnx(&input, &ReadOptions::default())?;
    let read = t.elapsed();
    let t = Instant::now();
    let opts = WriteOptions {
        external_threshold: threshold,
        input_path: Some(input.clone()),
        ..WriteOptions::default()
    };
    let stats = write_onnx(&model, &output, &opts)?;
    let write = t.elapsed();
    eprintln!(
        "read {:.3}s, write {:.3}s, {} bytes + {} external bytes in {} tensors",
        read.as_secs_f64(),
        write.as_secs_f64(),
        stats.bytes_written,
        stats.external_bytes_written,
        stats.tensors_external
    );
    for note in &stats.notes {
        eprintln!("note: {note}");
    }
    Ok(())
}
