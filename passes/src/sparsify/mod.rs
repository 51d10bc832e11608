//! `sparsify`: unstructured magnitude sparsity. The smallest-magnitude weights of Conv,
//! ConvTranspose, Gemm and MatMul constant weights are set to zero; shapes do not change.
//! `sparsity=S` zeroes that fraction of each weight (`global=false`) or of all weights together
//! under one threshold (`global=true`); `target-flops=F` instead zeroes until the FLOPs counted
//! sparse (a layer's FLOPs scale with the fraction of its weights that are nonzero) are `F` of the
//! dense FLOPs, with one sparsity for every layer or one global magnitude threshold. A rewritten
//! weight gets new bytes (little-endian, its own dtype); every other tensor is left as it was read.

pub mod select;

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind, Options};
use crate::registry::{Pass, PassInfo};
use rayon::prelude::*;
use select::Cut;
use spa_ir::ops::{lookup_node, CostCtx};
use spa_ir::{AttrValue, DType, Graph, Model, NodeId, Tensor, TensorData, Type, ValueDef, ValueId};
use std::collections::HashMap;

pub static INFO: PassInfo = PassInfo {
    name: "sparsify",
    summary: "Zero the smallest-magnitude weights of Conv/ConvTranspose/Gemm/MatMul (unstructured sparsity; shapes unchanged)",
    options: &[
        OptionDecl {
            name: "criterion",
            kind: OptionKind::Enum(&["magnitude"]),
            default: "magnitude",
            help: "which weights go first: magnitude (smallest |w|)",
        },
        OptionDecl {
            name: "sparsity",
            kind: OptionKind::Float,
            default: "0.5",
            help: "fraction of the weights to zero, 0 <= S <= 1 (of each weight, or of all of them with global=true)",
        },
        OptionDecl {
            name: "global",
            kind: OptionKind::Bool,
            default: "false",
            help: "one magnitude threshold over all weights instead of the same sparsity per weight",
        },
        OptionDecl {
            name: "target-flops",
            kind: OptionKind::Float,
            default: "0",
            help: "instead of a sparsity: keep this fraction (0 < F <= 1) of the dense FLOPs, counted sparse (a layer's FLOPs times its fraction of nonzero weights); 0 = off; excludes a non-default sparsity",
        },
    ],
    create: |opts: &Options| {
        let bad = |option: &str, expected: &str, value: f64| PassError::BadOption {
            pass: "sparsify".into(),
            option: option.into(),
            expected: expected.into(),
            value: value.to_string(),
        };
        let sparsity = opts.float("sparsity");
        if !(0.0..=1.0).contains(&sparsity) {
            return Err(bad("sparsity", "a fraction between 0 and 1", sparsity));
        }
        let target = opts.float("target-flops");
        if target != 0.0 && !(target > 0.0 && target <= 1.0) {
            return Err(bad(
                "target-flops",
                "a fraction to keep, 0 < F <= 1 (0 = off)",
                target,
            ));
        }
        if target != 0.0 && sparsity != 0.5 {
            return Err(bad(
                "sparsity",
                "to be left at its default: target-flops sets the amount to zero",
                sparsity,
            ));
        }
        Ok(Box::new(Sparsify {
            amount: if target > 0.0 {
                Amount::TargetFlops(target)
            } else {
                Amount::Sparsity(sparsity)
            },
            global: opts.bool("global"),
        }))
    },
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Amount {
    Sparsity(f64),
    TargetFlops(f64),
}

struct Sparsify {
    amount: Amount,
    global: bool,
}

/// A weight that may be sparsified, with the FLOPs that scale with its density.
struct Weight {
    value: ValueId,
    keys: Vec<u32>,
    /// Dense FLOPs of the nodes using it.
    flops: f64,
}

/// Float dtypes whose weights are read as numbers and whose zero is all-zero bytes.
fn sparsifiable_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::Bf16 | DType::F64)
}

