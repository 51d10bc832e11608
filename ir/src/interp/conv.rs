//! Conv (im2col + the parallel matrix product) and ConvTranspose (product + col2im), for 1, 2
//! and 3 spatial dims (lower ranks are computed as 3-D with unit leading axes). Work is split
//! over (image, group) pairs, and each product splits further when there are few pairs.

use super::matmul::gemm_into;
use super::value::{Data, Value};
use super::{arg, opt, Ctx, KernelFn};
use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, IxDyn};
use rayon::prelude::*;

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "Conv" => conv,
        "ConvTranspose" => conv_transpose,
        _ => return None,
    })
}

/// Geometry of one spatial axis.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AxisGeom {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub output: usize,
}

/// Spatial geometry padded to 3 axes (leading unit axes for 1-D and 2-D).
pub(crate) type Geom3 = [AxisGeom; 3];

/// Read a per-axis attribute (`strides`, `dilations`), defaulting to 1.
pub(crate) fn per_axis(cx: &Ctx<'_>, name: &str, r: usize) -> Result<Vec<usize>, String> {
    match cx.ints(name) {
        Some(v) if v.len() == r && v.iter().all(|&x| x >= 1) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => Err(format!("{name} {v:?} does not fit {r} spatial axes")),
        None => Ok(vec![1; r]),
    }
}

/// Pads (begin, end) per axis from `pads`/`auto_pad`, for an op whose output size is
/// `(in + pads - ((k-1)*d+1)) / s + 1`.
pub(crate) fn forward_pads(
    cx: &Ctx<'_>,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dil: &[usize],
) -> Result<Vec<(usize, usize)>, String> {
    let r = input.len();
    match cx.string("auto_pad", "NOTSET") {
        "SAME_UPPER" | "SAME_LOWER" => {
            let upper = cx.string("auto_pad", "") == "SAME_UPPER";
            Ok((0..r)
                .map(|i| {
                    let out = input[i].div_ceil(strides[i]);
                    let span = (kernel[i] - 1) * dil[i] + 1;
                    let total = ((out - 1) * strides[i] + span).saturating_sub(input[i]);
                    let small = total / 2;
                    if upper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    }
                })
                .collect())
        }
        "VALID" => Ok(vec![(0, 0); r]),
        _ => match cx.ints("pads") {
            Some(p) if p.len() == 2 * r && p.iter().all(|&x| x >= 0) => {
                Ok((0..r).map(|i| (p[i] as usize, p[i + r] as usize)).collect())
            }
            Some(p) => Err(format!("pads {p:?} do not fit {r} spatial axes")),
            None => Ok(vec![(0, 0); r]),
        },
    }
}

pub(crate) fn pad3(g: Vec<AxisGeom>) -> Result<Geom3, String> {
    if g.is_empty() || g.len() > 3 {
        return Err(format!("{} spatial axes (1 to 3 supported)", g.len()));
    }
    let unit = AxisGeom {
        input: 1,
        kernel: 1,
        stride: 1,
        dilation: 1,
        pad_begin: 0,
        output: 1,
    };
    let mut out = [unit; 3];
    let off = 3 - g.len();
    for (i, a) in g.into_iter().enumerate() {
        out[off + i] = a;
    }
    Ok(out)
}

