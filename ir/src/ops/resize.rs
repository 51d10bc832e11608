//! `Resize` (opset 10: scales; 11+: roi, scales, sizes; 18+: `axes` and
//! `keep_aspect_ratio_policy`) and the older `Upsample`. Exporters pass an empty tensor for the
//! input they do not use; an empty tensor counts as absent.

use super::{norm_axes, show_input, InferCtx, Inferred, Op, Table};
use crate::types::Dim;

static RESIZE: Op = Op::new(resize);

pub(crate) static OPS: Table = &[("Resize", &RESIZE), ("Upsample", &RESIZE)];

/// `floor(d * scale)`; a scale of 1 keeps a symbolic dim.
fn scaled(d: &Dim, scale: f64) -> Result<Dim, String> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(format!("scale {scale} is not positive"));
    }
    Ok(match d {
        Dim::Known(n) => {
            let v = (*n as f64 * scale).floor();
            if v > 9.0e15 {
                return Err(format!("scaled size {v} is too large"));
            }
            Dim::Known(v as i64)
        }
        _ if scale == 1.0 => d.clone(),
        _ => Dim::Unknown,
    })
}

fn resize(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let dtype = cx.dtype(0);
    let Some(x) = cx.dims(0) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let upsample = cx.op() == "Upsample";
    let axes = match cx.attr_ints("axes") {
        Some(a) if !upsample && cx.opset >= 18 => norm_axes(a, x.len())?,
        _ => (0..x.len()).collect(),
    };
    let (scales_at, sizes_at) = match (upsample, cx.opset) {
        (true, _) | (false, ..=10) => (1, None),
        _ => (2, Some(3)),
    };
    let scales_attr = if upsample && cx.opset < 9 {
        cx.node
            .attr_floats("scales")
            .map(|s| s.iter().map(|&v| f64::from(v)).collect())
    } else {
        None
    };
    let has_scales = scales_attr.is_some() || cx.has_nonempty_input(scales_at);
    let has_sizes = sizes_at.is_some_and(|i| cx.has_nonempty_input(i));
    let mut out = x.clone();
    let check_len = |what: &str, n: usize| {
        if n == axes.len() {
            Ok(())
        } else {
            Err(format!(
                "{what} has {n} entries for {} axes of {}",
                axes.len(),
                show_input(cx, 0)
            ))
        }
    };
    if has_sizes {
        let data = sizes_at.and_then(|i| cx.shape_data(i));
        let policy = cx.attr_str("keep_aspect_ratio_policy", "stretch");
        if let Some(d) = data
            .as_ref()
            .filter(|d| d.iter().any(|x| x.known().is_none()))
        {
            // Sizes with symbolic entries (from Shape) still give those dims.
            check_len("sizes", d.len())?;
            if policy == "stretch" || cx.opset < 18 {
                for (&a, s) in axes.iter().zip(d) {
                    out[a] = s.clone();
                }
                return Ok(vec![Inferred::of(dtype, out)]);
            }
        }
        let Some(sizes) =
            data.and_then(|d| d.iter().map(|x| x.known()).collect::<Option<Vec<i64>>>())
        else {
            axes.iter().for_each(|&a| out[a] = Dim::Unknown);
            return Ok(vec![Inferred::of(dtype, out)]);
        };
        check_len("sizes", sizes.len())?;
        if policy == "stretch" || cx.opset < 18 {
            for (&a, &s) in axes.iter().zip(&sizes) {
                out[a] = Dim::Known(s);
            }
        } else {
            // One scale for every axis, the smallest (not_larger) or largest (not_smaller).
            let ratios: Option<Vec<f64>> = axes
                .iter()
                .zip(&sizes)
                .map(|(&a, &s)| Some(s as f64 / x[a].known()? as f64))
                .collect();
            let Some(ratios) = ratios else {
                axes.iter().for_each(|&a| out[a] = Dim::Unknown);
                return Ok(vec![Inferred::of(dtype, out)]);
            };
            let scale = match policy {
                "not_larger" => ratios.iter().copied().fold(f64::INFINITY, f64::min),
                "not_smaller" => ratios.iter().copied().fold(0.0, f64::max),
                other => return Err(format!("unknown keep_aspect_ratio_policy '{other}'")),
            };
            for &a in &axes {
                if let Dim::Known(n) = x[a] {
                    out[a] = Dim::Known((n as f64 * scale).round() as i64);
                }
            }
        }
    } else if has_scales {
        let Some(scales) = scales_attr.or_else(|| cx.floats(scales_at)) else {
            axes.iter().for_each(|&a| out[a] = Dim::Unknown);
            return Ok(vec![Inferred::of(dtype, out)]);
        };
        check_len("scales", scales.len())?;
        for (&a, &s) in axes.iter().zip(&scales) {
            out[a] = scaled(&x[a], s)?;
        }
    } else {
        return Err(format!("{} has neither scales nor sizes", cx.op()));
    }
    Ok(vec![Inferred::of(dtype, out)])
}
