//! Run a model with the reference interpreter.
//!
//! ```text
//! interp_run run MODEL.onnx OUT_DIR NAME=FILE.npy...   # outputs to OUT_DIR/out_<i>.npy
//! interp_run bench MODEL.onnx [--batch N] [--repeat R] # time calibration-style runs
//! ```
//!
//! `run` prints one line per output (`out_<i> <name> <dtype> <shape>`); it is what
//! `scripts/interp_zoo.py` calls to compare against onnxruntime. `bench` feeds random f32 inputs
//! with the batch set to N and, like a calibration pass, observes every Conv/Gemm/MatMul input
//! (per-channel sum of squares), then prints the seconds per run.

use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::interp::ndarray::{ArrayD, Axis};
use spa_ir::interp::{Data, Interpreter, Value};
use spa_ir::{DType, Dim, Graph, NodeId, Type};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

type Res<T> = Result<T, String>;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") if args.len() >= 3 => run(&args[1], &args[2], &args[3..]),
        Some("bench") if args.len() >= 2 => bench(&args[1], &args[2..]),
        _ => Err("usage: interp_run run MODEL OUT_DIR NAME=FILE.npy... | bench MODEL [--batch N] [--repeat R]".into()),
    }
}

fn load(path: &str) -> Res<spa_ir::Model> {
    read_onnx(Path::new(path), &ReadOptions::default()).map_err(|e| e.to_string())
}

fn run(model: &str, out_dir: &str, bindings: &[String]) -> Res<()> {
    let model = load(model)?;
    let interp = Interpreter::new(&model).map_err(|e| e.to_string())?;
    let mut values = Vec::new();
    for b in bindings {
        let (name, file) = b
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=FILE, got {b}"))?;
        values.push((name.to_string(), read_npy(Path::new(file))?));
    }
    let bound: Vec<(&str, &Value)> = values.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let outs = interp
        .run(&bound, &mut spa_ir::interp::NoObserver)
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out_dir).map_err(|e| e.to_string())?;
    for (i, (name, v)) in outs.iter().enumerate() {
        write_npy(&Path::new(out_dir).join(format!("out_{i}.npy")), v)?;
        println!("out_{i} {name} {} {:?}", v.dtype(), v.shape());
    }
    Ok(())
}

fn bench(model: &str, opts: &[String]) -> Res<()> {
    let mut batch = 1usize;
    let mut repeat = 1usize;
    let mut it = opts.iter();
    while let Some(o) = it.next() {
        let v = it.next().ok_or_else(|| format!("{o} needs a value"))?;
        let n: usize = v.parse().map_err(|_| format!("bad number {v}"))?;
        match o.as_str() {
            "--batch" => batch = n,
            "--repeat" => repeat = n,
            _ => return Err(format!("unknown option {o}")),
        }
    }
    let t0 = Instant::now();
    let model = load(model)?;
    let interp = Interpreter::new(&model).map_err(|e| e.to_string())?;
    println!("load+plan {:.3} s", t0.elapsed().as_secs_f64());
    let g = &model.graph;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut values = Vec::new();
    for &v in &g.inputs {
        let val = g.value(v);
        if val.init.is_some() {
            continue;
        }
        let Type::Tensor(t) = &val.ty else {
            return Err(format!("input {} is not a tensor", val.name));
        };
        let dims: Vec<usize> = t
            .dims()
            .ok_or("unranked input")?
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                _ if i == 0 => batch,
                Dim::Known(n) => *n as usize,
                _ => 1,
            })
            .collect();
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        let value = match t.dtype {
            Some(DType::F32) | None => Value::from_shape_f32(&dims, data)?,
            Some(d) => Value::from_shape_f32(&dims, data)?.cast(d)?,
        };
        values.push((val.name.clone(), value));
    }
    let bound: Vec<(&str, &Value)> = values.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for r in 0..repeat {
        let mut stats: HashMap<NodeId, Vec<f64>> = HashMap::new();
        // Seconds per op type: the time between observer calls is the node just evaluated.
        let mut per_op: HashMap<String, (f64, usize)> = HashMap::new();
        let mut last = Instant::now();
        let mut observe = |graph: &Graph, id: NodeId, ins: &[Option<&Value>], _: &[Value]| {
            let op = graph.node(id).op_type.as_str();
            let e = per_op.entry(op.to_string()).or_default();
            e.0 += last.elapsed().as_secs_f64();
            e.1 += 1;
            if let Some(s) = channel_sums(op, ins) {
                stats.insert(id, s);
            }
            last = Instant::now();
        };
        let t = Instant::now();
        let outs = interp
            .run(&bound, &mut observe)
            .map_err(|e| e.to_string())?;
        println!(
            "run {r}: batch {batch}: {:.3} s ({} outputs, {} layers observed)",
            t.elapsed().as_secs_f64(),
            outs.len(),
            stats.len()
        );
        let mut ops: Vec<_> = per_op.into_iter().collect();
        ops.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        for (op, (secs, n)) in ops.iter().take(8) {
            println!("  {op:24} {n:5} nodes {secs:8.3} s");
        }
    }
    Ok(())
}

