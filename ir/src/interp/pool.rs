//! Pooling: MaxPool, AveragePool (ceil mode, count_include_pad), GlobalAveragePool,
//! GlobalMaxPool, GlobalLpPool; 1 to 3 spatial dims, parallel over (image, channel) planes.

use super::conv::{forward_pads, pad3, per_axis, AxisGeom, Geom3};
use super::value::{flat, Data, Value};
use super::{arg, f32_arg, Ctx, KernelFn};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "MaxPool" | "AveragePool" | "LpPool" => pool,
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => global_pool,
        _ => return None,
    })
}

fn global_pool(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let s = x.shape();
    if s.len() < 2 {
        return Err("global pooling of a tensor of rank < 2".into());
    }
    let inner: usize = s[2..].iter().product();
    let data: Vec<f32> = flat(x);
    let p = cx.int("p", 2) as f32;
    let out: Vec<f32> = if inner == 0 {
        vec![0.0; s[0] * s[1]]
    } else {
        data.par_chunks(inner)
            .map(|row| match cx.node.op_type.as_str() {
                "GlobalMaxPool" => row.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                "GlobalLpPool" => row
                    .iter()
                    .map(|v| v.abs().powf(p))
                    .sum::<f32>()
                    .powf(1.0 / p),
                _ => (row.iter().map(|&v| v as f64).sum::<f64>() / inner as f64) as f32,
            })
            .collect()
    };
    let mut shape = vec![s[0], s[1]];
    shape.extend(std::iter::repeat_n(1, s.len() - 2));
    let y = ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())?;
    Ok(vec![xv.like(Data::F32(y))])
}

fn pool(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = f32_arg(inputs, 0)?;
    let s = x.shape();
    if s.len() < 3 {
        return Err(format!("pooling input of rank {}", s.len()));
    }
    let r = s.len() - 2;
    let kernel: Vec<usize> = match cx.ints("kernel_shape") {
        Some(k) if k.len() == r && k.iter().all(|&v| v >= 1) => {
            k.iter().map(|&v| v as usize).collect()
        }
        _ => return Err("kernel_shape is missing or does not fit the input".into()),
    };
    let strides = per_axis(cx, "strides", r)?;
    let dil = per_axis(cx, "dilations", r)?;
    let pads = forward_pads(cx, &s[2..], &kernel, &strides, &dil)?;
    let ceil = cx.int("ceil_mode", 0) != 0;
    let mut geom = Vec::with_capacity(r);
    let mut pad_end = Vec::with_capacity(r);
    for i in 0..r {
        let span = (kernel[i] - 1) * dil[i] + 1;
        let padded = s[2 + i] + pads[i].0 + pads[i].1;
        if padded < span {
            return Err(format!("kernel {kernel:?} larger than padded input {s:?}"));
        }
        let mut out = if ceil {
            (padded - span).div_ceil(strides[i]) + 1
        } else {
            (padded - span) / strides[i] + 1
        };
        // A window must start inside the input or the begin padding.
        if ceil && (out - 1) * strides[i] >= s[2 + i] + pads[i].0 {
            out -= 1;
        }
        geom.push(AxisGeom {
            input: s[2 + i],
            kernel: kernel[i],
            stride: strides[i],
            dilation: dil[i],
            pad_begin: pads[i].0,
            output: out,
        });
        pad_end.push(pads[i].1);
    }
    let mut out_shape = vec![s[0], s[1]];
    out_shape.extend(geom.iter().map(|g| g.output));
    let mut pe3 = [0usize; 3];
    pe3[3 - r..].copy_from_slice(&pad_end);
    let g3 = pad3(geom)?;
    let p_in: usize = g3.iter().map(|a| a.input).product();
    let p_out: usize = g3.iter().map(|a| a.output).product();
    let data: Vec<f32> = flat(x);
    let kind = match cx.node.op_type.as_str() {
        "MaxPool" => Kind::Max,
        "LpPool" => Kind::Lp(cx.int("p", 2) as f32),
        _ => Kind::Avg(cx.int("count_include_pad", 0) != 0),
    };
    let mut out = vec![0f32; s[0] * s[1] * p_out];
    if p_in > 0 && p_out > 0 {
        out.par_chunks_mut(p_out)
            .zip(data.par_chunks(p_in))
            .for_each(|(o, plane)| pool_plane(plane, &g3, &pe3, kind, o));
    }
    let y = ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?;
    let mut outs = vec![xv.like(Data::F32(y))];
    if cx.node.outputs.len() > 1 && cx.node.output(1).is_some() {
        return Err("MaxPool Indices output is not supported".into());
    }
    outs.truncate(1);
    Ok(outs)
}

#[derive(Clone, Copy)]
enum Kind {
    Max,
    /// count_include_pad
    Avg(bool),
    Lp(f32),
}

/// Window of output `o` on one axis: (first, last exclusive) input positions, clipped, and the
/// window size counting padding (bounded by the padded extent).
fn window(a: &AxisGeom, pad_end: usize, o: usize) -> (isize, isize, usize) {
    let start = (o * a.stride) as isize - a.pad_begin as isize;
    let end = start + ((a.kernel - 1) * a.dilation + 1) as isize;
    let padded_end = end.min((a.input + pad_end) as isize);
    let with_pad = (padded_end - start).max(0) as usize;
    (start, end, with_pad.div_ceil(a.dilation.max(1)))
}

fn pool_plane(x: &[f32], g: &Geom3, pe: &[usize; 3], kind: Kind, out: &mut [f32]) {
    let [ad, ah, aw] = g;
    let mut idx = 0;
    for od in 0..ad.output {
        let wd = window(ad, pe[0], od);
        for oh in 0..ah.output {
            let wh = window(ah, pe[1], oh);
            for ow in 0..aw.output {
                let ww = window(aw, pe[2], ow);
                let mut acc = match kind {
                    Kind::Max => f32::NEG_INFINITY,
                    _ => 0.0,
                };
                let mut count = 0usize;
                let mut d = wd.0;
                while d < wd.1 {
                    if d >= 0 && (d as usize) < ad.input {
                        let mut h = wh.0;
                        while h < wh.1 {
                            if h >= 0 && (h as usize) < ah.input {
                                let base = (d as usize * ah.input + h as usize) * aw.input;
                                let mut w = ww.0;
                                while w < ww.1 {
                                    if w >= 0 && (w as usize) < aw.input {
                                        let v = x[base + w as usize];
                                        match kind {
                                            Kind::Max => {
                                                acc = if v > acc || v.is_nan() { v } else { acc }
                                            }
                                            Kind::Avg(_) => acc += v,
                                            Kind::Lp(p) => acc += v.abs().powf(p),
                                        }
                                        count += 1;
                                    }
                                    w += aw.dilation as isize;
                                }
                            }
                            h += ah.dilation as isize;
                        }
                    }
                    d += ad.dilation as isize;
                }
                out[idx] = match kind {
                    Kind::Max => acc,
                    Kind::Avg(true) => acc / (wd.2 * wh.2 * ww.2).max(1) as f32,
                    Kind::Avg(false) => acc / count.max(1) as f32,
                    Kind::Lp(p) => acc.powf(1.0 / p),
                };
                idx += 1;
            }
        }
    }
}