/// The weight input of a node: input 1 of Conv/ConvTranspose; the one constant float operand of
/// Gemm or MatMul.
fn weight_input(graph: &Graph, n: NodeId) -> Option<usize> {
    let node = graph.node(n);
    if !node.canonical_domain().is_empty() {
        return None;
    }
    let is_weight = |i: usize| {
        node.input(i)
            .and_then(|v| graph.constant(v))
            .is_some_and(|t| sparsifiable_dtype(t.dtype))
    };
    match node.op_type.as_str() {
        "Conv" | "ConvTranspose" => is_weight(1).then_some(1),
        "Gemm" | "MatMul" => match (is_weight(0), is_weight(1)) {
            (false, true) => Some(1),
            (true, false) => Some(0),
            _ => None,
        },
        _ => None,
    }
}

/// Dense FLOPs of every main-graph node, from the op registry with inferred types.
fn node_flops(model: &Model) -> HashMap<NodeId, f64> {
    let g = &model.graph;
    let inferred = spa_ir::infer::infer_types(model).ok();
    let ty = |v: ValueId| {
        inferred
            .as_ref()
            .and_then(|r| r.ty(v))
            .or_else(|| g.try_value(v).map(|x| &x.ty))
            .and_then(Type::as_tensor)
    };
    let opset = model.opset("").unwrap_or(spa_ir::infer::DEFAULT_OPSET);
    g.node_ids()
        .filter_map(|n| {
            let node = g.node(n);
            let op = lookup_node(node)?;
            let cx = CostCtx::of_node(node, g, opset, ty);
            Some((n, op.cost(&cx).flops as f64))
        })
        .collect()
}

/// The outcome, for the note, statistics and report.
struct Outcome {
    weights: usize,
    skipped: usize,
    rewritten: usize,
    elements: u64,
    zeros_before: u64,
    zeros_after: u64,
    flops_dense: f64,
    flops_sparse_before: f64,
    flops_sparse_after: f64,
}

impl Sparsify {
    /// The cut of every weight.
    fn cuts(&self, weights: &[Weight], rest: f64, dense: f64) -> Vec<Cut> {
        let keys: Vec<&[u32]> = weights.iter().map(|w| w.keys.as_slice()).collect();
        let per_element: Vec<f64> = weights
            .iter()
            .map(|w| w.flops / w.keys.len().max(1) as f64)
            .collect();
        let per_layer = |s: f64| -> Vec<Cut> {
            keys.par_iter()
                .map(|k| select::smallest(&[*k], select::count_for(s, k.len()))[0])
                .collect()
        };
        match self.amount {
            Amount::Sparsity(s) if self.global => {
                let total: usize = keys.iter().map(|k| k.len()).sum();
                select::smallest(&keys, select::count_for(s, total))
            }
            Amount::Sparsity(s) => per_layer(s),
            Amount::TargetFlops(f) if self.global => {
                let t = select::global_threshold(&keys, &per_element, rest, f * dense);
                vec![Cut::at_or_below(t); keys.len()]
            }
            Amount::TargetFlops(f) => {
                let sizes: Vec<usize> = keys.iter().map(|k| k.len()).collect();
                let zeros: Vec<u64> = keys
                    .iter()
                    .map(|k| k.iter().filter(|&&x| x == 0).count() as u64)
                    .collect();
                per_layer(select::uniform_sparsity(
                    &sizes,
                    &zeros,
                    &per_element,
                    rest,
                    f * dense,
                ))
            }
        }
    }
}

/// `t` with the elements where `zero` is set replaced by zeros, as new raw little-endian bytes.
fn zeroed(t: &Tensor, zero: &[bool]) -> Result<Tensor, spa_ir::IrError> {
    let raw = t.raw_bytes()?;
    let size = t.dtype.bits().unwrap_or(0) as usize / 8;
    let mut bytes = raw.into_owned();
    if size == 0 || bytes.len() != zero.len() * size {
        return Err(spa_ir::IrError::BadTensor {
            name: t.name.clone(),
            reason: format!(
                "{} bytes do not hold {} elements of {}",
                bytes.len(),
                zero.len(),
                t.dtype
            ),
        });
    }
    for (chunk, &z) in bytes.chunks_exact_mut(size).zip(zero) {
        if z {
            chunk.fill(0);
        }
    }
    let mut out = t.clone();
    out.data = TensorData::Raw(bytes.into());
    Ok(out)
}

