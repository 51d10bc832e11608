//! Channel coupling rules, one function per op family, dispatched by op type. A rule states how
//! the index spaces of a node's operands relate (see [`crate::coupling`]); an op without a rule
//! pins every space it touches.

use crate::coupling::{CoupleCtx, Coupling, Operand, Term};
use crate::types::Dim;

const IN: fn(usize, usize) -> Term = Term::input;
const OUT: fn(usize, usize) -> Term = Term::output;

/// The coupling facts of a node, or `None` when no rule applies (the caller pins its spaces).
pub fn couple(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    if !cx.node.canonical_domain().is_empty() {
        return None;
    }
    match cx.node.op_type.as_str() {
        "Conv" => conv(cx, false),
        "ConvTranspose" => conv(cx, true),
        "Gemm" => gemm(cx),
        "MatMul" => matmul(cx),
        "Einsum" => einsum(cx),
        "BatchNormalization" | "InstanceNormalization" => channel_norm(cx),
        "LayerNormalization" => layer_norm(cx),
        "GroupNormalization" => group_norm(cx),
        "Softmax" | "LogSoftmax" | "Hardmax" => softmax(cx),
        "Relu" | "Sigmoid" | "Tanh" | "Erf" | "Gelu" | "HardSigmoid" | "HardSwish" | "Softplus"
        | "Softsign" | "LeakyRelu" | "Elu" | "Selu" | "Celu" | "Mish" | "Exp" | "Log" | "Sqrt"
        | "Neg" | "Abs" | "Reciprocal" | "Floor" | "Ceil" | "Round" | "Sin" | "Cos" | "Not"
        | "Sign" | "IsNaN" | "IsInf" | "Identity" | "Dropout" | "Cast" | "CastLike" | "Clip"
        | "ThresholdedRelu" | "Shrink" => unary(cx),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Mean" | "Sum" | "Equal"
        | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Mod"
        | "Where" | "PRelu" | "BitShift" => broadcast(cx),
        "Concat" => concat(cx),
        "Split" => split(cx),
        "Slice" => slice(cx),
        "Gather" => gather(cx),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => reshape(cx),
        "Transpose" => transpose(cx),
        "Expand" => expand(cx),
        "MaxPool" | "AveragePool" | "LpPool" | "GlobalAveragePool" | "GlobalMaxPool"
        | "GlobalLpPool" => pool(cx),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce(cx),
        "Resize" | "Upsample" => resize(cx),
        "Pad" => pad(cx),
        "Shape" => shape_of(cx),
        "Constant" | "ConstantOfShape" | "Range" | "EyeLike" => Some(Coupling::default()),
        _ => None,
    }
}

fn rank(cx: &CoupleCtx<'_>, op: Operand) -> Option<usize> {
    cx.rank(op)
}

fn has_input(cx: &CoupleCtx<'_>, i: usize) -> bool {
    cx.node.input(i).is_some()
}

/// Normalize a possibly negative axis.
fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

fn conv(cx: &CoupleCtx<'_>, transpose: bool) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let w = cx.dims(Operand::In(1))?;
    let x = cx.dims(Operand::In(0))?;
    if r < 3 || w.len() != r || x.len() != r {
        return None;
    }
    let g = cx.node.attr_int("group").unwrap_or(1);
    let mut c = Coupling::default();
    c.same(OUT(0, 0), IN(0, 0));
    c.fix(IN(0, 0), "batch");
    // Weight layout: Conv [M, C/g, k...], ConvTranspose [C, M/g, k...].
    let (w_in, w_out) = if transpose { (0, 1) } else { (1, 0) };
    let cin = x[1];
    let cout = cx.dims(Operand::Out(0)).map(|d| d[1]).unwrap_or(-1);
    if g == 1 {
        c.same(IN(0, 1), IN(1, w_in));
        c.same(OUT(0, 1), IN(1, w_out));
    } else if g > 1 && cin > 0 && cout > 0 && cin % g == 0 && cout % g == 0 {
        let (gi, go) = ((cin / g) as u64, (cout / g) as u64);
        let groups = Term::Fresh(0, g as u64);
        let per_in = Term::Fresh(1, gi);
        let per_out = Term::Fresh(2, go);
        // Grouped conv: channels are (group * per-group) on both sides; the group axis couples
        // input and output. Depthwise is the case per_in = 1 (per_out = multiplier).
        c.same(IN(0, 1), Term::Prod(vec![groups.clone(), per_in.clone()]));
        c.same(OUT(0, 1), Term::Prod(vec![groups, per_out.clone()]));
        if transpose {
            c.same(IN(1, 0), IN(0, 1));
            c.same(IN(1, 1), per_out);
        } else {
            c.same(IN(1, 0), OUT(0, 1));
            c.same(IN(1, 1), per_in);
        }
    } else {
        return None;
    }
    if has_input(cx, 2) {
        c.same(IN(2, 0), OUT(0, 1));
    }
    for k in 2..r {
        c.fix(IN(0, k), "spatial");
        c.fix(OUT(0, k), "spatial");
        c.fix(IN(1, k), "kernel");
    }
    Some(c)
}