fn conv(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = xv.as_f32().ok_or("Conv needs a float input")?;
    let w = arg(inputs, 1)?
        .as_f32()
        .ok_or("Conv needs a float weight")?;
    let bias = opt(inputs, 2)
        .map(|b| b.as_f32().ok_or("Conv bias must be float"))
        .transpose()?;
    let xs = x.shape();
    let ws = w.shape();
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(format!("input {xs:?} and weight {ws:?} ranks do not fit"));
    }
    let r = xs.len() - 2;
    let (n, c) = (xs[0], xs[1]);
    let groups = cx.int("group", 1).max(1) as usize;
    let m = ws[0];
    if c % groups != 0 || m % groups != 0 || ws[1] * groups != c {
        return Err(format!(
            "input channels {c}, weight {ws:?} and group {groups} do not fit"
        ));
    }
    let kernel: Vec<usize> = ws[2..].to_vec();
    if kernel.contains(&0) {
        return Err(format!("empty kernel {kernel:?}"));
    }
    let strides = per_axis(cx, "strides", r)?;
    let dil = per_axis(cx, "dilations", r)?;
    let pads = forward_pads(cx, &xs[2..], &kernel, &strides, &dil)?;
    let mut geom = Vec::with_capacity(r);
    for i in 0..r {
        let span = (kernel[i] - 1) * dil[i] + 1;
        let padded = xs[2 + i] + pads[i].0 + pads[i].1;
        if padded < span {
            return Err(format!("kernel {kernel:?} larger than padded input {xs:?}"));
        }
        geom.push(AxisGeom {
            input: xs[2 + i],
            kernel: kernel[i],
            stride: strides[i],
            dilation: dil[i],
            pad_begin: pads[i].0,
            output: (padded - span) / strides[i] + 1,
        });
    }
    let mut out_shape = vec![n, m];
    out_shape.extend(geom.iter().map(|g| g.output));
    let g3 = pad3(geom)?;
    let x = x.as_standard_layout();
    let w = w.as_standard_layout();
    let xs_flat = x.as_slice().ok_or("input not contiguous")?;
    let ws_flat = w.as_slice().ok_or("weight not contiguous")?;
    let (cg, mg) = (c / groups, m / groups);
    let kk: usize = g3.iter().map(|a| a.kernel).product();
    let p_in: usize = g3.iter().map(|a| a.input).product();
    let p_out: usize = g3.iter().map(|a| a.output).product();
    let pointwise = g3
        .iter()
        .all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.output == a.input);
    let mut out = vec![0f32; n * m * p_out];
    if !out.is_empty() {
        out.par_chunks_mut(mg * p_out).enumerate().try_for_each(
            |(idx, chunk)| -> Result<(), String> {
                let (img, gi) = (idx / groups, idx % groups);
                let xoff = (img * c + gi * cg) * p_in;
                let xg = &xs_flat[xoff..xoff + cg * p_in];
                let wg = ArrayView2::from_shape(
                    (mg, cg * kk),
                    &ws_flat[gi * mg * cg * kk..(gi + 1) * mg * cg * kk],
                )
                .map_err(|e| e.to_string())?;
                let og =
                    ArrayViewMut2::from_shape((mg, p_out), chunk).map_err(|e| e.to_string())?;
                if pointwise {
                    let xm = ArrayView2::from_shape((cg, p_in), xg).map_err(|e| e.to_string())?;
                    gemm_into(1.0, wg, xm, 0.0, og);
                } else {
                    let mut cols = vec![0f32; cg * kk * p_out];
                    im2col(xg, cg, &g3, &mut cols);
                    let cm = ArrayView2::from_shape((cg * kk, p_out), &cols[..])
                        .map_err(|e| e.to_string())?;
                    gemm_into(1.0, wg, cm, 0.0, og);
                }
                Ok(())
            },
        )?;
    }
    if let Some(b) = bias {
        add_bias(&mut out, b, m, p_out)?;
    }
    let arr = ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?;
    Ok(vec![xv.like(Data::F32(arr))])
}

fn add_bias(out: &mut [f32], b: &ArrayD<f32>, m: usize, p: usize) -> Result<(), String> {
    if b.len() != m {
        return Err(format!(
            "bias of {} elements for {m} output channels",
            b.len()
        ));
    }
    let bias: Vec<f32> = b.iter().copied().collect();
    if p == 0 {
        return Ok(());
    }
    out.par_chunks_mut(p).enumerate().for_each(|(i, row)| {
        let v = bias[i % m];
        row.iter_mut().for_each(|x| *x += v);
    });
    Ok(())
}

/// Input coordinate of output `o` at kernel offset `k`, if inside the input.
#[inline]
fn src(a: &AxisGeom, o: usize, k: usize) -> Option<usize> {
    let pos = (o * a.stride + k * a.dilation) as isize - a.pad_begin as isize;
    (pos >= 0 && (pos as usize) < a.input).then_some(pos as usize)
}