impl Pass for Sparsify {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let ir = |source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        };
        let flops = node_flops(model);
        let dense = spa_ir::ops::model_flops(model) as f64;
        let g = &model.graph;
        let users = g.users();
        // Weights: every use is the weight input of a layer; FLOPs of those layers per weight.
        let mut layer_flops: HashMap<ValueId, f64> = HashMap::new();
        for n in g.node_ids() {
            if let Some(v) = weight_input(g, n).and_then(|i| g.node(n).input(i)) {
                *layer_flops.entry(v).or_default() += flops.get(&n).copied().unwrap_or(0.0);
            }
        }
        let mut candidates: Vec<(ValueId, f64)> = Vec::new();
        let mut skipped = 0;
        for (&v, &f) in &layer_flops {
            let only_weight = !g.outputs.contains(&v)
                && users
                    .get(v.index())
                    .is_some_and(|u| u.iter().all(|&(n, i)| weight_input(g, n) == Some(i)));
            if only_weight {
                candidates.push((v, f));
            } else {
                skipped += 1;
            }
        }
        candidates.sort_by_key(|(v, _)| v.index());
        let weights: Vec<Weight> = candidates
            .par_iter()
            .filter_map(|&(v, f)| g.constant(v).map(|t| (v, f, t)))
            .map(|(value, flops, t)| {
                Ok(Weight {
                    value,
                    keys: t.to_f32()?.into_iter().map(select::key).collect(),
                    flops,
                })
            })
            .collect::<Result<_, spa_ir::IrError>>()
            .map_err(ir)?;
        let sparse_flops = |nonzero: &dyn Fn(usize) -> u64| -> f64 {
            let mut total = dense;
            for (i, w) in weights.iter().enumerate() {
                let n = w.keys.len().max(1) as f64;
                total -= w.flops * (1.0 - nonzero(i) as f64 / n);
            }
            total
        };
        let zeros_before: Vec<u64> = weights
            .iter()
            .map(|w| w.keys.iter().filter(|&&k| k == 0).count() as u64)
            .collect();
        let rest = dense - weights.iter().map(|w| w.flops).sum::<f64>();
        let cuts = self.cuts(&weights, rest, dense);
        let masks: Vec<Vec<bool>> = weights
            .par_iter()
            .zip(&cuts)
            .map(|(w, c)| c.apply(&w.keys))
            .collect();
        // Zero count after: chosen elements plus zeros the cut did not choose.
        let zeros_after: Vec<u64> = weights
            .iter()
            .zip(&masks)
            .map(|(w, m)| w.keys.iter().zip(m).filter(|(&k, &z)| z || k == 0).count() as u64)
            .collect();
        let changed: Vec<usize> = (0..weights.len())
            .filter(|&i| zeros_after[i] > zeros_before[i])
            .collect();
        let rewritten: Vec<(ValueId, Tensor)> = changed
            .par_iter()
            .filter_map(|&i| {
                let w = &weights[i];
                g.constant(w.value).map(|t| (w.value, t, &masks[i]))
            })
            .map(|(v, t, m)| zeroed(t, m).map(|t| (v, t)))
            .collect::<Result<_, _>>()
            .map_err(ir)?;
        let elements: u64 = weights.iter().map(|w| w.keys.len() as u64).sum();
        let outcome = Outcome {
            weights: weights.len(),
            skipped,
            rewritten: rewritten.len(),
            elements,
            zeros_before: zeros_before.iter().sum(),
            zeros_after: zeros_after.iter().sum(),
            flops_dense: dense,
            flops_sparse_before: sparse_flops(&|i| weights[i].keys.len() as u64 - zeros_before[i]),
            flops_sparse_after: sparse_flops(&|i| weights[i].keys.len() as u64 - zeros_after[i]),
        };
        let graph = &mut model.graph;
        for (v, t) in rewritten {
            if graph.value(v).init.is_some() {
                graph.value_mut(v).init = Some(t);
            } else if let ValueDef::Node(n, 0) = graph.value(v).def {
                graph.node_mut(n).set_attr("value", AttrValue::Tensor(t));
            }
        }
        self.report(&outcome, cx);
        Ok(if outcome.rewritten == 0 {
            Preserved::All
        } else {
            Preserved::None
        })
    }
}

