//! The group analysis: coupling facts of every node -> index-space e-graph -> saturate -> atoms.
//! Each atom that is a channel space becomes a group; every value axis is described by a term over
//! atoms (its channel-aware type).

use super::egraph::{rules, SpaceGraph, SpaceNode, SpaceSizes};
use crate::error::PassError;
use egg::{Id, Runner, StopReason};
use spa_ir::coupling::{CoupleCtx, Coupling, Operand, Term};
use spa_ir::{ChannelExpr, Graph, Model, NodeId, SpaceId, Tensor, ValueId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// Runner limits (options of the `group` pass).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub nodes: usize,
    pub iterations: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nodes: 1_000_000,
            iterations: 64,
            time: Duration::from_secs(30),
        }
    }
}

/// A term over atoms (indices into `GroupAnalysis::atoms`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AtomTerm {
    Atom(usize),
    Cat(Vec<AtomTerm>),
    Prod(Vec<AtomTerm>),
}

impl AtomTerm {
    pub fn atoms(&self, out: &mut Vec<usize>) {
        match self {
            AtomTerm::Atom(a) => out.push(*a),
            AtomTerm::Cat(xs) | AtomTerm::Prod(xs) => xs.iter().for_each(|x| x.atoms(out)),
        }
    }
}

/// What an atom is.
#[derive(Clone, Debug, Default)]
pub struct Atom {
    pub size: Option<u64>,
    /// Not a channel axis, and why (the first reason found).
    pub fixed: Option<String>,
    /// Must keep its size, and why.
    pub pinned: BTreeSet<String>,
    /// Pruning it changes results beyond removing the channels, and why.
    pub inexact: BTreeSet<String>,
    /// Its channel space, for atoms that are channels.
    pub space: Option<SpaceId>,
    /// (value, axis) pairs whose term mentions this atom.
    pub members: Vec<(ValueId, usize)>,
}

impl Atom {
    pub fn is_channel(&self) -> bool {
        self.fixed.is_none() && self.size.is_some_and(|s| s > 1)
    }

    pub fn prunable(&self) -> bool {
        self.is_channel() && self.pinned.is_empty()
    }
}

/// The result of grouping the main graph.
#[derive(Clone, Debug, Default)]
pub struct GroupAnalysis {
    pub atoms: Vec<Atom>,
    /// Atom index of each channel space (`SpaceId` order).
    pub spaces: Vec<usize>,
    /// The term of every axis of every value with a known rank.
    pub terms: HashMap<(ValueId, usize), AtomTerm>,
    pub stop_reason: String,
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    /// Unions of differently sized spaces (a model or rule inconsistency), as warnings.
    pub size_conflicts: usize,
}

struct Builder<'a> {
    graph: &'a Graph,
    egraph: SpaceGraph,
    /// Leaf of each (value, axis).
    leaf: HashMap<(ValueId, usize), Id>,
    mentioned: HashSet<Id>,
    fixed: Vec<(Id, String)>,
    pinned: Vec<(Id, String)>,
    inexact: Vec<(Id, String)>,
    next_leaf: u32,
}

