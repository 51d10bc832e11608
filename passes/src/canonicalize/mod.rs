//! `canonicalize`: rewrite the op graph with an e-graph (egg). Exported graphs are full of noise
//! that hides structure (Identity, Dropout, Shape chains, transpose pairs, Reshape of Reshape,
//! `x * 1`); pruning leaves more. The pass
//!
//! 1. folds what is constant (the `fold-constants` pass: shape chains with static inputs and any
//!    node whose inputs are all constants),
//! 2. builds an e-graph with one class per value ([`lang`]), saturates the selected rulesets
//!    ([`rules`]) under node, iteration and time limits,
//! 3. extracts the cheapest equivalent of every value (ops cost 10, `Sub`/`Div` 11 so the
//!    multiplicative forms win ties, leaves 0), and rewires the graph to it: uses of a value move
//!    to its cheapest equivalent, nodes a rule made are added, and what is dead is removed.
//!
//! Graph outputs keep their names: when an output's cheapest equivalent is computed by another
//! node, that value takes the output's name. Values read by subgraphs (by name) are left alone.

pub mod lang;
pub mod rules;

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind, Options};
use crate::registry::{Pass, PassInfo};
use crate::transforms::dce::eliminate_dead_code;
use egg::{CostFunction, Extractor, Id, Runner, StopReason, Symbol};
use lang::{AttrSet, Facts, LeafOrigin, ONode, OpFacts, OpGraph, SmallConst};
use spa_ir::{Model, Node, NodeId, Type, Value, ValueDef, ValueId};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub static INFO: PassInfo = PassInfo {
    name: "canonicalize",
    summary: "Simplify the op graph with e-graph rewrites (drop no-ops, fold constants, merge transposes and reshapes, fuse activations)",
    options: &[
        OptionDecl {
            name: "rulesets",
            kind: OptionKind::Str,
            default: "noop,algebraic,layout,fusion",
            help: "comma-separated rulesets: noop (Identity, Dropout, no-op Cast/Expand), algebraic (x*1, x+0, Sub/Div by constants), layout (Transpose and Reshape chains), fusion (Gelu, HardSwish where the opset has them)",
        },
        OptionDecl {
            name: "fold",
            kind: OptionKind::Bool,
            default: "true",
            help: "first fold constant subgraphs (as the fold-constants pass)",
        },
        OptionDecl {
            name: "iter-limit",
            kind: OptionKind::UInt,
            default: "30",
            help: "e-graph runner: maximum iterations",
        },
        OptionDecl {
            name: "node-limit",
            kind: OptionKind::UInt,
            default: "200000",
            help: "e-graph runner: maximum e-nodes",
        },
        OptionDecl {
            name: "time-limit",
            kind: OptionKind::UInt,
            default: "10000",
            help: "e-graph runner: time limit in milliseconds",
        },
    ],
    create: |opts| Ok(Box::new(Canonicalize::new(opts)?)),
};

struct Canonicalize {
    rulesets: Vec<String>,
    fold: bool,
    iters: usize,
    nodes: usize,
    time: Duration,
}

impl Canonicalize {
    fn new(opts: &Options) -> Result<Canonicalize, PassError> {
        let rulesets: Vec<String> = crate::group::patterns(opts.str("rulesets"));
        for r in &rulesets {
            if !rules::RULESETS.contains(&r.as_str()) {
                return Err(PassError::BadOption {
                    pass: INFO.name.into(),
                    option: "rulesets".into(),
                    expected: format!("a list of {}", rules::RULESETS.join(", ")),
                    value: r.clone(),
                });
            }
        }
        Ok(Canonicalize {
            rulesets,
            fold: opts.bool("fold"),
            iters: opts.int("iter-limit").max(0) as usize,
            nodes: opts.int("node-limit").max(0) as usize,
            time: Duration::from_millis(opts.int("time-limit").max(0) as u64),
        })
    }
}

/// What one run of the rewriter did.
#[derive(Debug, Default)]
pub struct RewriteStats {
    pub values_replaced: usize,
    pub nodes_added: usize,
    pub stop_reason: String,
    pub iterations: usize,
    pub egraph_nodes: usize,
}

/// Small constants (at most this many elements) are read into class facts for rule conditions.
const SMALL: u64 = 4096;

