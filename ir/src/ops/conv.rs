//! Conv and ConvTranspose: output spatial sizes from kernel, strides, pads, dilations, auto_pad.

use super::{InferCtx, InferResult, Inferred};
use crate::graph::Node;
use crate::types::{Dim, TensorType};

/// Spatial output size of a window op (Conv, pooling).
#[allow(clippy::too_many_arguments)]
pub fn window_out(
    input: &Dim,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pad_begin: i64,
    pad_end: i64,
    auto_pad: &str,
    ceil: bool,
) -> Result<Dim, String> {
    let Dim::Known(n) = input else {
        return Ok(Dim::Unknown);
    };
    if stride <= 0 || dilation <= 0 || kernel <= 0 {
        return Err(format!(
            "invalid window (kernel {kernel}, stride {stride}, dilation {dilation})"
        ));
    }
    let eff = dilation * (kernel - 1) + 1;
    let out = match auto_pad {
        "SAME_UPPER" | "SAME_LOWER" => (n + stride - 1) / stride,
        "VALID" => (n - eff) / stride + 1,
        _ => {
            let span = n + pad_begin + pad_end - eff;
            if span < 0 {
                return Err(format!(
                    "window of {eff} does not fit input of {n} with pads {pad_begin}+{pad_end}"
                ));
            }
            if ceil {
                let o = (span + stride - 1) / stride + 1;
                // The last window must start inside the input or the left padding.
                if (o - 1) * stride >= n + pad_begin {
                    o - 1
                } else {
                    o
                }
            } else {
                span / stride + 1
            }
        }
    };
    if out <= 0 {
        return Err(format!("output size {out} from input {n}"));
    }
    Ok(Dim::Known(out))
}

pub fn attr_list(node: &Node, name: &str, n: usize, default: i64) -> Vec<i64> {
    node.attr_ints(name)
        .map(|v| v.to_vec())
        .filter(|v| v.len() == n)
        .unwrap_or_else(|| vec![default; n])
}

pub fn infer(op: &str, cx: &InferCtx<'_>) -> Option<InferResult> {
    match op {
        "Conv" => Some(conv(cx, false)),
        "ConvTranspose" => Some(conv(cx, true)),
        _ => None,
    }
}

fn conv(cx: &InferCtx<'_>, transpose: bool) -> InferResult {
    let dtype = cx.dtype(0);
    let (Some(x), Some(w)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!(
            "input has rank {} but weight has rank {}",
            x.len(),
            w.len()
        ));
    }
    let n = x.len() - 2;
    let group = cx.attr_int("group", 1);
    if group <= 0 {
        return Err(format!("invalid group {group}"));
    }
    let kernel: Vec<i64> = match cx.node.attr_ints("kernel_shape") {
        Some(k) if k.len() == n => k.to_vec(),
        _ => w[2..].iter().map(|d| d.known().unwrap_or(1)).collect(),
    };
    let strides = attr_list(cx.node, "strides", n, 1);
    let dil = attr_list(cx.node, "dilations", n, 1);
    let pads = attr_list(cx.node, "pads", 2 * n, 0);
    let auto_pad = cx.node.attr_str("auto_pad").unwrap_or("NOTSET");
    let (cin, wcin) = (x[1].known(), w[if transpose { 0 } else { 1 }].known());
    if let (Some(c), Some(wc)) = (cin, wcin) {
        let expect = if transpose { c } else { wc * group };
        if (transpose && wc != c) || (!transpose && expect != c) {
            return Err(format!(
                "weight expects {} input channels (group {group}) but input has {c}",
                if transpose { wc } else { expect }
            ));
        }
    }
    let cout = if transpose {
        match w[1] {
            Dim::Known(m) => Dim::Known(m * group),
            _ => Dim::Unknown,
        }
    } else {
        w[0].clone()
    };
    let mut out = vec![x[0].clone(), cout];
    for k in 0..n {
        if transpose {
            let Dim::Known(i) = x[2 + k] else {
                out.push(Dim::Unknown);
                continue;
            };
            let op = attr_list(cx.node, "output_padding", n, 0)[k];
            if let Some(shape) = cx.node.attr_ints("output_shape") {
                out.push(Dim::Known(
                    *shape.get(shape.len().saturating_sub(n) + k).unwrap_or(&i),
                ));
                continue;
            }
            let o = match auto_pad {
                "SAME_UPPER" | "SAME_LOWER" => i * strides[k],
                _ => {
                    strides[k] * (i - 1) + op + ((kernel[k] - 1) * dil[k] + 1)
                        - pads[k]
                        - pads[n + k]
                }
            };
            out.push(Dim::Known(o));
        } else {
            out.push(window_out(
                &x[2 + k],
                kernel[k],
                strides[k],
                dil[k],
                pads[k],
                pads[n + k],
                auto_pad,
                false,
            )?);
        }
    }
    Ok(vec![Inferred::tensor(dtype, Some(out))])
}

/// 2 * MACs: every output element takes (input channels per group * kernel volume) MACs.
pub fn flops(
    node: &Node,
    inputs: &[Option<&TensorType>],
    outputs: &[Option<&TensorType>],
) -> Option<u64> {
    let w = inputs.get(1).copied().flatten()?.dims_or_one()?;
    let y = outputs.first().copied().flatten()?.dims_or_one()?;
    let x = inputs.first().copied().flatten()?.dims_or_one()?;
    let per_out: i64 = if node.op_type == "ConvTranspose" {
        // Each input element scatters into (out channels per group * kernel) outputs.
        let macs = x.iter().product::<i64>() * w[1..].iter().product::<i64>();
        return u64::try_from(macs.checked_mul(2)?).ok();
    } else {
        w[1..].iter().product()
    };
    let macs = y.iter().product::<i64>().checked_mul(per_out)?;
    let bias = if node.input(2).is_some() {
        y.iter().product::<i64>()
    } else {
        0
    };
    u64::try_from(macs.checked_mul(2)?.checked_add(bias)?).ok()
}