impl Builder<'_> {
    fn new_leaf(&mut self, size: Option<u64>) -> Id {
        let n = self.next_leaf;
        self.next_leaf += 1;
        self.egraph.analysis.leaf_sizes.push(size);
        self.egraph.add(SpaceNode::Leaf(n))
    }

    /// The e-class of a term in the context of `node`, or `None` when it names an axis the
    /// node does not have or whose rank is unknown.
    fn term(&mut self, node: NodeId, fresh: &mut HashMap<u32, Id>, t: &Term) -> Option<Id> {
        let id = match t {
            Term::Axis(op, axis) => {
                let n = self.graph.node(node);
                let v = match op {
                    Operand::In(i) => n.input(*i)?,
                    Operand::Out(i) => n.output(*i)?,
                };
                *self.leaf.get(&(v, *axis))?
            }
            Term::Fresh(k, size) => {
                if let Some(&id) = fresh.get(k) {
                    id
                } else {
                    let id = self.new_leaf(Some(*size));
                    fresh.insert(*k, id);
                    id
                }
            }
            Term::Cat(xs) | Term::Prod(xs) => {
                let mut ids = Vec::with_capacity(xs.len());
                for x in xs {
                    ids.push(self.term(node, fresh, x)?);
                }
                if ids.len() == 1 {
                    ids[0]
                } else if matches!(t, Term::Cat(_)) {
                    self.egraph.add(SpaceNode::Cat(ids.into_boxed_slice()))
                } else {
                    self.egraph.add(SpaceNode::Prod(ids.into_boxed_slice()))
                }
            }
        };
        self.mention(t, node, fresh);
        Some(id)
    }

    fn mention(&mut self, t: &Term, node: NodeId, fresh: &HashMap<u32, Id>) {
        match t {
            Term::Axis(op, axis) => {
                let n = self.graph.node(node);
                let v = match op {
                    Operand::In(i) => n.input(*i),
                    Operand::Out(i) => n.output(*i),
                };
                if let Some(&id) = v.and_then(|v| self.leaf.get(&(v, *axis))) {
                    self.mentioned.insert(id);
                }
            }
            Term::Fresh(k, _) => {
                if let Some(&id) = fresh.get(k) {
                    self.mentioned.insert(id);
                }
            }
            Term::Cat(xs) | Term::Prod(xs) => {
                for x in xs {
                    self.mention(x, node, fresh);
                }
            }
        }
    }

    fn pin_value(&mut self, v: ValueId, why: &str) {
        let rank = self
            .graph
            .value(v)
            .ty
            .as_tensor()
            .and_then(|t| t.rank())
            .unwrap_or(0);
        for k in 0..rank {
            if let Some(&id) = self.leaf.get(&(v, k)) {
                self.mentioned.insert(id);
                self.pinned.push((id, why.to_string()));
            }
        }
    }
}

/// Known contents of values (constants and folded shape computations).
pub type KnownValues = HashMap<ValueId, Tensor>;