/// Per-channel sum of squares of a Conv/Gemm/MatMul input, as a calibration pass collects.
fn channel_sums(op: &str, ins: &[Option<&Value>]) -> Option<Vec<f64>> {
    if !matches!(op, "Conv" | "Gemm" | "MatMul") {
        return None;
    }
    let a = ins.first().copied().flatten()?.as_f32()?;
    if a.ndim() < 2 {
        return None;
    }
    let ax = if op == "Conv" { 1 } else { a.ndim() - 1 };
    Some(
        a.axis_iter(Axis(ax))
            .map(|c| c.iter().map(|&v| (v * v) as f64).sum())
            .collect(),
    )
}

/// Read a `.npy` file (little-endian f32/f64/f16/i64/i32/i8/u8/bool, C order).
fn read_npy(path: &Path) -> Res<Value> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = || format!("{}: not a supported .npy file", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad());
    }
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        let b = bytes.get(8..12).ok_or_else(bad)?;
        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
    };
    let header =
        std::str::from_utf8(bytes.get(start..start + hlen).ok_or_else(bad)?).map_err(|_| bad())?;
    let field = |key: &str| -> Res<&str> {
        let i = header.find(key).ok_or_else(bad)? + key.len();
        Ok(header[i..].trim_start_matches([' ', ':', '\'']))
    };
    let descr: String = field("'descr'")?
        .chars()
        .take_while(|&c| c != '\'')
        .collect();
    if field("'fortran_order'")?.starts_with("True") {
        return Err(format!(
            "{}: Fortran order is not supported",
            path.display()
        ));
    }
    let shape_s = field("'shape'")?;
    let shape_s =
        &shape_s[shape_s.find('(').ok_or_else(bad)? + 1..shape_s.find(')').ok_or_else(bad)?];
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad()))
        .collect::<Res<_>>()?;
    let data = &bytes[start + hlen..];
    let (dtype, size) = match descr.as_str() {
        "<f4" => (DType::F32, 4),
        "<f8" => (DType::F64, 8),
        "<f2" => (DType::F16, 2),
        "<i8" => (DType::I64, 8),
        "<i4" => (DType::I32, 4),
        "|i1" => (DType::I8, 1),
        "|u1" => (DType::U8, 1),
        "|b1" => (DType::Bool, 1),
        d => return Err(format!("{}: dtype {d} is not supported", path.display())),
    };
    let n: usize = shape.iter().product();
    if data.len() != n * size {
        return Err(bad());
    }
    let t = spa_ir::Tensor::from_raw(
        dtype,
        shape.iter().map(|&d| d as i64).collect(),
        bytes::Bytes::copy_from_slice(data),
    );
    Value::from_tensor(&t)
}

fn write_npy(path: &Path, v: &Value) -> Res<()> {
    let (descr, body): (&str, Vec<u8>) = match v.data() {
        Data::F32(a) => (
            "<f4",
            std_iter(a).flat_map(|x: f32| x.to_le_bytes()).collect(),
        ),
        Data::I64(a) => (
            "<i8",
            std_iter(a).flat_map(|x: i64| x.to_le_bytes()).collect(),
        ),
        Data::Bool(a) => ("|b1", std_iter(a).map(|x: bool| x as u8).collect()),
    };
    let shape: Vec<String> = v.shape().iter().map(|d| d.to_string()).collect();
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(body);
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

fn std_iter<T: Copy>(a: &ArrayD<T>) -> impl Iterator<Item = T> + '_ {
    a.iter().copied()
}