impl Sparsify {
    fn report(&self, o: &Outcome, cx: &mut PassContext<'_>) {
        let frac = |a: f64, b: f64| if b > 0.0 { a / b } else { 1.0 };
        let sparsity = frac(o.zeros_after as f64, o.elements as f64);
        let kept = frac(o.flops_sparse_after, o.flops_dense);
        cx.stat("weights considered", o.weights);
        cx.stat("weights used by other ops (left dense)", o.skipped);
        cx.stat("weights rewritten", o.rewritten);
        cx.stat("zeros before", o.zeros_before);
        cx.stat("zeros after", o.zeros_after);
        cx.stat("flops dense", o.flops_dense as u64);
        cx.stat("flops sparse", o.flops_sparse_after.round() as u64);
        let mut target_json = String::new();
        let mut target_line = String::new();
        if let Amount::TargetFlops(f) = self.amount {
            let reached = (kept - f).abs() <= 0.01 * f;
            if !reached {
                cx.warn(format!(
                    "target-flops={f} is not reachable within 1%; the nearest reachable keeps {kept:.4} of the dense FLOPs"
                ));
            }
            target_json = format!(
                "  \"target\": {{\"kind\": \"target-flops\", \"keep\": {f}, \"achieved\": {kept:.6}, \"reached\": {reached}}},\n"
            );
            target_line = format!(
                "\n  target-flops={f}: {} {kept:.4}",
                if reached {
                    "reached"
                } else {
                    "not reachable, nearest"
                }
            );
        }
        cx.note(format!(
            "sparsify: {} weights, {} rewritten: {} of {} elements zero ({:.1}% sparse)\n  FLOPs dense {:>14}  sparse {:>14}  ({:.1}% kept){target_line}",
            o.weights,
            o.rewritten,
            o.zeros_after,
            o.elements,
            100.0 * sparsity,
            o.flops_dense as u64,
            o.flops_sparse_after.round() as u64,
            100.0 * kept,
        ));
        cx.report(format!(
            "{{\n  \"pass\": \"sparsify\",\n  \"weights\": {},\n  \"weights_rewritten\": {},\n  \"elements\": {},\n  \"zeros_before\": {},\n  \"zeros_after\": {},\n  \"sparsity\": {sparsity:.6},\n  \"flops_dense\": {},\n  \"flops_sparse_before\": {},\n  \"flops_sparse_after\": {},\n{target_json}  \"flops_kept\": {kept:.6}\n}}\n",
            o.weights,
            o.rewritten,
            o.elements,
            o.zeros_before,
            o.zeros_after,
            o.flops_dense as u64,
            o.flops_sparse_before.round() as u64,
            o.flops_sparse_after.round() as u64,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_rewrites_only_chosen_elements() {
        let t = Tensor::from_f32(vec![2, 2], &[1.0, -2.0, 3.0, -4.0]);
        let z = zeroed(&t, &[false, true, false, true]).unwrap();
        assert_eq!(z.to_f32().unwrap(), vec![1.0, 0.0, 3.0, 0.0]);
        assert_eq!(z.dims, t.dims);
        assert!(zeroed(&t, &[true]).is_err());
    }
}
