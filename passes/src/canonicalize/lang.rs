//! The op-graph e-graph: one e-class per tensor value. A modeled node is an e-node
//! `(OpType @attrs input...)`; graph inputs, constants, omitted inputs and outputs of nodes the
//! e-graph does not model (subgraphs, several outputs) are opaque leaves `%N`. Attributes are a
//! leaf `@N` (an index into [`OpFacts::attrs`]), so rules can read them and patterns can ignore
//! them; every node gets its own attribute leaf, so no two nodes are merged by hash-consing (that
//! is the `cse` pass's job, which knows which ops are deterministic).

use egg::{define_language, Analysis, DidMerge, EGraph, Id, Subst, Symbol, Var};
use spa_ir::{Attribute, DType, NodeId, Tensor, ValueId};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// An opaque value (`%N`, an index into [`OpFacts::leaves`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Leaf(pub u32);

/// A node's attribute set (`@N`, an index into [`OpFacts::attrs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttrRef(pub u32);

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

impl FromStr for Leaf {
    type Err = ();
    fn from_str(s: &str) -> Result<Leaf, ()> {
        s.strip_prefix('%')
            .and_then(|n| n.parse().ok())
            .map(Leaf)
            .ok_or(())
    }
}

impl fmt::Display for AttrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl FromStr for AttrRef {
    type Err = ();
    fn from_str(s: &str) -> Result<AttrRef, ()> {
        s.strip_prefix('@')
            .and_then(|n| n.parse().ok())
            .map(AttrRef)
            .ok_or(())
    }
}

define_language! {
    /// A node of the op-graph e-graph.
    pub enum ONode {
        Leaf(Leaf),
        Attrs(AttrRef),
        Op(Symbol, Vec<Id>),
    }
}

/// What an opaque leaf stands for.
#[derive(Clone, Debug)]
pub enum LeafOrigin {
    /// An existing value.
    Value(ValueId),
    /// An omitted optional input.
    Absent,
    /// A constant a rule made; it becomes an initializer if extraction keeps it.
    New(Tensor),
}

/// A small numeric constant, for rule conditions (`x * 1`, `x + 0`, power-of-two divisors).
#[derive(Clone, Debug, PartialEq)]
pub struct SmallConst {
    pub dims: Vec<i64>,
    pub values: Vec<f64>,
}

/// Facts about an e-class: every member computes the same tensor, so they agree on these.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub dtype: Option<DType>,
    /// Static dims, when every one is known.
    pub shape: Option<Vec<i64>>,
    pub konst: Option<SmallConst>,
}

/// The attribute set of one node (original or made by a rule).
#[derive(Clone, Debug)]
pub struct AttrSet {
    pub domain: String,
    pub attrs: Vec<Attribute>,
    /// The node these attributes were read from (`None` for nodes a rule made).
    pub node: Option<NodeId>,
}

impl AttrSet {
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| match &a.value {
                spa_ir::AttrValue::Ints(v) => Some(v.as_slice()),
                _ => None,
            })
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| match &a.value {
                spa_ir::AttrValue::Int(v) => Some(*v),
                _ => None,
            })
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| match &a.value {
                spa_ir::AttrValue::Float(v) => Some(*v),
                _ => None,
            })
    }
}

/// The e-graph analysis: side tables for leaves and attributes, and per-class [`Facts`].
#[derive(Default)]
pub struct OpFacts {
    pub leaves: Vec<(LeafOrigin, Facts)>,
    pub attrs: Vec<AttrSet>,
    /// The default-domain opset of the model (rules that introduce ops check it).
    pub opset: i64,
    /// Constants made by rules, by content: a rule that fires again makes the same leaf, so the
    /// e-graph does not grow forever around cycles (`Reshape(x) = x` makes one).
    pub(super) new_consts: HashMap<(DType, Vec<i64>, Vec<u64>), Leaf>,
    /// Attribute sets made by rules, by content, for the same reason.
    pub(super) new_attrs: HashMap<String, AttrRef>,
}

pub type OpGraph = EGraph<ONode, OpFacts>;

impl OpFacts {
    pub fn add_leaf(&mut self, origin: LeafOrigin, facts: Facts) -> Leaf {
        self.leaves.push((origin, facts));
        Leaf(self.leaves.len() as u32 - 1)
    }

    /// A constant a rule made; equal contents give the same leaf.
    pub fn add_new_const(&mut self, tensor: Tensor, facts: Facts) -> Leaf {
        let key = facts.konst.as_ref().map(|k| {
            let bits = k.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (tensor.dtype, k.dims.clone(), bits)
        });
        if let Some(&leaf) = key.as_ref().and_then(|k| self.new_consts.get(k)) {
            return leaf;
        }
        let leaf = self.add_leaf(LeafOrigin::New(tensor), facts);
        if let Some(k) = key {
            self.new_consts.insert(k, leaf);
        }
        leaf
    }

    /// An attribute set; sets made by rules (`node: None`) with equal contents are shared.
    pub fn add_attrs(&mut self, set: AttrSet) -> AttrRef {
        let key = set
            .node
            .is_none()
            .then(|| format!("{}|{:?}", set.domain, set.attrs));
        if let Some(&a) = key.as_ref().and_then(|k| self.new_attrs.get(k)) {
            return a;
        }
        self.attrs.push(set);
        let a = AttrRef(self.attrs.len() as u32 - 1);
        if let Some(k) = key {
            self.new_attrs.insert(k, a);
        }
        a
    }
}

impl Analysis<ONode> for OpFacts {
    type Data = Facts;

    fn make(egraph: &mut OpGraph, enode: &ONode, _id: Id) -> Facts {
        match enode {
            ONode::Leaf(l) => egraph
                .analysis
                .leaves
                .get(l.0 as usize)
                .map(|(_, f)| f.clone())
                .unwrap_or_default(),
            _ => Facts::default(),
        }
    }

    fn merge(&mut self, to: &mut Facts, from: Facts) -> DidMerge {
        let mut changed = false;
        if to.dtype.is_none() && from.dtype.is_some() {
            to.dtype = from.dtype;
            changed = true;
        }
        if to.shape.is_none() && from.shape.is_some() {
            to.shape = from.shape;
            changed = true;
        }
        if to.konst.is_none() && from.konst.is_some() {
            to.konst = from.konst;
            changed = true;
        }
        DidMerge(changed, true)
    }
}

/// The class a pattern variable matched.
pub fn var_class(subst: &Subst, name: &str) -> Option<Id> {
    let var: Var = name.parse().ok()?;
    subst.get(var).copied()
}

/// The facts of the class a pattern variable matched.
pub fn var_facts<'a>(egraph: &'a OpGraph, subst: &Subst, name: &str) -> Option<&'a Facts> {
    var_class(subst, name).map(|id| &egraph[id].data)
}

/// The attribute set of an `@N` class.
pub fn attrs_of(egraph: &OpGraph, id: Id) -> Option<&AttrSet> {
    egraph[id].nodes.iter().find_map(|n| match n {
        ONode::Attrs(a) => egraph.analysis.attrs.get(a.0 as usize),
        _ => None,
    })
}
