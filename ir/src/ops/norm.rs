//! Normalizations: `BatchNormalization`, `InstanceNormalization` (per-channel parameters checked
//! against the channel axis), `LayerNormalization` (with its optional mean and inverse-std
//! outputs), `GroupNormalization`, and the shape-preserving `LpNormalization`,
//! `MeanVarianceNormalization`, `LRN`, `RMSNormalization`.

use super::{broadcast, norm_axis, show, show_input, Cost, CostCtx, InferCtx, Inferred, Op, Table};
use crate::dtype::DType;
use crate::types::Dim;

static BATCH_NORM: Op = Op::new(batch_norm).with_cost(cost_2);
static INSTANCE_NORM: Op = Op::new(instance_norm).with_cost(cost_5);
static LAYER_NORM: Op = Op::new(layer_norm).with_cost(cost_5);
static SAME: Op = Op::new(same).with_cost(cost_5);

pub(crate) static OPS: Table = &[
    ("BatchNormalization", &BATCH_NORM),
    ("InstanceNormalization", &INSTANCE_NORM),
    ("LayerNormalization", &LAYER_NORM),
    ("GroupNormalization", &SAME),
    ("LpNormalization", &SAME),
    ("MeanVarianceNormalization", &SAME),
    ("LRN", &SAME),
    ("RMSNormalization", &SAME),
];

/// Inputs `params` (by position, with names for messages) must be `[C]`.
fn check_channel_params(cx: &InferCtx<'_>, params: &[(usize, &str)]) -> Result<(), String> {
    let Some(c) = cx.dims(0).and_then(|x| x.get(1).cloned()) else {
        return Ok(());
    };
    for &(i, name) in params {
        let Some(p) = cx.dims(i) else { continue };
        let ok = matches!(p.as_slice(), [d] if d.compatible(&c));
        if !ok {
            return Err(format!(
                "{} {name} {} does not match the input's {c} channels",
                cx.op(),
                show_input(cx, i)
            ));
        }
    }
    Ok(())
}

fn batch_norm(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    check_channel_params(
        cx,
        &[(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")],
    )?;
    // Training-mode outputs (running or saved statistics) are all [C].
    let c = cx
        .dims(0)
        .and_then(|x| x.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    let stat = Inferred::of(cx.dtype(3).or(cx.dtype(0)), vec![c]);
    let mut out = vec![Inferred::like(cx.input_type(0))];
    out.extend(std::iter::repeat_n(stat, 4));
    Ok(out)
}

fn instance_norm(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    check_channel_params(cx, &[(1, "scale"), (2, "bias")])?;
    Ok(vec![Inferred::like(cx.input_type(0))])
}

fn layer_norm(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    let y = Inferred::like(cx.input_type(0));
    let Some(x) = cx.dims(0) else {
        return Ok(vec![y]);
    };
    let axis = norm_axis(cx.attr_int("axis", -1), x.len())?;
    let normalized = &x[axis..];
    for (i, name) in [(1, "scale"), (2, "bias")] {
        let Some(p) = cx.dims(i) else { continue };
        let fits = p.len() <= normalized.len()
            && broadcast(&p, normalized)
                .is_some_and(|b| b.iter().zip(normalized).all(|(a, n)| a.compatible(n)));
        if !fits {
            return Err(format!(
                "LayerNormalization {name} {} does not match the normalized shape {}",
                show_input(cx, i),
                show(cx.dtype(0), normalized)
            ));
        }
    }
    // Mean and inverse std keep the leading axes and have 1 on the normalized ones.
    let stash = i32::try_from(cx.attr_int("stash_type", 1))
        .ok()
        .and_then(DType::from_onnx_code)
        .or(Some(DType::F32));
    let mut stat: Vec<Dim> = x[..axis].to_vec();
    stat.extend(std::iter::repeat_n(Dim::Known(1), x.len() - axis));
    let stat = Inferred::of(stash, stat);
    Ok(vec![y, stat.clone(), stat])
}

fn same(cx: &InferCtx<'_>) -> Result<Vec<Inferred>, String> {
    Ok(vec![Inferred::like(cx.input_type(0))])
}

fn cost_n(cx: &CostCtx<'_>, per: u64) -> Cost {
    Cost {
        flops: cx.out_numel(0).unwrap_or(0).saturating_mul(per),
        params: cx.params(),
    }
}

fn cost_2(cx: &CostCtx<'_>) -> Cost {
    cost_n(cx, 2)
}

fn cost_5(cx: &CostCtx<'_>) -> Cost {
    cost_n(cx, 5)
}
