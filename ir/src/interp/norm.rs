//! Normalizations: BatchNormalization (inference), InstanceNormalization, LayerNormalization,
//! GroupNormalization, RMSNormalization, LpNormalization, MeanVarianceNormalization, LRN.

use super::value::{flat, Data, Value};
use super::{arg, axis, f32_arg, opt, Ctx, KernelFn};
use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "BatchNormalization" => batch_norm,
        "InstanceNormalization" => instance_norm,
        "LayerNormalization" => layer_norm,
        "GroupNormalization" => group_norm,
        "RMSNormalization" => rms_norm,
        "LpNormalization" => lp_norm,
        "MeanVarianceNormalization" => mvn,
        "LRN" => lrn,
        _ => return None,
    })
}

fn vec_of(v: &ArrayD<f32>, n: usize, what: &str) -> Result<Vec<f32>, String> {
    if v.len() != n {
        return Err(format!("{what} has {} elements, expected {n}", v.len()));
    }
    Ok(v.iter().copied().collect())
}

fn batch_norm(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let s = x.shape();
    if s.len() < 2 {
        return Err(format!("input of rank {} (at least 2 needed)", s.len()));
    }
    let c = s[1];
    let scale = vec_of(f32_arg(inputs, 1)?, c, "scale")?;
    let bias = vec_of(f32_arg(inputs, 2)?, c, "bias")?;
    let mean = vec_of(f32_arg(inputs, 3)?, c, "mean")?;
    let var = vec_of(f32_arg(inputs, 4)?, c, "var")?;
    let eps = cx.float("epsilon", 1e-5);
    let (mul, add): (Vec<f32>, Vec<f32>) = (0..c)
        .map(|i| {
            let k = scale[i] / (var[i] + eps).sqrt();
            (k, bias[i] - mean[i] * k)
        })
        .unzip();
    let inner: usize = s[2..].iter().product();
    let mut data = flat(x);
    if inner > 0 {
        data.par_chunks_mut(inner).enumerate().for_each(|(i, row)| {
            let (k, b) = (mul[i % c], add[i % c]);
            row.iter_mut().for_each(|v| *v = *v * k + b);
        });
    }
    let y = ArrayD::from_shape_vec(IxDyn(s), data).map_err(|e| e.to_string())?;
    let mut outs = vec![xv.like(Data::F32(y))];
    // Optional training outputs (running mean/var) pass the inputs through.
    if cx.node.outputs.len() > 1 {
        outs.push(arg(inputs, 3)?.clone());
        outs.push(arg(inputs, 4)?.clone());
    }
    Ok(outs)
}

/// Normalize each contiguous row of `len` elements in place; `affine(row index, position in
/// row)` gives (scale, bias). Returns per-row (mean, inv std).
fn normalize_rows(
    data: &mut [f32],
    len: usize,
    eps: f32,
    rms: bool,
    affine: &(dyn Fn(usize, usize) -> (f32, f32) + Sync),
) -> Vec<(f32, f32)> {
    if len == 0 {
        return Vec::new();
    }
    data.par_chunks_mut(len)
        .enumerate()
        .map(|(r, row)| {
            let n = len as f64;
            let mean = if rms {
                0.0
            } else {
                row.iter().map(|&v| v as f64).sum::<f64>() / n
            };
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for (j, v) in row.iter_mut().enumerate() {
                let (s, b) = affine(r, j);
                *v = ((*v as f64 - mean) * inv) as f32 * s + b;
            }
            (mean as f32, inv as f32)
        })
        .collect()
}

fn instance_norm(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let s = x.shape().to_vec();
    if s.len() < 3 {
        return Err(format!("input of rank {} (at least 3 needed)", s.len()));
    }
    let c = s[1];
    let scale = vec_of(f32_arg(inputs, 1)?, c, "scale")?;
    let bias = vec_of(f32_arg(inputs, 2)?, c, "bias")?;
    let inner: usize = s[2..].iter().product();
    let mut data = flat(x);
    normalize_rows(
        &mut data,
        inner,
        cx.float("epsilon", 1e-5),
        false,
        &|r, _| (scale[r % c], bias[r % c]),
    );
    let y = ArrayD::from_shape_vec(IxDyn(&s), data).map_err(|e| e.to_string())?;
    Ok(vec![xv.like(Data::F32(y))])
}

/// Broadcast an optional parameter to the normalized trailing shape, flattened.
fn trailing(p: Option<&ArrayD<f32>>, tail: &[usize]) -> Result<Option<Vec<f32>>, String> {
    let Some(p) = p else { return Ok(None) };
    let b = p.broadcast(IxDyn(tail)).ok_or_else(|| {
        format!(
            "parameter of shape {:?} does not broadcast to {tail:?}",
            p.shape()
        )
    })?;
    Ok(Some(b.iter().copied().collect()))
}