fn small_const(t: &spa_ir::Tensor) -> Option<SmallConst> {
    if t.num_elements()? > SMALL || t.is_external() {
        return None;
    }
    let values: Vec<f64> = if t.dtype.is_float() {
        t.to_f32().ok()?.into_iter().map(f64::from).collect()
    } else if t.dtype.is_int() || t.dtype == spa_ir::DType::Bool {
        t.to_i64().ok()?.into_iter().map(|v| v as f64).collect()
    } else {
        return None;
    };
    Some(SmallConst {
        dims: t.dims.clone(),
        values,
    })
}

/// Nodes the e-graph models: one live output (others absent or unused and not graph outputs),
/// no subgraphs, not a `Constant`.
fn modeled(
    model: &Model,
    id: NodeId,
    users: &[Vec<(NodeId, usize)>],
    outputs: &HashSet<ValueId>,
) -> Option<ValueId> {
    let node = model.graph.node(id);
    if node.subgraphs().next().is_some() || node.outputs.is_empty() {
        return None;
    }
    if node.op_type == "Constant" && node.canonical_domain().is_empty() {
        return None;
    }
    let first = (*node.outputs.first()?)?;
    for o in node.outputs.iter().skip(1).flatten() {
        if !users[o.index()].is_empty() || outputs.contains(o) {
            return None;
        }
    }
    Some(first)
}

/// Cost: ops 10 (Sub and Div 11: the multiplicative forms are canonical), leaves 0.
struct OpCost;

impl CostFunction<ONode> for OpCost {
    type Cost = u64;
    fn cost<C>(&mut self, enode: &ONode, mut costs: C) -> u64
    where
        C: FnMut(Id) -> u64,
    {
        match enode {
            ONode::Leaf(_) | ONode::Attrs(_) => 0,
            ONode::Op(sym, kids) => {
                let own = if matches!(sym.as_str(), "Sub" | "Div") {
                    11
                } else {
                    10
                };
                kids.iter()
                    .fold(own, |acc: u64, &k| acc.saturating_add(costs(k)))
            }
        }
    }
}