fn gemm(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    if rank(cx, Operand::In(0))? != 2 || rank(cx, Operand::In(1))? != 2 {
        return None;
    }
    let ta = cx.node.attr_int("transA").unwrap_or(0) != 0;
    let tb = cx.node.attr_int("transB").unwrap_or(0) != 0;
    let (am, ak) = if ta { (1, 0) } else { (0, 1) };
    let (bk, bn) = if tb { (1, 0) } else { (0, 1) };
    let mut c = Coupling::default();
    c.same(IN(0, ak), IN(1, bk));
    c.same(OUT(0, 0), IN(0, am));
    c.same(OUT(0, 1), IN(1, bn));
    if cx.is_const(1) && !cx.is_const(0) {
        c.fix(IN(0, am), "rows");
    }
    if has_input(cx, 2) {
        broadcast_into(cx, 2, &mut c);
    }
    Some(c)
}

fn matmul(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let ra = rank(cx, Operand::In(0))?;
    let rb = rank(cx, Operand::In(1))?;
    let ro = rank(cx, Operand::Out(0))?;
    if ra < 2 || rb < 2 || ro != ra.max(rb) {
        return None;
    }
    let mut c = Coupling::default();
    c.same(IN(0, ra - 1), IN(1, rb - 2));
    c.same(OUT(0, ro - 2), IN(0, ra - 2));
    c.same(OUT(0, ro - 1), IN(1, rb - 1));
    // Batch axes broadcast like elementwise ops.
    let da = cx.dims(Operand::In(0))?;
    let db = cx.dims(Operand::In(1))?;
    let dout = cx.dims(Operand::Out(0))?;
    for (k, &dk) in dout.iter().enumerate().take(ro - 2) {
        for (i, d, r) in [(0, &da, ra), (1, &db, rb)] {
            if let Some(j) = (k + r).checked_sub(ro) {
                if j < r - 2 && (d[j] == dk || dk < 0) && d[j] != 1 {
                    c.same(OUT(0, k), IN(i, j));
                }
            }
        }
    }
    if cx.is_const(1) && !cx.is_const(0) {
        c.fix(IN(0, ra - 2), "rows");
    }
    if cx.is_const(0) && !cx.is_const(1) {
        c.fix(IN(1, rb - 1), "columns");
    }
    Some(c)
}

/// Every axis that carries one label, in every operand and the output, is one index space:
/// removing index `c` of a label from all of them computes the original with that index left
/// out (summed over for a contracted label, dropped from the output for a kept one). Einsum
/// has no broadcasting outside the ellipsis, so a label has one size. Equations with an
/// ellipsis or an implicit output get no rule.
fn einsum(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let (ins, rhs) = super::explicit_einsum(cx.node)?;
    for (i, t) in ins.iter().enumerate() {
        if rank(cx, Operand::In(i))? != t.len() {
            return None;
        }
    }
    if rank(cx, Operand::Out(0))? != rhs.len() {
        return None;
    }
    let axes = ins
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.iter().enumerate().map(move |(k, &l)| (l, IN(i, k))))
        .chain(rhs.iter().enumerate().map(|(k, &l)| (l, OUT(0, k))));
    let mut c = Coupling::default();
    let mut first: Vec<(char, Term)> = Vec::new();
    for (l, t) in axes {
        match first.iter().find(|(x, _)| *x == l) {
            Some((_, f)) => c.same(f.clone(), t),
            None => first.push((l, t)),
        }
    }
    Some(c)
}

