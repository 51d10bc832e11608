//! Convolutions: `Conv` (and `ConvInteger`), `ConvTranspose`, with groups, strides, dilations,
//! explicit pads and `auto_pad`.

use super::{
    attr_list, numel, show_input, AutoPad, Cost, CostCtx, InferCtx, Inferred, Op, Table, Window,
};
use crate::dtype::DType;
use crate::types::Dim;

static CONV: Op = Op::new(conv).with_cost(conv_cost);
static CONV_TRANSPOSE: Op = Op::new(conv_transpose).with_cost(conv_transpose_cost);

pub(crate) static OPS: Table = &[
    ("Conv", &CONV),
    ("ConvInteger", &CONV),
    ("ConvTranspose", &CONV_TRANSPOSE),
];

/// Input and weight dims.
type Operands = (Vec<Dim>, Vec<Dim>);

/// The parts every convolution checks first: input and weight dims of equal rank >= 3.
fn operands(cx: &InferCtx<'_>) -> Result<Option<Operands>, String> {
    let (Some(x), Some(w)) = (cx.dims(0), cx.dims(1)) else {
        return Ok(None);
    };
    let op = cx.op();
    if x.len() < 3 {
        return Err(format!(
            "{op} input {} must have rank 3 or more",
            show_input(cx, 0)
        ));
    }
    if w.len() != x.len() {
        return Err(format!(
            "{op} weight {} has rank {} but the input {} has rank {}",
            show_input(cx, 1),
            w.len(),
            show_input(cx, 0),
            x.len()
        ));
    }
    Ok(Some((x, w)))
}

fn group(cx: &InferCtx<'_>) -> Result<i64, String> {
    let g = cx.attr_int("group", 1);
    if g < 1 {
        return Err(format!("group {g} is not positive"));
    }
    Ok(g)
}

/// Kernel dims: the `kernel_shape` attribute, or the weight's spatial dims.
fn kernel(cx: &InferCtx<'_>, w: &[Dim]) -> Result<Vec<Dim>, String> {
    let spatial = w.get(2..).unwrap_or_default();
    let Some(k) = cx.attr_ints("kernel_shape") else {
        return Ok(spatial.to_vec());
    };
    if k.len() != spatial.len()
        || k.iter()
            .zip(spatial)
            .any(|(&a, b)| !Dim::Known(a).compatible(b))
    {
        return Err(format!(
            "kernel_shape {} does not match the weight {}",
            super::show_ints(k),
            show_input(cx, 1)
        ));
    }
    Ok(k.iter().map(|&d| Dim::Known(d)).collect())
}

/// Strides, dilations and pads of `n` spatial axes.
fn windows(cx: &InferCtx<'_>, kernel: &[Dim], ceil_mode: bool) -> Result<Vec<Window>, String> {
    let n = kernel.len();
    let strides = attr_list(cx, "strides", n, 1)?;
    let dilations = attr_list(cx, "dilations", n, 1)?;
    let pads = attr_list(cx, "pads", 2 * n, 0)?;
    let auto_pad = AutoPad::from_attr(cx)?;
    Ok((0..n)
        .map(|i| Window {
            kernel: kernel.get(i).cloned().unwrap_or(Dim::Unknown),
            stride: strides.get(i).copied().unwrap_or(1),
            dilation: dilations.get(i).copied().unwrap_or(1),
            pad_begin: pads.get(i).copied().unwrap_or(0),
            pad_end: pads.get(i + n).copied().unwrap_or(0),
            auto_pad,
            ceil_mode,
        })
        .collect())
}

/// The bias (input 2) must be `[channels]`.
fn check_bias(cx: &InferCtx<'_>, channels: &Dim) -> Result<(), String> {
    if let Some(b) = cx.dims(2) {
        let ok = matches!(b.as_slice(), [d] if d.compatible(channels));
        if !ok {
            return Err(format!(
                "{} bias {} does not match {channels} output channels",
                cx.op(),
                show_input(cx, 2)
            ));
        }
    }
    Ok(())
}

fn conv(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = if cx.op() == "ConvInteger" {
        Some(DType::I32)
    } else {
        cx.dtype(0).or(cx.dtype(1))
    };
    let Some((x, w)) = operands(cx)? else {
        // Batch survives even when the weight is unknown.
        let dims = cx.dims(0).map(|x| {
            x.iter()
                .enumerate()
                .map(|(i, d)| if i == 0 { d.clone() } else { Dim::Unknown })
                .collect()
        });
        return Ok(vec![Inferred::tensor(dtype, dims)]);
    };
    let g = group(cx)?;
    let (c, wc, m) = (&x[1], &w[1], &w[0]);
    if let (Dim::Known(c), Dim::Known(wc)) = (c, wc) {
        let total = wc.checked_mul(g);
        if total != Some(*c) {
            return Err(format!(
                "{} weight has {} input channels but input has {c} (group {g})",
                cx.op(),
                total.map_or_else(|| "too many".to_string(), |t| t.to_string())
            ));
        }
    }
    if let Dim::Known(m) = m {
        if m % g != 0 {
            return Err(format!(
                "{} weight has {m} output channels, not divisible by group {g}",
                cx.op()
            ));
        }
    }
    // ConvInteger's third input is a zero point, not a bias.
    if cx.op() == "Conv" {
        check_bias(cx, m)?;
    }
    let k = kernel(cx, &w)?;
    let mut out = vec![x[0].clone(), m.clone()];
    for (i, win) in windows(cx, &k, false)?.iter().enumerate() {
        out.push(win.output(&x[i + 2], i)?);
    }
    Ok(vec![Inferred::of(dtype, out)])
}

