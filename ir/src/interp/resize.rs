//! Resize (nearest, linear, cubic; every coordinate transformation mode but
//! `half_pixel_symmetric`) and Upsample, applied one axis at a time (all three modes separate).

use super::value::{Data, Value};
use super::{arg, axis, opt, Ctx, KernelFn};
use ndarray::{ArrayD, Axis, IxDyn, Zip};

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "Resize" | "Upsample" => resize,
        _ => return None,
    })
}

fn resize(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let xv = arg(inputs, 0)?;
    let x = xv.as_f32().ok_or("Resize needs a float tensor")?;
    let shape = x.shape().to_vec();
    let r = shape.len();
    let legacy = cx.node.op_type == "Upsample" || cx.opset < 11;
    let (scales_in, sizes_in): (Option<Vec<f32>>, Option<Vec<i64>>) =
        if cx.node.op_type == "Upsample" && cx.opset < 9 {
            (cx.floats("scales").map(|s| s.to_vec()), None)
        } else if legacy {
            (
                opt(inputs, 1).map(|v| v.to_f32_array().iter().copied().collect()),
                None,
            )
        } else {
            (
                opt(inputs, 2)
                    .map(|v| v.to_f32_array().iter().copied().collect())
                    .filter(|v: &Vec<f32>| !v.is_empty()),
                opt(inputs, 3)
                    .map(|v| v.to_i64_vec())
                    .filter(|v| !v.is_empty()),
            )
        };
    if cx.int("antialias", 0) != 0 {
        return Err("antialias is not supported".into());
    }
    let axes: Vec<usize> = match cx.ints("axes") {
        Some(a) => a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    let mut scales = vec![1f32; r];
    let mut out = shape.clone();
    match (scales_in, sizes_in) {
        (_, Some(sz)) => {
            if sz.len() != axes.len() || sz.iter().any(|&s| s < 0) {
                return Err(format!("sizes {sz:?} for {} axes", axes.len()));
            }
            for (i, &a) in axes.iter().enumerate() {
                out[a] = sz[i] as usize;
                scales[a] = if shape[a] == 0 {
                    1.0
                } else {
                    sz[i] as f32 / shape[a] as f32
                };
            }
            if cx.string("keep_aspect_ratio_policy", "stretch") != "stretch" {
                return Err("keep_aspect_ratio_policy other than stretch is not supported".into());
            }
        }
        (Some(sc), None) => {
            if sc.len() != axes.len() || sc.iter().any(|&s| s <= 0.0) {
                return Err(format!("scales {sc:?} for {} axes", axes.len()));
            }
            for (i, &a) in axes.iter().enumerate() {
                scales[a] = sc[i];
                out[a] = (shape[a] as f32 * sc[i]).floor() as usize;
            }
        }
        (None, None) => return Err("neither scales nor sizes given".into()),
    }
    let mode = cx.string("mode", "nearest");
    let coord = if legacy {
        "asymmetric"
    } else {
        cx.string("coordinate_transformation_mode", "half_pixel")
    };
    let nearest = if legacy {
        "floor"
    } else {
        cx.string("nearest_mode", "round_prefer_floor")
    };
    let a = cx.float("cubic_coeff_a", -0.75);
    let exclude = cx.int("exclude_outside", 0) != 0;
    let mut cur = x.to_owned();
    for ax in 0..r {
        if out[ax] == shape[ax] && scales[ax] == 1.0 {
            continue;
        }
        let taps = taps(
            mode, coord, nearest, a, exclude, shape[ax], out[ax], scales[ax],
        )?;
        cur = apply_axis(&cur, ax, out[ax], &taps);
    }
    Ok(vec![xv.like(Data::F32(cur))])
}

/// For each output position along one axis: (source index, weight) pairs.
#[allow(clippy::too_many_arguments)]
fn taps(
    mode: &str,
    coord: &str,
    nearest: &str,
    a: f32,
    exclude: bool,
    n_in: usize,
    n_out: usize,
    scale: f32,
) -> Result<Vec<Vec<(usize, f32)>>, String> {
    if n_in == 0 {
        return Ok(vec![Vec::new(); n_out]);
    }
    let last = (n_in - 1) as f32;
    let mut out = Vec::with_capacity(n_out);
    for o in 0..n_out {
        let of = o as f32;
        let x = match coord {
            "half_pixel" => (of + 0.5) / scale - 0.5,
            "pytorch_half_pixel" => {
                if n_out > 1 {
                    (of + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            "align_corners" => {
                if n_out == 1 {
                    0.0
                } else {
                    of * last / (n_out - 1) as f32
                }
            }
            "asymmetric" => of / scale,
            "tf_half_pixel_for_nn" => (of + 0.5) / scale,
            m => {
                return Err(format!(
                    "coordinate_transformation_mode {m} is not supported"
                ))
            }
        };
        out.push(match mode {
            "nearest" => {
                let i = match nearest {
                    "floor" => x.floor(),
                    "ceil" => x.ceil(),
                    "round_prefer_ceil" => (x + 0.5).floor(),
                    _ => {
                        if x.fract() == 0.5 || x.fract() == -0.5 {
                            x.floor()
                        } else {
                            x.round()
                        }
                    }
                };
                vec![(i.clamp(0.0, last) as usize, 1.0)]
            }
            "linear" => {
                let xc = x.clamp(0.0, last);
                let i0 = xc.floor();
                let w = xc - i0;
                let i0 = i0 as usize;
                let i1 = (i0 + 1).min(n_in - 1);
                vec![(i0, 1.0 - w), (i1, w)]
            }
            "cubic" => {
                let i0 = x.floor();
                let t = x - i0;
                let cubic = |d: f32| {
                    let d = d.abs();
                    if d <= 1.0 {
                        ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
                    } else if d < 2.0 {
                        ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let mut v = Vec::with_capacity(4);
                let mut total = 0.0;
                for k in -1i64..=2 {
                    let idx = i0 as i64 + k;
                    let w = cubic(t - k as f32);
                    if exclude && (idx < 0 || idx > last as i64) {
                        continue;
                    }
                    total += w;
                    v.push((idx.clamp(0, last as i64) as usize, w));
                }
                if exclude && total != 0.0 {
                    v.iter_mut().for_each(|p| p.1 /= total);
                }
                v
            }
            m => return Err(format!("mode {m} is not supported")),
        });
    }
    Ok(out)
}

fn apply_axis(x: &ArrayD<f32>, ax: usize, n_out: usize, taps: &[Vec<(usize, f32)>]) -> ArrayD<f32> {
    let mut shape = x.shape().to_vec();
    shape[ax] = n_out;
    let mut y = ArrayD::<f32>::zeros(IxDyn(&shape));
    let f = |mut o: ndarray::ArrayViewMut1<'_, f32>, i: ndarray::ArrayView1<'_, f32>| {
        for (slot, t) in o.iter_mut().zip(taps) {
            *slot = t
                .iter()
                .map(|&(k, w)| i.get(k).copied().unwrap_or(0.0) * w)
                .sum();
        }
    };
    let z = Zip::from(y.lanes_mut(Axis(ax))).and(x.lanes(Axis(ax)));
    if shape.iter().product::<usize>() >= super::PAR_MIN {
        z.par_for_each(f);
    } else {
        z.for_each(f);
    }
    y
}