fn channel_norm(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    if r < 2 {
        return None;
    }
    let mut c = Coupling::default();
    for k in 0..r {
        c.same(OUT(0, k), IN(0, k));
    }
    for i in 1..cx.node.inputs.len() {
        if has_input(cx, i) && rank(cx, Operand::In(i)) == Some(1) {
            c.same(IN(i, 0), IN(0, 1));
        }
    }
    // Training-mode extra outputs (running mean/var) follow the channel axis.
    for o in 1..cx.node.outputs.len() {
        if cx.node.output(o).is_some() && rank(cx, Operand::Out(o)) == Some(1) {
            c.same(OUT(o, 0), IN(0, 1));
        }
    }
    Some(c)
}

fn layer_norm(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let axis = norm_axis(cx.node.attr_int("axis").unwrap_or(-1), r)?;
    let mut c = Coupling::default();
    for k in 0..r {
        c.same(OUT(0, k), IN(0, k));
    }
    for i in 1..3 {
        if has_input(cx, i) {
            let ri = rank(cx, Operand::In(i))?;
            for j in 0..ri {
                if let Some(k) = (r + j).checked_sub(ri).filter(|&k| k >= axis) {
                    c.same(IN(i, j), IN(0, k));
                }
            }
        }
    }
    for k in axis..r {
        c.inexact(IN(0, k), "LayerNorm statistics");
    }
    for o in 1..cx.node.outputs.len() {
        if cx.node.output(o).is_some() {
            for k in 0..axis {
                c.same(OUT(o, k), IN(0, k));
            }
        }
    }
    Some(c)
}

fn group_norm(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let ch = cx.dims(Operand::In(0))?.get(1).copied()?;
    let g = cx.node.attr_int("num_groups")?;
    if r < 2 || g <= 0 || ch <= 0 || ch % g != 0 {
        return None;
    }
    let mut c = Coupling::default();
    for k in 0..r {
        c.same(OUT(0, k), IN(0, k));
    }
    let groups = Term::Fresh(0, g as u64);
    c.same(
        IN(0, 1),
        Term::Prod(vec![groups.clone(), Term::Fresh(1, (ch / g) as u64)]),
    );
    c.fix(groups, "GroupNorm group count");
    for i in 1..3 {
        if has_input(cx, i) && rank(cx, Operand::In(i)) == Some(1) {
            c.same(IN(i, 0), IN(0, 1));
        }
    }
    c.inexact(IN(0, 1), "GroupNorm statistics");
    Some(c)
}

fn softmax(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let axis = norm_axis(cx.node.attr_int("axis").unwrap_or(-1), r)?;
    let mut c = Coupling::default();
    for k in 0..r {
        c.same(OUT(0, k), IN(0, k));
    }
    c.inexact(IN(0, axis), "softmax normalization");
    Some(c)
}

fn unary(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let mut c = Coupling::default();
    for o in 0..cx.node.outputs.len() {
        if cx.node.output(o).is_some() && rank(cx, Operand::Out(o)) == Some(r) {
            for k in 0..r {
                c.same(OUT(o, k), IN(0, k));
            }
        }
    }
    Some(c)
}

/// Couple input `i` into output 0 with numpy broadcasting (size-1 axes broadcast).
fn broadcast_into(cx: &CoupleCtx<'_>, i: usize, c: &mut Coupling) -> Option<()> {
    let ro = rank(cx, Operand::Out(0))?;
    let dout = cx.dims(Operand::Out(0))?;
    let di = cx.dims(Operand::In(i))?;
    let ri = di.len();
    if ri > ro {
        return None;
    }
    for (j, &d) in di.iter().enumerate() {
        let k = ro - ri + j;
        if d == 1 && dout[k] != 1 {
            continue;
        }
        c.same(OUT(0, k), IN(i, j));
    }
    Some(())
}

fn broadcast(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let mut c = Coupling::default();
    for i in 0..cx.node.inputs.len() {
        if has_input(cx, i) {
            broadcast_into(cx, i, &mut c)?;
        }
    }
    Some(c)
}

