//! The rewrite rules of `canonicalize`, in named rulesets. Every rule is one-directional (towards
//! fewer or simpler ops) and states why it is sound. Patterns are `(OpType ?attrs input...)`; the
//! attribute child is read by conditions and appliers, never compared.

use super::lang::{
    attrs_of, var_class, var_facts, AttrSet, Facts, ONode, OpFacts, OpGraph, SmallConst,
};
use egg::{rewrite as rw, Applier, Id, PatternAst, Rewrite, Subst, Symbol};
use spa_ir::{AttrValue, Attribute, DType, Tensor};

pub type Rule = Rewrite<ONode, OpFacts>;

/// The ruleset names, in the order they are listed in `--help`.
pub const RULESETS: &[&str] = &["noop", "algebraic", "layout", "fusion"];

/// The rules of one ruleset, or `None` for an unknown name.
pub fn ruleset(name: &str) -> Option<Vec<Rule>> {
    Some(match name {
        "noop" => noop(),
        "algebraic" => algebraic(),
        "layout" => layout(),
        "fusion" => fusion(),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Conditions

fn facts<'a>(egraph: &'a OpGraph, subst: &Subst, var: &str) -> Option<&'a Facts> {
    var_facts(egraph, subst, var)
}

/// The value of `?x` has the root's dtype and static shape (so replacing the root by `?x`
/// changes neither the type nor, through broadcasting, the shape).
fn same_type_as_root(var: &'static str) -> impl Fn(&mut OpGraph, Id, &Subst) -> bool {
    move |egraph, root, subst| {
        let (Some(x), r) = (facts(egraph, subst, var), &egraph[root].data) else {
            return false;
        };
        x.dtype.is_some() && x.dtype == r.dtype && x.shape.is_some() && x.shape == r.shape
    }
}

/// `?c` is a constant whose every element equals `v`, and `?x` has the root's type.
fn const_all(
    c: &'static str,
    v: f64,
    x: &'static str,
) -> impl Fn(&mut OpGraph, Id, &Subst) -> bool {
    let same = same_type_as_root(x);
    move |egraph, root, subst| {
        let is_v = facts(egraph, subst, c)
            .and_then(|f| f.konst.as_ref())
            .is_some_and(|k| !k.values.is_empty() && k.values.iter().all(|&e| e == v));
        is_v && same(egraph, root, subst)
    }
}

/// A float scalar-ish constant close to `v` (exporters print constants rounded to f32).
fn const_near(egraph: &OpGraph, subst: &Subst, c: &str, v: f64) -> bool {
    facts(egraph, subst, c)
        .and_then(|f| f.konst.as_ref())
        .is_some_and(|k| {
            k.values.len() == 1 && ((k.values[0] - v).abs() <= 1e-6 * v.abs().max(1.0))
        })
}

fn opset_at_least(egraph: &OpGraph, v: i64) -> bool {
    egraph.analysis.opset >= v
}

fn is_float(egraph: &OpGraph, subst: &Subst, var: &str) -> bool {
    facts(egraph, subst, var)
        .and_then(|f| f.dtype)
        .is_some_and(|d| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::Bf16))
}

// ---------------------------------------------------------------------------------------------
// Appliers that build new nodes

/// Add a new op e-node with fresh attributes; union it with the matched class.
fn add_op(egraph: &mut OpGraph, root: Id, op: &str, attrs: AttrSet, inputs: &[Id]) -> Vec<Id> {
    let a = egraph.analysis.add_attrs(attrs);
    let a = egraph.add(ONode::Attrs(a));
    let mut kids = vec![a];
    kids.extend_from_slice(inputs);
    let id = egraph.add(ONode::Op(Symbol::from(op), kids));
    if egraph.union(root, id) {
        vec![root]
    } else {
        vec![]
    }
}

/// A new constant leaf of the given dtype holding `values`.
fn add_const(egraph: &mut OpGraph, dtype: DType, dims: Vec<i64>, values: &[f64]) -> Option<Id> {
    let tensor = match dtype {
        DType::F32 => {
            let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            Tensor::from_f32(dims.clone(), &v)
        }
        DType::F64 => {
            let raw: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            Tensor::from_raw(DType::F64, dims.clone(), raw.into())
        }
        DType::I64 => {
            let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
            Tensor::from_i64(dims.clone(), &v)
        }
        _ => return None,
    };
    let facts = Facts {
        dtype: Some(dtype),
        shape: Some(dims.clone()),
        konst: Some(SmallConst {
            dims,
            values: values.to_vec(),
        }),
    };
    let leaf = egraph.analysis.add_new_const(tensor, facts);
    Some(egraph.add(ONode::Leaf(leaf)))
}