fn conv_transpose(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0).or(cx.dtype(1));
    let Some((x, w)) = operands(cx)? else {
        return Ok(vec![Inferred::tensor(
            dtype,
            cx.dims(0).map(|x| {
                x.iter()
                    .enumerate()
                    .map(|(i, d)| if i == 0 { d.clone() } else { Dim::Unknown })
                    .collect()
            }),
        )]);
    };
    let g = group(cx)?;
    // Weight layout is [C, M/group, k...].
    if let (Dim::Known(c), Dim::Known(wc)) = (&x[1], &w[0]) {
        if c != wc {
            return Err(format!(
                "ConvTranspose weight has {wc} input channels but input has {c}"
            ));
        }
    }
    let m = super::dim_mul(&w[1], g)?;
    check_bias(cx, &m)?;
    let k = kernel(cx, &w)?;
    let n = k.len();
    let out_padding = attr_list(cx, "output_padding", n, 0)?;
    let mut out = vec![x[0].clone(), m];
    if let Some(shape) = cx.attr_ints("output_shape") {
        // Either the spatial dims or the full shape.
        let spatial = shape
            .get(shape.len().saturating_sub(n)..)
            .unwrap_or_default();
        if spatial.len() != n {
            return Err(format!(
                "output_shape {} has fewer than {n} entries",
                super::show_ints(shape)
            ));
        }
        out.extend(spatial.iter().map(|&d| Dim::Known(d)));
        return Ok(vec![Inferred::of(dtype, out)]);
    }
    for (i, win) in windows(cx, &k, false)?.iter().enumerate() {
        let op = out_padding.get(i).copied().unwrap_or(0);
        out.push(transposed_extent(win, &x[i + 2], op, i)?);
    }
    Ok(vec![Inferred::of(dtype, out)])
}

/// `stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - pads`.
fn transposed_extent(win: &Window, input: &Dim, out_pad: i64, axis: usize) -> Result<Dim, String> {
    let s = win.stride;
    if s < 1 || win.dilation < 1 {
        return Err(format!(
            "stride and dilation on spatial axis {axis} must be positive"
        ));
    }
    if matches!(win.auto_pad, AutoPad::SameUpper | AutoPad::SameLower) {
        return super::dim_mul(input, s);
    }
    let Dim::Known(k) = win.kernel else {
        return Ok(Dim::Unknown);
    };
    let (pb, pe) = if win.auto_pad == AutoPad::Valid {
        (0, 0)
    } else {
        (win.pad_begin, win.pad_end)
    };
    let overflow = || format!("window arithmetic overflows on spatial axis {axis}");
    let dk = (k - 1)
        .checked_mul(win.dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    let extra = out_pad
        .checked_add(dk)
        .and_then(|v| v.checked_sub(pb))
        .and_then(|v| v.checked_sub(pe))
        .ok_or_else(overflow)?;
    let Dim::Known(n) = input else {
        return Ok(if s == 1 && extra == 1 {
            input.clone()
        } else {
            Dim::Unknown
        });
    };
    let out = n
        .checked_sub(1)
        .and_then(|v| v.checked_mul(s))
        .and_then(|v| v.checked_add(extra))
        .ok_or_else(overflow)?;
    if out < 1 {
        return Err(format!(
            "output size {out} on spatial axis {axis} is not positive"
        ));
    }
    Ok(Dim::Known(out))
}

/// Conv: `2 * out_elements * (C/group) * prod(kernel)`; ConvTranspose: the same with the input's
/// elements (each scatters into `(M/group) * prod(kernel)` outputs). Plus one per output element
/// for a bias.
fn window_cost(cx: &CostCtx<'_>, per_input_element: bool) -> Cost {
    let macs = (|| {
        let w = cx.in_dims(1)?;
        let per = numel(w.get(1..)?)?;
        let n = if per_input_element {
            cx.in_numel(0)?
        } else {
            cx.out_numel(0)?
        };
        n.checked_mul(per)
    })();
    let bias = if cx.node.op_type != "ConvInteger" && cx.node.input(2).is_some() {
        cx.out_numel(0).unwrap_or(0)
    } else {
        0
    };
    Cost {
        flops: macs
            .and_then(|m| m.checked_mul(2))
            .unwrap_or(0)
            .saturating_add(bias),
        params: cx.params(),
    }
}

fn conv_cost(cx: &CostCtx<'_>) -> Cost {
    window_cost(cx, false)
}

fn conv_transpose_cost(cx: &CostCtx<'_>) -> Cost {
    window_cost(cx, true)
}