fn concat(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::Out(0))?;
    let axis = norm_axis(cx.node.attr_int("axis")?, r)?;
    let mut c = Coupling::default();
    let mut parts = Vec::new();
    for i in 0..cx.node.inputs.len() {
        if !has_input(cx, i) || rank(cx, Operand::In(i))? != r {
            return None;
        }
        for k in 0..r {
            if k != axis {
                c.same(OUT(0, k), IN(i, k));
            }
        }
        parts.push(IN(i, axis));
    }
    c.same(OUT(0, axis), Term::Cat(parts));
    Some(c)
}

fn split(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let axis = norm_axis(cx.node.attr_int("axis").unwrap_or(0), r)?;
    let mut c = Coupling::default();
    let mut parts = Vec::new();
    for o in 0..cx.node.outputs.len() {
        cx.node.output(o)?;
        if rank(cx, Operand::Out(o))? != r {
            return None;
        }
        for k in 0..r {
            if k != axis {
                c.same(OUT(o, k), IN(0, k));
            }
        }
        parts.push(OUT(o, axis));
    }
    c.same(IN(0, axis), Term::Cat(parts));
    Some(c)
}

fn slice(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let din = cx.dims(Operand::In(0))?;
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        let s = cx.node.attr_ints("starts")?.to_vec();
        let e = cx.node.attr_ints("ends")?.to_vec();
        let a = cx
            .node
            .attr_ints("axes")
            .map(|a| a.to_vec())
            .unwrap_or_else(|| (0..s.len() as i64).collect());
        let n = s.len();
        (s, e, a, vec![1; n])
    } else {
        let s = cx.ints(1)?;
        let e = cx.ints(2)?;
        let a = if has_input(cx, 3) {
            cx.ints(3)?
        } else {
            (0..s.len() as i64).collect()
        };
        let st = if has_input(cx, 4) {
            cx.ints(4)?
        } else {
            vec![1; s.len()]
        };
        (s, e, a, st)
    };
    if starts.len() != ends.len() || starts.len() != axes.len() || steps.len() != axes.len() {
        return None;
    }
    let mut c = Coupling::default();
    let mut sliced = vec![false; r];
    let mut fresh = 0u32;
    for i in 0..axes.len() {
        let a = norm_axis(axes[i], r)?;
        let d = din[a];
        if d < 0 {
            return None;
        }
        let clamp = |v: i64| if v < 0 { (v + d).max(0) } else { v.min(d) };
        let (s, e) = (clamp(starts[i]), clamp(ends[i]));
        if steps[i] != 1 {
            // Strided slices pick every k-th channel: no simple index map.
            c.pin(IN(0, a), "strided Slice");
            c.pin(OUT(0, a), "strided Slice");
            sliced[a] = true;
            continue;
        }
        let e = e.max(s);
        if s == 0 && e == d {
            continue;
        }
        sliced[a] = true;
        let mut parts = Vec::new();
        if s > 0 {
            parts.push(Term::Fresh(fresh, s as u64));
            fresh += 1;
        }
        parts.push(OUT(0, a));
        if e < d {
            parts.push(Term::Fresh(fresh, (d - e) as u64));
            fresh += 1;
        }
        c.same(IN(0, a), Term::Cat(parts));
    }
    for (k, &s) in sliced.iter().enumerate() {
        if !s {
            c.same(OUT(0, k), IN(0, k));
        }
    }
    Some(c)
}

fn gather(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let ri = rank(cx, Operand::In(1))?;
    let axis = norm_axis(cx.node.attr_int("axis").unwrap_or(0), r)?;
    let mut c = Coupling::default();
    // Output axes: data[..axis], indices axes, data[axis+1..].
    for k in 0..axis {
        c.same(OUT(0, k), IN(0, k));
    }
    for k in axis + 1..r {
        c.same(OUT(0, k + ri - 1), IN(0, k));
    }
    // Constant 1-D indices that pick a contiguous ascending range act like a Slice: the data axis
    // is (before, picked, after) and prune rewrites the indices. Anything else (a single index, a
    // permutation, repeats) keeps the gathered axis whole.
    let n = cx.dims(Operand::In(0))?.get(axis).copied().unwrap_or(-1);
    let range = (ri == 1 && n > 0)
        .then(|| cx.ints(1))
        .flatten()
        .map(|v| {
            v.iter()
                .map(|&i| if i < 0 { i + n } else { i })
                .collect::<Vec<i64>>()
        })
        .filter(|v| {
            !v.is_empty()
                && v.windows(2).all(|w| w[1] == w[0] + 1)
                && v[0] >= 0
                && v[v.len() - 1] < n
        });
    match range {
        Some(v) => {
            let (s, e) = (v[0], v[v.len() - 1] + 1);
            let mut parts = Vec::new();
            if s > 0 {
                parts.push(Term::Fresh(0, s as u64));
            }
            parts.push(OUT(0, axis));
            if e < n {
                parts.push(Term::Fresh(1, (n - e) as u64));
            }
            c.same(IN(0, axis), Term::Cat(parts));
            c.fix(IN(1, 0), "index vector");
        }
        None => {
            c.pin(IN(0, axis), "gathered axis");
            for j in 0..ri {
                c.same(OUT(0, axis + j), IN(1, j));
            }
        }
    }
    Some(c)
}