fn new_attrs(attrs: Vec<Attribute>) -> AttrSet {
    AttrSet {
        domain: String::new(),
        attrs,
        node: None,
    }
}

/// `x - c` into `x + (-c)`.
struct SubToAdd;
/// `x / c` into `x * (1/c)` where every `c` is a power of two.
struct DivToMul;
/// `Transpose(Transpose(x, p1), p2)` into `Transpose(x, p1[p2])`.
struct MergeTransposes;
/// A chain of reshapes into one `Reshape` to the root's static shape.
struct MergeReshapes;
/// Replace the root by a single-input op (`Gelu`, `HardSwish`) of `?x`.
struct Fuse(&'static str);

impl Applier<ONode, OpFacts> for SubToAdd {
    fn apply_one(
        &self,
        eg: &mut OpGraph,
        root: Id,
        s: &Subst,
        _: Option<&PatternAst<ONode>>,
        _: Symbol,
    ) -> Vec<Id> {
        let (Some(x), Some(k), Some(d)) = (
            var_class(s, "?x"),
            facts(eg, s, "?c").and_then(|f| f.konst.clone()),
            facts(eg, s, "?c").and_then(|f| f.dtype),
        ) else {
            return vec![];
        };
        let neg: Vec<f64> = k.values.iter().map(|v| -v).collect();
        match add_const(eg, d, k.dims, &neg) {
            Some(c) => add_op(eg, root, "Add", new_attrs(vec![]), &[x, c]),
            None => vec![],
        }
    }
}

impl Applier<ONode, OpFacts> for DivToMul {
    fn apply_one(
        &self,
        eg: &mut OpGraph,
        root: Id,
        s: &Subst,
        _: Option<&PatternAst<ONode>>,
        _: Symbol,
    ) -> Vec<Id> {
        let (Some(x), Some(k), Some(d)) = (
            var_class(s, "?x"),
            facts(eg, s, "?c").and_then(|f| f.konst.clone()),
            facts(eg, s, "?c").and_then(|f| f.dtype),
        ) else {
            return vec![];
        };
        let mut inv = Vec::with_capacity(k.values.len());
        for &c in &k.values {
            // Exact only if both c and 1/c are powers of two representable in the dtype.
            let r = 1.0 / c;
            let pow2 = |v: f64| v != 0.0 && v.is_finite() && v.abs().log2().fract() == 0.0;
            let repr = match d {
                DType::F32 => (r as f32) as f64 == r && r.abs() >= f32::MIN_POSITIVE as f64,
                DType::F64 => true,
                _ => false,
            };
            if !(pow2(c) && pow2(r) && repr) {
                return vec![];
            }
            inv.push(r);
        }
        match add_const(eg, d, k.dims, &inv) {
            Some(c) => add_op(eg, root, "Mul", new_attrs(vec![]), &[x, c]),
            None => vec![],
        }
    }
}

fn perm_of(attrs: &AttrSet, rank: Option<usize>) -> Option<Vec<i64>> {
    match attrs.ints("perm") {
        Some(p) => Some(p.to_vec()),
        None => rank.map(|r| (0..r as i64).rev().collect()),
    }
}

impl Applier<ONode, OpFacts> for MergeTransposes {
    fn apply_one(
        &self,
        eg: &mut OpGraph,
        root: Id,
        s: &Subst,
        _: Option<&PatternAst<ONode>>,
        _: Symbol,
    ) -> Vec<Id> {
        let (Some(a), Some(b), Some(x)) =
            (var_class(s, "?a"), var_class(s, "?b"), var_class(s, "?x"))
        else {
            return vec![];
        };
        let rank = eg[x].data.shape.as_ref().map(Vec::len);
        let (Some(outer), Some(inner)) = (
            attrs_of(eg, a).and_then(|t| perm_of(t, rank)),
            attrs_of(eg, b).and_then(|t| perm_of(t, rank)),
        ) else {
            return vec![];
        };
        if outer.len() != inner.len() {
            return vec![];
        }
        // y = T(x, inner): y.axis[i] = x.axis[inner[i]]; z = T(y, outer): z.axis[i] = y.axis[outer[i]].
        let mut composed = Vec::with_capacity(outer.len());
        for &o in &outer {
            match usize::try_from(o).ok().and_then(|o| inner.get(o)) {
                Some(&p) => composed.push(p),
                None => return vec![],
            }
        }
        let attrs = new_attrs(vec![Attribute::new("perm", AttrValue::Ints(composed))]);
        add_op(eg, root, "Transpose", attrs, &[x])
    }
}

impl Applier<ONode, OpFacts> for MergeReshapes {
    fn apply_one(
        &self,
        eg: &mut OpGraph,
        root: Id,
        s: &Subst,
        _: Option<&PatternAst<ONode>>,
        _: Symbol,
    ) -> Vec<Id> {
        let Some(x) = var_class(s, "?x") else {
            return vec![];
        };
        let Some(shape) = eg[root].data.shape.clone() else {
            return vec![];
        };
        let values: Vec<f64> = shape.iter().map(|&d| d as f64).collect();
        match add_const(eg, DType::I64, vec![shape.len() as i64], &values) {
            Some(c) => add_op(eg, root, "Reshape", new_attrs(vec![]), &[x, c]),
            None => vec![],
        }
    }
}

impl Applier<ONode, OpFacts> for Fuse {
    fn apply_one(
        &self,
        eg: &mut OpGraph,
        root: Id,
        s: &Subst,
        _: Option<&PatternAst<ONode>>,
        _: Symbol,
    ) -> Vec<Id> {
        match var_class(s, "?x") {
            Some(x) => add_op(eg, root, self.0, new_attrs(vec![]), &[x]),
            None => vec![],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rulesets

/// Ops that compute nothing at inference time.
fn noop() -> Vec<Rule> {
    vec![
        // Identity returns its input.
        rw!("drop-identity"; "(Identity ?a ?x)" => "?x"),
        // Dropout is the identity in inference (no training_mode input, or training_mode false);
        // the rule only sees Dropouts whose mask output is unused.
        rw!("drop-dropout"; "(Dropout ?a ?x)" => "?x"),
        rw!("drop-dropout-ratio"; "(Dropout ?a ?x ?r)" => "?x"),
        rw!("drop-dropout-eval"; "(Dropout ?a ?x ?r ?t)" => "?x" if const_all("?t", 0.0, "?x")),
        // A Cast to the dtype its input already has copies it.
        rw!("drop-cast"; "(Cast ?a ?x)" => "?x" if same_type_as_root("?x")),
        rw!("drop-cast-like"; "(CastLike ?a ?x ?t)" => "?x" if same_type_as_root("?x")),
        // Expand to the shape the input already has copies it.
        rw!("drop-expand"; "(Expand ?a ?x ?s)" => "?x" if same_type_as_root("?x")),
    ]
}

/// Identities of arithmetic with constants. `x * 1`, `x + 0` etc. are dropped only when the
/// constant does not broadcast `x` to a larger shape (the root has `x`'s type).
fn algebraic() -> Vec<Rule> {
    vec![
        rw!("mul-one"; "(Mul ?a ?x ?c)" => "?x" if const_all("?c", 1.0, "?x")),
        rw!("mul-one-left"; "(Mul ?a ?c ?x)" => "?x" if const_all("?c", 1.0, "?x")),
        rw!("add-zero"; "(Add ?a ?x ?c)" => "?x" if const_all("?c", 0.0, "?x")),
        rw!("add-zero-left"; "(Add ?a ?c ?x)" => "?x" if const_all("?c", 0.0, "?x")),
        rw!("sub-zero"; "(Sub ?a ?x ?c)" => "?x" if const_all("?c", 0.0, "?x")),
        rw!("div-one"; "(Div ?a ?x ?c)" => "?x" if const_all("?c", 1.0, "?x")),
        rw!("pow-one"; "(Pow ?a ?x ?c)" => "?x" if const_all("?c", 1.0, "?x")),
        // IEEE subtraction is addition of the negation, so x - c == x + (-c) bit for bit (floats).
        rw!("sub-const-to-add"; "(Sub ?a ?x ?c)" => { SubToAdd }
            if |eg: &mut OpGraph, _: Id, s: &Subst| is_float(eg, s, "?c")
                && facts(eg, s, "?c").is_some_and(|f| f.konst.is_some())),
        // Dividing by a power of two is multiplying by its exact reciprocal (checked per element).
        rw!("div-const-to-mul"; "(Div ?a ?x ?c)" => { DivToMul }
            if |eg: &mut OpGraph, _: Id, s: &Subst| is_float(eg, s, "?c")
                && facts(eg, s, "?c").is_some_and(|f| f.konst.is_some())),
    ]
}

/// Reshape-like ops only reinterpret the row-major order of elements.
const RESHAPES: &[(&str, &str)] = &[
    ("Reshape", "?s"),
    ("Flatten", ""),
    ("Squeeze", ""),
    ("Squeeze", "?s"),
    ("Unsqueeze", ""),
    ("Unsqueeze", "?s"),
];

fn layout() -> Vec<Rule> {
    let mut rules = vec![
        // Two permutations compose into one.
        rw!("merge-transposes"; "(Transpose ?a (Transpose ?b ?x))" => { MergeTransposes }),
        // The identity permutation moves nothing.
        rw!("drop-identity-transpose"; "(Transpose ?a ?x)" => "?x"
        if |eg: &mut OpGraph, _: Id, s: &Subst| {
            var_class(s, "?a")
                .and_then(|a| attrs_of(eg, a))
                .and_then(|t| t.ints("perm"))
                .is_some_and(|p| p.iter().enumerate().all(|(i, &d)| d == i as i64))
        }),
        // Unsqueeze then Squeeze of the same axes (opset 13+ inputs) returns the input.
        rw!("squeeze-of-unsqueeze"; "(Squeeze ?a (Unsqueeze ?b ?x ?u) ?s)" => "?x"
        if |eg: &mut OpGraph, _: Id, s: &Subst| {
            let k = |v| facts(eg, s, v).and_then(|f| f.konst.as_ref()).map(|k| k.values.clone());
            k("?u").is_some() && k("?u") == k("?s")
        }),
    ];
    // Reshaping to the shape a value already has is the identity (row-major order is kept).
    for (op, extra) in RESHAPES {
        let pat = format!(
            "({op} ?a ?x{})",
            if extra.is_empty() {
                String::new()
            } else {
                format!(" {extra}")
            }
        );
        let name = format!(
            "drop-identity-{}{}",
            op.to_lowercase(),
            if extra.is_empty() { "" } else { "-2" }
        );
        if let (Ok(p), Ok(q)) = (
            pat.parse::<egg::Pattern<ONode>>(),
            "?x".parse::<egg::Pattern<ONode>>(),
        ) {
            let cond = egg::ConditionalApplier {
                condition: same_type_as_root("?x"),
                applier: q,
            };
            if let Ok(r) = Rewrite::new(name, p, cond) {
                rules.push(r);
            }
        }
    }
    // Consecutive reshapes are one reshape to the final static shape.
    for (outer, oextra) in RESHAPES {
        for (inner, iextra) in RESHAPES {
            let arg = |e: &str, v: &str| {
                if e.is_empty() {
                    String::new()
                } else {
                    format!(" {v}")
                }
            };
            let pat = format!(
                "({outer} ?a ({inner} ?b ?x{}){})",
                arg(iextra, "?s1"),
                arg(oextra, "?s2")
            );
            let name = format!(
                "merge-reshapes-{}{}-{}{}",
                outer.to_lowercase(),
                if oextra.is_empty() { "" } else { "-2" },
                inner.to_lowercase(),
                if iextra.is_empty() { "" } else { "-2" }
            );
            if let Ok(p) = pat.parse::<egg::Pattern<ONode>>() {
                let cond = egg::ConditionalApplier {
                    condition: |eg: &mut OpGraph, root: Id, _: &Subst| {
                        eg[root].data.shape.is_some()
                    },
                    applier: MergeReshapes,
                };
                if let Ok(r) = Rewrite::new(name, p, cond) {
                    rules.push(r);
                }
            }
        }
    }
    rules
}

/// Decomposed activations into the ops the opset has.
fn fusion() -> Vec<Rule> {
    let gelu_cond = |eg: &mut OpGraph, _: Id, s: &Subst| {
        opset_at_least(eg, 20)
            && is_float(eg, s, "?x")
            && const_near(eg, s, "?r2", std::f64::consts::SQRT_2)
            && const_near(eg, s, "?one", 1.0)
            && const_near(eg, s, "?half", 0.5)
    };
    let hswish_cond = |eg: &mut OpGraph, _: Id, s: &Subst| {
        let ok = var_class(s, "?h")
            .and_then(|h| attrs_of(eg, h))
            .is_some_and(|t| {
                (t.float("alpha").unwrap_or(0.2) as f64 - 1.0 / 6.0).abs() < 1e-6
                    && (t.float("beta").unwrap_or(0.5) as f64 - 0.5).abs() < 1e-6
            });
        ok && opset_at_least(eg, 14) && is_float(eg, s, "?x")
    };
    vec![
        // x * (1 + erf(x / sqrt 2)) * 0.5 is Gelu's definition (opset 20, approximate="none").
        rw!("fuse-gelu"; "(Mul ?m (Mul ?n ?x (Add ?p (Erf ?e (Div ?d ?x ?r2)) ?one)) ?half)"
            => { Fuse("Gelu") } if gelu_cond),
        rw!("fuse-gelu-2"; "(Mul ?m (Mul ?n ?x (Add ?p ?one (Erf ?e (Div ?d ?x ?r2)))) ?half)"
            => { Fuse("Gelu") } if gelu_cond),
        // x * HardSigmoid(x; 1/6, 0.5) is HardSwish's definition (opset 14).
        rw!("fuse-hardswish"; "(Mul ?m ?x (HardSigmoid ?h ?x))" => { Fuse("HardSwish") } if hswish_cond),
        rw!("fuse-hardswish-2"; "(Mul ?m (HardSigmoid ?h ?x) ?x)" => { Fuse("HardSwish") } if hswish_cond),
    ]
}