/// Rewrite `model` with the given rulesets; the caller folds constants first if it wants to.
pub fn rewrite(
    model: &mut Model,
    rulesets: &[String],
    iters: usize,
    nodes: usize,
    time: Duration,
) -> Result<RewriteStats, spa_ir::IrError> {
    let inferred = spa_ir::infer::infer_types(model)?;
    let graph = &model.graph;
    let users = graph.users();
    let outputs: HashSet<ValueId> = graph.outputs.iter().copied().collect();
    let mut captured: HashSet<String> = HashSet::new();
    for id in graph.node_ids() {
        captured.extend(graph.node(id).captured_names());
    }
    let opset = model
        .opset_imports
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(1);

    let facts_of = |v: ValueId| -> Facts {
        let ty = inferred.ty(v).or(Some(&graph.value(v).ty));
        let tt = ty.and_then(Type::as_tensor);
        Facts {
            dtype: tt.and_then(|t| t.dtype),
            shape: tt.and_then(|t| t.static_dims()),
            konst: graph
                .constant(v)
                .or_else(|| inferred.known_value(v))
                .and_then(small_const),
        }
    };

    let mut eg: OpGraph = egg::EGraph::new(OpFacts {
        opset,
        ..Default::default()
    });
    let mut class_of: HashMap<ValueId, Id> = HashMap::new();
    let absent = eg.analysis.add_leaf(LeafOrigin::Absent, Facts::default());
    let absent = eg.add(ONode::Leaf(absent));
    let order = graph.topo_order()?;
    let leaf_class = |eg: &mut OpGraph, class_of: &mut HashMap<ValueId, Id>, v: ValueId| -> Id {
        if let Some(&c) = class_of.get(&v) {
            return c;
        }
        let l = eg.analysis.add_leaf(LeafOrigin::Value(v), facts_of(v));
        let c = eg.add(ONode::Leaf(l));
        class_of.insert(v, c);
        c
    };
    let mut modeled_nodes: Vec<ValueId> = Vec::new();
    for &id in &order {
        let node = graph.node(id);
        let Some(out) = modeled(model, id, &users, &outputs) else {
            continue;
        };
        let mut kids = Vec::with_capacity(node.inputs.len() + 1);
        let a = eg.analysis.add_attrs(AttrSet {
            domain: node.domain.clone(),
            attrs: node.attrs.clone(),
            node: Some(id),
        });
        kids.push(eg.add(ONode::Attrs(a)));
        for inp in &node.inputs {
            kids.push(match inp {
                Some(v) => leaf_class(&mut eg, &mut class_of, *v),
                None => absent,
            });
        }
        let c = eg.add(ONode::Op(Symbol::from(node.op_type.as_str()), kids));
        // The output's own facts (types from inference) seed the class.
        let f = facts_of(out);
        let data = &mut eg[c].data;
        if data.dtype.is_none() {
            data.dtype = f.dtype;
        }
        if data.shape.is_none() {
            data.shape = f.shape;
        }
        if data.konst.is_none() {
            data.konst = f.konst;
        }
        class_of.insert(out, c);
        modeled_nodes.push(out);
    }
    eg.rebuild();

    let mut all_rules = Vec::new();
    for r in rulesets {
        all_rules.extend(rules::ruleset(r).unwrap_or_default());
    }
    let runner = Runner::default()
        .with_egraph(eg)
        .with_iter_limit(iters)
        .with_node_limit(nodes)
        .with_time_limit(time)
        .run(&all_rules);
    let stop_reason = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t:.3} s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".to_string(),
    };
    let mut stats = RewriteStats {
        stop_reason,
        iterations: runner.iterations.len(),
        egraph_nodes: runner.egraph.total_number_of_nodes(),
        ..Default::default()
    };
    let eg = runner.egraph;
    let extractor = Extractor::new(&eg, OpCost);

    // Materialize the cheapest equivalent of every modeled value, in schedule order.
    let names = model
        .graph
        .value_ids()
        .map(|v| model.graph.value(v).name.clone())
        .collect();
    let mut m = Materializer {
        eg: &eg,
        extractor: &extractor,
        memo: HashMap::new(),
        model,
        created: 0,
        in_progress: HashSet::new(),
        subst: HashMap::new(),
        names,
    };
    for &out in &modeled_nodes {
        let class = eg.find(class_of[&out]);
        let Some(rep) = m.materialize_for(class) else {
            continue;
        };
        if rep == out {
            continue;
        }
        let name = m.model.graph.value(out).name.clone();
        if captured.contains(&name) {
            continue;
        }
        if outputs.contains(&out)
            && !crate::transforms::take_output_name(&mut m.model.graph, out, rep)
        {
            continue;
        }
        m.subst.insert(out, rep);
        stats.values_replaced += 1;
    }
    stats.nodes_added = m.created;
    m.apply_substitution();
    if stats.values_replaced > 0 || stats.nodes_added > 0 {
        eliminate_dead_code(&mut model.graph)?;
    }
    Ok(stats)
}

struct Materializer<'a> {
    eg: &'a OpGraph,
    extractor: &'a Extractor<'a, OpCost, ONode, OpFacts>,
    memo: HashMap<Id, Option<ValueId>>,
    model: &'a mut Model,
    created: usize,
    in_progress: HashSet<Id>,
    /// Replaced values: every use of a key moves to its value (applied at the end).
    subst: HashMap<ValueId, ValueId>,
    names: HashSet<String>,
}