/// Reshape-like ops (Reshape, Flatten, Squeeze, Unsqueeze): runs of input and output axes with
/// equal products are the same index space in mixed radix. A symbolic dim (a dynamic batch or
/// sequence length) is a run of its own when the other side has the same symbol at the same
/// place, e.g. Flatten `[batch, 64, 1, 1] -> [batch, 64]`, or when the op copies it (a Reshape
/// target entry 0, Flatten's axis 0), even unnamed; any other unknown dim stops the map.
fn reshape(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    // A Reshape whose target is computed at run time cannot be rewritten by prune.
    if cx.node.op_type == "Reshape" && cx.ints(1).is_none() {
        return None;
    }
    let sin = cx.dims_sym(Operand::In(0))?;
    let sout = cx.dims_sym(Operand::Out(0))?;
    let din: Vec<i64> = sin.iter().map(|d| d.known().unwrap_or(-1)).collect();
    let dout: Vec<i64> = sout.iter().map(|d| d.known().unwrap_or(-1)).collect();
    // Output axes that are copies of the input axis at the same place, whatever its size: a
    // Reshape target entry 0 (without allowzero), and axis 0 of Flatten with axis 1.
    let copied = |k: usize| -> bool {
        match cx.node.op_type.as_str() {
            "Reshape" => {
                cx.node.attr_int("allowzero").unwrap_or(0) == 0
                    && cx.ints(1).is_some_and(|t| t.get(k) == Some(&0))
            }
            "Flatten" => k == 0 && cx.node.attr_int("axis").unwrap_or(1) == 1,
            _ => false,
        }
    };
    let mut c = Coupling::default();
    let (mut i, mut j) = (0usize, 0usize);
    while i < din.len() || j < dout.len() {
        // Size-1 axes carry nothing.
        if i < din.len() && din[i] == 1 {
            i += 1;
            continue;
        }
        if j < dout.len() && dout[j] == 1 {
            j += 1;
            continue;
        }
        if i >= din.len() || j >= dout.len() {
            // Zero-size tensors or a shape mismatch: no map.
            return None;
        }
        // The same symbol on both sides, or a copied axis, at the start of a run.
        let same_symbol = matches!(
            (sin.get(i), sout.get(j)),
            (Some(Dim::Sym(a)), Some(Dim::Sym(b))) if a == b
        );
        if (din[i] < 0 || dout[j] < 0) && (same_symbol || (i == j && copied(j))) {
            c.same(IN(0, i), OUT(0, j));
            i += 1;
            j += 1;
            continue;
        }
        if din.get(i).is_some_and(|&d| d < 0) || dout.get(j).is_some_and(|&d| d < 0) {
            return None;
        }
        let (si, sj) = (i, j);
        let (mut pi, mut pj) = (din[i], dout[j]);
        i += 1;
        j += 1;
        while pi != pj {
            if pi < pj {
                let d = *din.get(i).filter(|&&d| d >= 0)?;
                pi = pi.checked_mul(d)?;
                i += 1;
            } else {
                let d = *dout.get(j).filter(|&&d| d >= 0)?;
                pj = pj.checked_mul(d)?;
                j += 1;
            }
        }
        let run = |op: fn(usize, usize) -> Term, from: usize, to: usize, dims: &[i64]| {
            let axes: Vec<Term> = (from..to)
                .filter(|&k| dims[k] != 1)
                .map(|k| op(0, k))
                .collect();
            if axes.len() == 1 {
                axes.into_iter().next().unwrap_or(Term::Fresh(0, 1))
            } else {
                Term::Prod(axes)
            }
        };
        c.same(run(IN, si, i, &din), run(OUT, sj, j, &dout));
    }
    Some(c)
}