fn layer_like(cx: &Ctx<'_>, inputs: &[Option<&Value>], rms: bool) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let s = x.shape().to_vec();
    let ax = axis(cx.int("axis", -1), s.len())?;
    let tail = &s[ax..];
    let len: usize = tail.iter().product();
    let scale = trailing(opt(inputs, 1).and_then(|v| v.as_f32()), tail)?;
    let bias = trailing(opt(inputs, 2).and_then(|v| v.as_f32()), tail)?;
    let mut data = flat(x);
    let stats = normalize_rows(&mut data, len, cx.float("epsilon", 1e-5), rms, &|_, j| {
        (
            scale.as_ref().map_or(1.0, |v| v[j]),
            bias.as_ref().map_or(0.0, |v| v[j]),
        )
    });
    let y = ArrayD::from_shape_vec(IxDyn(&s), data).map_err(|e| e.to_string())?;
    let mut outs = vec![xv.like(Data::F32(y))];
    if cx.node.outputs.len() > 1 && !rms {
        let mut sshape = s[..ax].to_vec();
        sshape.extend(std::iter::repeat_n(1, s.len() - ax));
        let (m, i): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        outs.push(Value::f32(
            ArrayD::from_shape_vec(IxDyn(&sshape), m).map_err(|e| e.to_string())?,
        ));
        outs.push(Value::f32(
            ArrayD::from_shape_vec(IxDyn(&sshape), i).map_err(|e| e.to_string())?,
        ));
    }
    Ok(outs)
}

fn layer_norm(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    layer_like(cx, inputs, false)
}

fn rms_norm(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    layer_like(cx, inputs, true)
}

fn group_norm(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let s = x.shape().to_vec();
    if s.len() < 2 {
        return Err("GroupNormalization of a tensor of rank < 2".into());
    }
    let c = s[1];
    let g = cx.int("num_groups", 1).max(1) as usize;
    if c % g != 0 {
        return Err(format!("{c} channels in {g} groups"));
    }
    let scale = f32_arg(inputs, 1)?;
    let bias = f32_arg(inputs, 2)?;
    // Opset 18 has per-group parameters, opset 21 per-channel ones.
    let per_group = scale.len() == g && g != c;
    let scale: Vec<f32> = scale.iter().copied().collect();
    let bias: Vec<f32> = bias.iter().copied().collect();
    let want = if per_group { g } else { c };
    if scale.len() != want || bias.len() != want {
        return Err(format!(
            "scale/bias of {} elements for {c} channels in {g} groups",
            scale.len()
        ));
    }
    let inner: usize = s[2..].iter().product();
    let len = (c / g) * inner;
    let mut data = flat(x);
    normalize_rows(&mut data, len, cx.float("epsilon", 1e-5), false, &|r, j| {
        let gi = r % g;
        let ch = gi * (c / g) + j.checked_div(inner).unwrap_or(0);
        let k = if per_group { gi } else { ch };
        (scale[k], bias[k])
    });
    let y = ArrayD::from_shape_vec(IxDyn(&s), data).map_err(|e| e.to_string())?;
    Ok(vec![xv.like(Data::F32(y))])
}

fn lp_norm(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let ax = axis(cx.int("axis", -1), x.ndim())?;
    let p = cx.int("p", 2);
    let mut y = x.to_owned();
    for mut lane in y.lanes_mut(Axis(ax)) {
        let norm = if p == 1 {
            lane.iter().map(|v| v.abs()).sum::<f32>()
        } else {
            lane.iter().map(|v| v * v).sum::<f32>().sqrt()
        };
        if norm != 0.0 {
            lane.iter_mut().for_each(|v| *v /= norm);
        }
    }
    Ok(vec![xv.like(Data::F32(y))])
}

fn mvn(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let axes: Vec<usize> = match cx.ints("axes") {
        Some(a) => a
            .iter()
            .map(|&a| axis(a, x.ndim()))
            .collect::<Result<_, _>>()?,
        None => vec![0, 2, 3],
    };
    let mut mean = x.clone();
    let mut sq = x.mapv(|v| v * v);
    for &a in &axes {
        if a >= x.ndim() {
            return Err(format!("axis {a} out of range"));
        }
        mean = mean
            .mean_axis(Axis(a))
            .ok_or("empty axis")?
            .insert_axis(Axis(a));
        sq = sq
            .mean_axis(Axis(a))
            .ok_or("empty axis")?
            .insert_axis(Axis(a));
    }
    let var = &sq - &mean.mapv(|m| m * m);
    let y = (x - &mean) / var.mapv(|v| (v.max(0.0)).sqrt() + 1e-9);
    Ok(vec![xv.like(Data::F32(y))])
}

fn lrn(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    if x.ndim() < 2 {
        return Err("LRN of a tensor of rank < 2".into());
    }
    let size = cx.int("size", 1).max(1) as usize;
    let (alpha, beta, bias) = (
        cx.float("alpha", 1e-4),
        cx.float("beta", 0.75),
        cx.float("bias", 1.0),
    );
    let c = x.shape()[1];
    let mut y = x.to_owned();
    let lo = (size - 1) / 2;
    let hi = size - 1 - lo;
    for (mut out, inp) in y.lanes_mut(Axis(1)).into_iter().zip(x.lanes(Axis(1))) {
        for i in 0..c {
            let a = i.saturating_sub(lo);
            let b = (i + hi).min(c - 1);
            let sq: f32 = (a..=b).map(|j| inp[j] * inp[j]).sum();
            out[i] = inp[i] / (bias + alpha / size as f32 * sq).powf(beta);
        }
    }
    Ok(vec![xv.like(Data::F32(y))])
}