/// Build the e-graph for `model.graph`, saturate it, and read the groups out.
pub fn analyze(
    model: &Model,
    known: &KnownValues,
    limits: Limits,
    protect: &dyn Fn(&str) -> bool,
) -> Result<GroupAnalysis, PassError> {
    let graph = &model.graph;
    let opset = model.opset("").unwrap_or(17);
    let mut b = Builder {
        graph,
        egraph: SpaceGraph::new(SpaceSizes::default()),
        leaf: HashMap::new(),
        mentioned: HashSet::new(),
        fixed: Vec::new(),
        pinned: Vec::new(),
        inexact: Vec::new(),
        next_leaf: 0,
    };
    // One leaf per axis of every value whose rank is known.
    for v in graph.value_ids() {
        if let Some(shape) = graph.value(v).ty.as_tensor().and_then(|t| t.shape.as_ref()) {
            for (k, ax) in shape.iter().enumerate() {
                let size = ax.dim.known().and_then(|d| u64::try_from(d).ok());
                let id = b.new_leaf(size);
                b.leaf.insert((v, k), id);
            }
        }
    }
    for &v in &graph.inputs {
        let why = format!("graph input '{}'", graph.value(v).name);
        b.pin_value(v, &why);
    }
    for &v in &graph.outputs {
        let why = format!("graph output '{}'", graph.value(v).name);
        b.pin_value(v, &why);
    }
    let names = graph.names();
    let order = graph.topo_order().map_err(|source| PassError::Ir {
        pass: "group".into(),
        source,
    })?;
    for id in order {
        let node = graph.node(id);
        let label = format!("{} '{}'", node.qualified_op(), node.label());
        if protect(&node.name)
            || node
                .outputs
                .iter()
                .flatten()
                .any(|v| protect(&graph.value(*v).name))
        {
            for v in node.outputs.iter().flatten() {
                b.pin_value(*v, &format!("protected {label}"));
            }
        }
        for name in node.captured_names() {
            if let Some(&v) = names.get(name.as_str()) {
                b.pin_value(v, &format!("captured by a subgraph of {label}"));
            }
        }
        let ty = |v: Option<ValueId>| v.and_then(|v| graph.value(v).ty.as_tensor());
        let cx = CoupleCtx {
            node,
            opset,
            inputs: node.inputs.iter().map(|v| ty(*v)).collect(),
            outputs: node.outputs.iter().map(|v| ty(*v)).collect(),
            values: node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| graph.constant(v).or_else(|| known.get(&v))))
                .collect(),
            is_const: node
                .inputs
                .iter()
                .map(|v| v.is_some_and(|v| graph.constant(v).is_some()))
                .collect(),
        };
        let coupling: Option<Coupling> = spa_ir::ops::couple(&cx);
        let Some(c) = coupling else {
            let why = format!("no coupling rule for {label}");
            for v in node.inputs.iter().chain(node.outputs.iter()).flatten() {
                b.pin_value(*v, &why);
            }
            continue;
        };
        let mut fresh = HashMap::new();
        for (x, y) in &c.equal {
            if let (Some(x), Some(y)) = (b.term(id, &mut fresh, x), b.term(id, &mut fresh, y)) {
                b.egraph.union(x, y);
            }
        }
        for (t, why) in &c.fixed {
            if let Some(x) = b.term(id, &mut fresh, t) {
                b.fixed.push((x, format!("{why} ({label})")));
            }
        }
        for (t, why) in &c.pinned {
            if let Some(x) = b.term(id, &mut fresh, t) {
                b.pinned.push((x, format!("{why} ({label})")));
            }
        }
        for (t, why) in &c.inexact {
            if let Some(x) = b.term(id, &mut fresh, t) {
                b.inexact.push((x, format!("{why} ({label})")));
            }
        }
    }
    b.egraph.rebuild();
    let runner = Runner::default()
        .with_egraph(std::mem::replace(
            &mut b.egraph,
            SpaceGraph::new(SpaceSizes::default()),
        ))
        .with_node_limit(limits.nodes)
        .with_iter_limit(limits.iterations)
        .with_time_limit(limits.time)
        .run(&rules());
    let stop_reason = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t:.1}s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".to_string(),
    };
    let iterations = runner.iterations.len();
    let egraph = runner.egraph;
    read_out(
        graph,
        egraph,
        &b.leaf,
        &b.mentioned,
        b.fixed,
        b.pinned,
        b.inexact,
        stop_reason,
        iterations,
    )
}

/// A class's composite nodes with at least two parts (its decompositions).
fn decompositions(egraph: &SpaceGraph, class: Id) -> Vec<&SpaceNode> {
    let class = egraph.find(class);
    egraph[class]
        .nodes
        .iter()
        .filter(|n| match n {
            SpaceNode::Cat(xs) | SpaceNode::Prod(xs) => {
                xs.len() >= 2 && xs.iter().all(|&x| egraph.find(x) != class)
            }
            SpaceNode::Leaf(_) => false,
        })
        .collect()
}

/// The preferred decomposition: the one with most parts, products before concatenations, then
/// the smallest, so that the choice is deterministic.
fn chosen(egraph: &SpaceGraph, class: Id) -> Option<&SpaceNode> {
    let mut ds = decompositions(egraph, class);
    ds.sort_by_key(|n| {
        let (rank, xs) = match n {
            SpaceNode::Prod(xs) => (
                0,
                xs.iter()
                    .map(|&x| usize::from(egraph.find(x)))
                    .collect::<Vec<_>>(),
            ),
            SpaceNode::Cat(xs) => (1, xs.iter().map(|&x| usize::from(egraph.find(x))).collect()),
            SpaceNode::Leaf(_) => (2, Vec::new()),
        };
        (std::cmp::Reverse(xs.len()), rank, xs)
    });
    ds.into_iter().next()
}