fn transpose(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let perm: Vec<i64> = match cx.node.attr_ints("perm") {
        Some(p) => p.to_vec(),
        None => (0..r as i64).rev().collect(),
    };
    if perm.len() != r {
        return None;
    }
    let mut c = Coupling::default();
    for (k, &p) in perm.iter().enumerate() {
        c.same(OUT(0, k), IN(0, norm_axis(p, r)?));
    }
    Some(c)
}

fn expand(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let mut c = Coupling::default();
    broadcast_into(cx, 0, &mut c)?;
    Some(c)
}

fn pool(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    if r < 2 {
        return None;
    }
    let mut c = Coupling::default();
    c.same(OUT(0, 0), IN(0, 0));
    c.same(OUT(0, 1), IN(0, 1));
    c.fix(IN(0, 0), "batch");
    if cx.node.output(1).is_some() {
        // MaxPool indices are flat offsets that depend on the channel count.
        c.pin(IN(0, 1), "MaxPool indices output");
    }
    for k in 2..r {
        c.fix(IN(0, k), "spatial");
        c.fix(OUT(0, k), "spatial");
    }
    Some(c)
}

fn reduce(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let ro = rank(cx, Operand::Out(0))?;
    let axes: Vec<i64> = match cx.node.attr_ints("axes") {
        Some(a) => a.to_vec(),
        None if has_input(cx, 1) => cx.ints(1)?,
        None => {
            if cx.node.attr_int("noop_with_empty_axes").unwrap_or(0) != 0 {
                Vec::new()
            } else {
                (0..r as i64).collect()
            }
        }
    };
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, r))
        .collect::<Option<_>>()?;
    let keep = cx.node.attr_int("keepdims").unwrap_or(1) != 0;
    let mut c = Coupling::default();
    let mut o = 0;
    for k in 0..r {
        if axes.contains(&k) {
            c.inexact(IN(0, k), "reduction over the axis");
            if keep {
                o += 1;
            }
        } else {
            if o >= ro {
                return None;
            }
            c.same(OUT(0, o), IN(0, k));
            o += 1;
        }
    }
    Some(c)
}

fn resize(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let din = cx.dims(Operand::In(0))?;
    let dout = cx.dims(Operand::Out(0))?;
    let mut c = Coupling::default();
    for k in 0..r {
        if din[k] == dout[k] && k < 2 {
            c.same(OUT(0, k), IN(0, k));
        } else {
            c.fix(IN(0, k), "resized axis");
            c.fix(OUT(0, k), "resized axis");
        }
    }
    Some(c)
}

fn pad(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let pads: Vec<i64> = match cx.node.attr_ints("pads") {
        Some(p) => p.to_vec(),
        None => cx.ints(1)?,
    };
    let axes: Vec<usize> = if has_input(cx, 3) {
        cx.ints(3)?
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Option<_>>()?
    } else {
        (0..r).collect()
    };
    if pads.len() != 2 * axes.len() {
        return None;
    }
    let mut c = Coupling::default();
    for k in 0..r {
        let padded = axes
            .iter()
            .position(|&a| a == k)
            .is_some_and(|p| pads[p] != 0 || pads[p + axes.len()] != 0);
        if padded {
            c.fix(IN(0, k), "padded axis");
            c.fix(OUT(0, k), "padded axis");
        } else {
            c.same(OUT(0, k), IN(0, k));
        }
    }
    Some(c)
}

fn shape_of(cx: &CoupleCtx<'_>) -> Option<Coupling> {
    let r = rank(cx, Operand::In(0))?;
    let mut c = Coupling::default();
    // The sizes it reads would change under pruning: those axes keep their size.
    let clamp = |v: i64| if v < 0 { (v + r as i64).max(0) } else { v.min(r as i64) } as usize;
    let start = clamp(cx.node.attr_int("start").unwrap_or(0));
    let end = clamp(cx.node.attr_int("end").unwrap_or(r as i64));
    for k in start..end.max(start) {
        c.pin(IN(0, k), "size read by Shape");
    }
    c.fix(OUT(0, 0), "shape vector");
    Some(c)
}