impl Materializer<'_> {
    /// The value that computes `class` in the rewritten graph (an original node is reused when
    /// extraction picks it with the inputs it has after substitution).
    fn materialize_for(&mut self, class: Id) -> Option<ValueId> {
        let class = self.eg.find(class);
        if let Some(&v) = self.memo.get(&class) {
            return v;
        }
        if !self.in_progress.insert(class) {
            return None;
        }
        let best = self.extractor.find_best_node(class).clone();
        let result = match &best {
            ONode::Leaf(l) => match self.eg.analysis.leaves.get(l.0 as usize) {
                Some((LeafOrigin::Value(v), _)) => Some(*v),
                Some((LeafOrigin::New(t), f)) => Some(self.new_constant(t.clone(), f)),
                _ => None,
            },
            ONode::Attrs(_) => None,
            ONode::Op(sym, kids) => self.materialize_op(class, sym.as_str(), kids),
        };
        self.in_progress.remove(&class);
        self.memo.insert(class, result);
        result
    }

    fn materialize_op(&mut self, class: Id, op: &str, kids: &[Id]) -> Option<ValueId> {
        let (attr_class, inputs) = kids.split_first()?;
        let aref = self.eg[*attr_class].nodes.iter().find_map(|n| match n {
            ONode::Attrs(a) => Some(*a),
            _ => None,
        })?;
        let mut values = Vec::with_capacity(inputs.len());
        for &k in inputs {
            let k = self.eg.find(k);
            let is_absent = self.eg[k].nodes.iter().any(|n| {
                matches!(n, ONode::Leaf(l) if matches!(self.eg.analysis.leaves.get(l.0 as usize), Some((LeafOrigin::Absent, _))))
            });
            if is_absent {
                values.push(None);
            } else {
                values.push(Some(self.materialize_for(k)?));
            }
        }
        let set = self.eg.analysis.attrs.get(aref.0 as usize)?;
        if let Some(orig) = set.node {
            // An original node: reuse it if its inputs are what extraction chose.
            let node = self.model.graph.try_node(orig)?;
            let current: Vec<Option<ValueId>> = node
                .inputs
                .iter()
                .map(|i| i.map(|v| self.resolve(v)))
                .collect();
            if node.op_type == op && current == values {
                return node.outputs.first().copied().flatten();
            }
        }
        // A new node (made by a rule, or an original one over new inputs).
        let facts = &self.eg[class].data;
        let ty = match (facts.dtype, &facts.shape) {
            (Some(d), Some(s)) => Type::tensor(d, s),
            _ => Type::Unknown,
        };
        let base = set
            .node
            .and_then(|n| self.model.graph.try_node(n))
            .map(|n| n.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| op.to_lowercase());
        let name = self.fresh_name(&format!("{base}_canon"));
        let graph = &mut self.model.graph;
        let out = graph.add_value(Value::new(name.clone(), ty, ValueDef::Undefined));
        let mut node = Node::new(op);
        node.name = name;
        node.domain = set.domain.clone();
        node.attrs = set.attrs.clone();
        node.inputs = values;
        node.outputs = vec![Some(out)];
        let nid = graph.add_node(node);
        graph.value_mut(out).def = ValueDef::Node(nid, 0);
        self.created += 1;
        Some(out)
    }

    fn new_constant(&mut self, mut t: spa_ir::Tensor, f: &Facts) -> ValueId {
        let name = self.fresh_name("canon_const");
        t.name = name.clone();
        let ty = match (f.dtype, &f.shape) {
            (Some(d), Some(s)) => Type::tensor(d, s),
            _ => Type::tensor(t.dtype, &t.dims),
        };
        let mut v = Value::new(name, ty, ValueDef::Const);
        v.init = Some(t);
        self.model.graph.add_value(v)
    }

    fn fresh_name(&mut self, base: &str) -> String {
        crate::transforms::fresh_name(&mut self.names, &format!("{base}_"), self.created)
    }

    fn resolve(&self, mut v: ValueId) -> ValueId {
        let mut steps = 0;
        while let Some(&to) = self.subst.get(&v) {
            if to == v || steps > self.subst.len() {
                break;
            }
            v = to;
            steps += 1;
        }
        v
    }

    fn apply_substitution(&mut self) {
        if self.subst.is_empty() {
            return;
        }
        let resolved: HashMap<ValueId, ValueId> =
            self.subst.keys().map(|&k| (k, self.resolve(k))).collect();
        let graph = &mut self.model.graph;
        let ids: Vec<NodeId> = graph.node_ids().collect();
        for id in ids {
            for i in graph.node_mut(id).inputs.iter_mut().flatten() {
                if let Some(&to) = resolved.get(i) {
                    *i = to;
                }
            }
        }
    }
}

impl Pass for Canonicalize {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let ir = |source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        };
        let before = model.graph.num_nodes();
        let mut folded = 0;
        if self.fold {
            folded = crate::transforms::fold_constants::fold_constants(model).map_err(ir)?;
        }
        let stats =
            rewrite(model, &self.rulesets, self.iters, self.nodes, self.time).map_err(ir)?;
        let after = model.graph.num_nodes();
        cx.stat("nodes before", before);
        cx.stat("nodes after", after);
        cx.stat("values folded", folded);
        cx.stat("values replaced", stats.values_replaced);
        cx.stat("nodes added", stats.nodes_added);
        cx.stat("e-graph nodes", stats.egraph_nodes);
        cx.stat("iterations", stats.iterations);
        cx.stat("stop reason", &stats.stop_reason);
        Ok(
            if before == after && stats.values_replaced == 0 && folded == 0 {
                Preserved::All
            } else {
                Preserved::None
            },
        )
    }
}