#[allow(clippy::too_many_arguments)]
fn read_out(
    graph: &Graph,
    egraph: SpaceGraph,
    leaf: &HashMap<(ValueId, usize), Id>,
    mentioned: &HashSet<Id>,
    fixed: Vec<(Id, String)>,
    pinned: Vec<(Id, String)>,
    inexact: Vec<(Id, String)>,
    stop_reason: String,
    iterations: usize,
) -> Result<GroupAnalysis, PassError> {
    let mut out = GroupAnalysis {
        stop_reason,
        iterations,
        egraph_nodes: egraph.total_size(),
        egraph_classes: egraph.number_of_classes(),
        size_conflicts: egraph.analysis.conflicts.len(),
        ..GroupAnalysis::default()
    };
    let mut atom_of: HashMap<Id, usize> = HashMap::new();
    let mut memo: HashMap<Id, AtomTerm> = HashMap::new();

    // Term of a class over atoms; a class on a decomposition cycle is treated as an atom.
    fn term_of(
        egraph: &SpaceGraph,
        class: Id,
        atoms: &mut Vec<Atom>,
        atom_of: &mut HashMap<Id, usize>,
        memo: &mut HashMap<Id, AtomTerm>,
        visiting: &mut HashSet<Id>,
    ) -> AtomTerm {
        let class = egraph.find(class);
        if let Some(t) = memo.get(&class) {
            return t.clone();
        }
        let atom = |atoms: &mut Vec<Atom>, atom_of: &mut HashMap<Id, usize>| {
            let idx = *atom_of.entry(class).or_insert_with(|| {
                atoms.push(Atom {
                    size: egraph[class].data,
                    ..Atom::default()
                });
                atoms.len() - 1
            });
            AtomTerm::Atom(idx)
        };
        let t = if !visiting.insert(class) {
            return atom(atoms, atom_of);
        } else {
            match chosen(egraph, class) {
                Some(SpaceNode::Prod(xs)) => AtomTerm::Prod(
                    xs.iter()
                        .map(|&x| term_of(egraph, x, atoms, atom_of, memo, visiting))
                        .collect(),
                ),
                Some(SpaceNode::Cat(xs)) => AtomTerm::Cat(
                    xs.iter()
                        .map(|&x| term_of(egraph, x, atoms, atom_of, memo, visiting))
                        .collect(),
                ),
                _ => atom(atoms, atom_of),
            }
        };
        visiting.remove(&class);
        memo.insert(class, t.clone());
        t
    }

    // Terms for every value axis, in value order so that atom numbering is deterministic.
    let mut keys: Vec<(ValueId, usize)> = leaf.keys().copied().collect();
    keys.sort();
    for key in &keys {
        let mut visiting = HashSet::new();
        let t = term_of(
            &egraph,
            leaf[key],
            &mut out.atoms,
            &mut atom_of,
            &mut memo,
            &mut visiting,
        );
        out.terms.insert(*key, t);
    }

    // Every atom under a class, through every decomposition (not just the chosen one).
    fn all_atoms(
        egraph: &SpaceGraph,
        class: Id,
        atom_of: &HashMap<Id, usize>,
        seen: &mut HashSet<Id>,
        out: &mut Vec<usize>,
    ) {
        let class = egraph.find(class);
        if !seen.insert(class) {
            return;
        }
        if let Some(&a) = atom_of.get(&class) {
            out.push(a);
        }
        for n in decompositions(egraph, class) {
            if let SpaceNode::Cat(xs) | SpaceNode::Prod(xs) = n {
                for &x in xs.iter() {
                    all_atoms(egraph, x, atom_of, seen, out);
                }
            }
        }
    }
    let atoms_under = |class: Id| {
        let mut v = Vec::new();
        all_atoms(&egraph, class, &atom_of, &mut HashSet::new(), &mut v);
        v
    };

    // Classes with incompatible decompositions pin everything below them. Decompositions are
    // compared fully flattened (a nested product equals its flat form).
    fn flat(egraph: &SpaceGraph, node: &SpaceNode, out: &mut Vec<Id>, depth: usize) {
        let (prod, xs) = match node {
            SpaceNode::Prod(xs) => (true, xs),
            SpaceNode::Cat(xs) => (false, xs),
            SpaceNode::Leaf(_) => return,
        };
        for &x in xs.iter() {
            let x = egraph.find(x);
            let neutral = if prod { Some(1) } else { Some(0) };
            if egraph[x].data == neutral {
                continue;
            }
            let inner = chosen(egraph, x).filter(|n| {
                matches!(
                    (n, prod),
                    (SpaceNode::Prod(_), true) | (SpaceNode::Cat(_), false)
                )
            });
            match inner {
                Some(n) if depth < 64 => flat(egraph, n, out, depth + 1),
                _ => out.push(x),
            }
        }
    }
    let classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
    for &c in &classes {
        let ds = decompositions(&egraph, c);
        if ds.len() > 1 {
            let canon = |n: &SpaceNode| -> (bool, Vec<Id>) {
                let mut v = Vec::new();
                flat(&egraph, n, &mut v, 0);
                (matches!(n, SpaceNode::Prod(_)), v)
            };
            let first = canon(ds[0]);
            if ds.iter().any(|d| canon(d) != first) {
                for a in atoms_under(c) {
                    out.atoms[a]
                        .pinned
                        .insert("incompatible decompositions (reshape and concat disagree)".into());
                }
            }
        }
    }
    for (id, why) in fixed {
        for a in atoms_under(id) {
            out.atoms[a].fixed.get_or_insert(why.clone());
        }
    }
    for (&(v, k), &id) in leaf {
        if !mentioned.contains(&id) && atom_of.contains_key(&egraph.find(id)) {
            // An axis no rule talks about (a kernel axis, say) is not a channel.
            let a = atom_of[&egraph.find(id)];
            let name = &graph.value(v).name;
            out.atoms[a]
                .fixed
                .get_or_insert(format!("axis {k} of '{name}' is not coupled by any rule"));
        }
    }
    for (id, why) in pinned {
        for a in atoms_under(id) {
            out.atoms[a].pinned.insert(why.clone());
        }
    }
    for (id, why) in inexact {
        for a in atoms_under(id) {
            out.atoms[a].inexact.insert(why.clone());
        }
    }
    for key in &keys {
        let mut atoms = Vec::new();
        out.terms[key].atoms(&mut atoms);
        atoms.sort_unstable();
        atoms.dedup();
        for a in atoms {
            out.atoms[a].members.push(*key);
        }
    }
    // Channel atoms get space ids, in order of first appearance; a channel atom needs a constant
    // member to be worth a group (something to slice).
    let mut order: Vec<usize> = Vec::new();
    for key in &keys {
        let mut atoms = Vec::new();
        out.terms[key].atoms(&mut atoms);
        for a in atoms {
            if !order.contains(&a) {
                order.push(a);
            }
        }
    }
    for a in order {
        let atom = &out.atoms[a];
        let has_const = atom
            .members
            .iter()
            .any(|(v, _)| graph.constant(*v).is_some());
        if atom.is_channel() && has_const {
            out.atoms[a].space = Some(SpaceId(out.spaces.len() as u32));
            out.spaces.push(a);
        }
    }
    Ok(out)
}

impl GroupAnalysis {
    /// The channel expression of a term: atoms with a space print as `gN`, others as their size.
    pub fn expr(&self, t: &AtomTerm) -> ChannelExpr {
        match t {
            AtomTerm::Atom(a) => match self.atoms[*a].space {
                Some(s) => ChannelExpr::Space(s),
                None => ChannelExpr::Lit(self.atoms[*a].size.unwrap_or(0)),
            },
            AtomTerm::Cat(xs) => ChannelExpr::Cat(xs.iter().map(|x| self.expr(x)).collect()),
            AtomTerm::Prod(xs) => ChannelExpr::Prod(xs.iter().map(|x| self.expr(x)).collect()),
        }
    }

    /// Does a term mention any channel space?
    pub fn has_space(&self, t: &AtomTerm) -> bool {
        let mut atoms = Vec::new();
        t.atoms(&mut atoms);
        atoms.iter().any(|&a| self.atoms[a].space.is_some())
    }
}