/// Unfold `[cg, D, H, W]` into `[cg * kd * kh * kw, OD * OH * OW]` (zeros where padded).
fn im2col(x: &[f32], cg: usize, g: &Geom3, cols: &mut [f32]) {
    let [ad, ah, aw] = g;
    let p_out = ad.output * ah.output * aw.output;
    let mut row = 0;
    for c in 0..cg {
        for kd in 0..ad.kernel {
            for kh in 0..ah.kernel {
                for kw in 0..aw.kernel {
                    let dst = &mut cols[row * p_out..(row + 1) * p_out];
                    row += 1;
                    for od in 0..ad.output {
                        let Some(id) = src(ad, od, kd) else {
                            continue; // cols start zeroed
                        };
                        for oh in 0..ah.output {
                            let Some(ih) = src(ah, oh, kh) else {
                                continue;
                            };
                            let base = ((c * ad.input + id) * ah.input + ih) * aw.input;
                            let line = &x[base..base + aw.input];
                            let d = &mut dst[(od * ah.output + oh) * aw.output..][..aw.output];
                            if aw.stride == 1 && aw.dilation == 1 {
                                // Contiguous run: copy the in-range part.
                                let shift = kw as isize - aw.pad_begin as isize;
                                for (ow, slot) in d.iter_mut().enumerate() {
                                    let iw = ow as isize + shift;
                                    if iw >= 0 && (iw as usize) < aw.input {
                                        *slot = line[iw as usize];
                                    }
                                }
                            } else {
                                for (ow, slot) in d.iter_mut().enumerate() {
                                    if let Some(iw) = src(aw, ow, kw) {
                                        *slot = line[iw];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn conv_transpose(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = xv.as_f32().ok_or("ConvTranspose needs a float input")?;
    let w = arg(inputs, 1)?
        .as_f32()
        .ok_or("ConvTranspose needs a float weight")?;
    let bias = opt(inputs, 2)
        .map(|b| b.as_f32().ok_or("bias must be float"))
        .transpose()?;
    let xs = x.shape();
    let ws = w.shape();
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(format!("input {xs:?} and weight {ws:?} ranks do not fit"));
    }
    let r = xs.len() - 2;
    let (n, c) = (xs[0], xs[1]);
    let groups = cx.int("group", 1).max(1) as usize;
    if ws[0] != c || c % groups != 0 {
        return Err(format!(
            "input channels {c}, weight {ws:?} and group {groups} do not fit"
        ));
    }
    let (cg, mg) = (c / groups, ws[1]);
    let m = mg * groups;
    let kernel: Vec<usize> = ws[2..].to_vec();
    if kernel.contains(&0) {
        return Err(format!("empty kernel {kernel:?}"));
    }
    let strides = per_axis(cx, "strides", r)?;
    let dil = per_axis(cx, "dilations", r)?;
    let out_pad: Vec<usize> = match cx.ints("output_padding") {
        Some(v) if v.len() == r => v.iter().map(|&x| x.max(0) as usize).collect(),
        _ => vec![0; r],
    };
    let auto = cx.string("auto_pad", "NOTSET");
    let mut geom = Vec::with_capacity(r);
    for i in 0..r {
        let span = (kernel[i] - 1) * dil[i] + 1;
        let full = strides[i] * (xs[2 + i].max(1) - 1) + out_pad[i] + span;
        let (pb, out) = if let Some(os) = cx.ints("output_shape").filter(|v| v.len() >= r) {
            let target = os[os.len() - r + i].max(0) as usize;
            let total = full.saturating_sub(target);
            let pb = if auto == "SAME_UPPER" {
                total / 2
            } else {
                total - total / 2
            };
            (pb, target)
        } else if auto == "SAME_UPPER" || auto == "SAME_LOWER" {
            let target = xs[2 + i] * strides[i];
            let total = full.saturating_sub(target);
            let pb = if auto == "SAME_UPPER" {
                total / 2
            } else {
                total - total / 2
            };
            (pb, target)
        } else {
            let (pb, pe) = match cx.ints("pads") {
                Some(p) if p.len() == 2 * r => (p[i].max(0) as usize, p[i + r].max(0) as usize),
                _ => (0, 0),
            };
            if full < pb + pe {
                return Err(format!("pads larger than the output on axis {i}"));
            }
            (pb, full - pb - pe)
        };
        geom.push(AxisGeom {
            input: xs[2 + i],
            kernel: kernel[i],
            stride: strides[i],
            dilation: dil[i],
            pad_begin: pb,
            output: out,
        });
    }
    let mut out_shape = vec![n, m];
    out_shape.extend(geom.iter().map(|g| g.output));
    let g3 = pad3(geom)?;
    let x = x.as_standard_layout();
    let w = w.as_standard_layout();
    let xs_flat = x.as_slice().ok_or("input not contiguous")?;
    let ws_flat = w.as_slice().ok_or("weight not contiguous")?;
    let kk: usize = g3.iter().map(|a| a.kernel).product();
    let p_in: usize = g3.iter().map(|a| a.input).product();
    let p_out: usize = g3.iter().map(|a| a.output).product();
    let mut out = vec![0f32; n * m * p_out];
    if !out.is_empty() {
        out.par_chunks_mut(mg * p_out).enumerate().try_for_each(
            |(idx, chunk)| -> Result<(), String> {
                let (img, gi) = (idx / groups, idx % groups);
                let xoff = (img * c + gi * cg) * p_in;
                let xm = ArrayView2::from_shape((cg, p_in), &xs_flat[xoff..xoff + cg * p_in])
                    .map_err(|e| e.to_string())?;
                let wg = ArrayView2::from_shape(
                    (cg, mg * kk),
                    &ws_flat[gi * cg * mg * kk..(gi + 1) * cg * mg * kk],
                )
                .map_err(|e| e.to_string())?;
                let mut cols = ndarray::Array2::<f32>::zeros((mg * kk, p_in));
                gemm_into(1.0, wg.t(), xm, 0.0, cols.view_mut());
                let cols = cols.as_slice().ok_or("cols not contiguous")?;
                col2im(cols, mg, &g3, chunk);
                Ok(())
            },
        )?;
    }
    if let Some(b) = bias {
        add_bias(&mut out, b, m, p_out)?;
    }
    let arr = ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?;
    Ok(vec![xv.like(Data::F32(arr))])
}

/// Scatter-add `[mg * kd * kh * kw, D * H * W]` (input positions) into `[mg, OD, OH, OW]`.
fn col2im(cols: &[f32], mg: usize, g: &Geom3, out: &mut [f32]) {
    let [ad, ah, aw] = g;
    let p_in = ad.input * ah.input * aw.input;
    let p_out = ad.output * ah.output * aw.output;
    // For ConvTranspose the roles swap: output coordinate = input * stride + k * dil - pad.
    let dst = |a: &AxisGeom, i: usize, k: usize| -> Option<usize> {
        let pos = (i * a.stride + k * a.dilation) as isize - a.pad_begin as isize;
        (pos >= 0 && (pos as usize) < a.output).then_some(pos as usize)
    };
    let mut row = 0;
    for mo in 0..mg {
        let o = &mut out[mo * p_out..(mo + 1) * p_out];
        for kd in 0..ad.kernel {
            for kh in 0..ah.kernel {
                for kw in 0..aw.kernel {
                    let src_row = &cols[row * p_in..(row + 1) * p_in];
                    row += 1;
                    for id in 0..ad.input {
                        let Some(od) = dst(ad, id, kd) else { continue };
                        for ih in 0..ah.input {
                            let Some(oh) = dst(ah, ih, kh) else { continue };
                            let sbase = (id * ah.input + ih) * aw.input;
                            let obase = (od * ah.output + oh) * aw.output;
                            for iw in 0..aw.input {
                                if let Some(ow) = dst(aw, iw, kw) {
                                    o[obase + ow] += src_row[sbase + iw];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;
    use crate::model::Model;
    use crate::Graph;

    fn ctx_run(node: Node, inputs: &[Option<&Value>]) -> Vec<Value> {
        let model = Model::new(Graph::new("g"));
        let cx = Ctx {
            node: &node,
            opset: 17,
            model: &model,
            scope: &|_| None,
            caller: None,
        };
        (super::kernel(&node.op_type).unwrap())(&cx, inputs).unwrap()
    }

    #[test]
    fn conv_and_transpose_by_hand() {
        use crate::attr::AttrValue;
        // 1x1x3x3 input 1..9, 2x2 kernel of ones, stride 1, no pad: sums of 2x2 windows.
        let x = Value::f32(
            ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), (1..=9).map(|v| v as f32).collect())
                .unwrap(),
        );
        let w = Value::f32(ArrayD::from_elem(IxDyn(&[1, 1, 2, 2]), 1.0));
        let b = Value::f32(ArrayD::from_elem(IxDyn(&[1]), 0.5));
        let y = ctx_run(Node::new("Conv"), &[Some(&x), Some(&w), Some(&b)]);
        assert_eq!(y[0].shape(), &[1, 1, 2, 2]);
        assert_eq!(
            y[0].as_f32().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![12.5, 16.5, 24.5, 28.5]
        );
        // Padding 1, stride 2: corners of the padded input.
        let mut n = Node::new("Conv");
        n.set_attr("pads", AttrValue::Ints(vec![1, 1, 1, 1]));
        n.set_attr("strides", AttrValue::Ints(vec![2, 2]));
        let y = ctx_run(n, &[Some(&x), Some(&w), None]);
        assert_eq!(
            y[0].as_f32().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![1.0, 5.0, 11.0, 28.0]
        );
        // ConvTranspose of a 1x1x2x2 input with a 2x2 kernel of ones, stride 2: each input
        // value becomes a 2x2 block.
        let xt = Value::f32(
            ArrayD::from_shape_vec(IxDyn(&[1, 1, 2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
        );
        let mut n = Node::new("ConvTranspose");
        n.set_attr("strides", AttrValue::Ints(vec![2, 2]));
        let y = ctx_run(n, &[Some(&xt), Some(&w), None]);
        assert_eq!(y[0].shape(), &[1, 1, 4, 4]);
        let v: Vec<f32> = y[0].as_f32().unwrap().iter().copied().collect();
        assert_eq!(&v[..8], &[1., 1., 2., 2., 1., 1., 2., 2.]);
        assert_eq!(&v[8..], &[3., 3., 4., 4., 3., 3., 4., 4.]);
    }
}
