//! The graph: arenas of nodes and values addressed by typed `u32` ids. Erasure is by tombstone;
//! `compact` renumbers. Node order in the arena is the schedule as read; `topo_order` gives a valid
//! schedule that keeps that order wherever it is already valid, so passes may append nodes freely.

use crate::attr::SparseTensor;
use crate::attr::{AttrValue, Attribute};
use crate::error::IrError;
use crate::tensor::Tensor;
use crate::types::Type;
use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// How a value comes to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// A graph input (it may also have an initializer: a default, as in IR < 4 models).
    Input,
    /// An initializer (dense or sparse) that is not a graph input.
    Const,
    /// Output `index` of a node.
    Node(NodeId, u32),
    /// Defined in an enclosing graph and referenced by name from this subgraph.
    Capture,
    /// Not defined (yet): a dangling reference the verifier reports.
    Undefined,
}

/// A value: a graph input, a constant, a node output or a capture from an outer scope.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: Type,
    pub def: ValueDef,
    /// The initializer, for constants and for inputs with a default.
    pub init: Option<Tensor>,
    /// A sparse initializer (`GraphProto.sparse_initializer`).
    pub sparse_init: Option<SparseTensor>,
    /// Listed in `value_info` (written back there by the ONNX backend).
    pub declared: bool,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
}

impl Value {
    pub fn new(name: impl Into<String>, ty: Type, def: ValueDef) -> Value {
        Value {
            name: name.into(),
            ty,
            def,
            init: None,
            sparse_init: None,
            declared: false,
            doc_string: String::new(),
            metadata_props: Vec::new(),
        }
    }
}

/// A generic operation. What it means lives in the op registry, keyed by `(domain, op_type)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    /// `""` for the default ONNX domain.
    pub domain: String,
    pub op_type: String,
    /// `NodeProto.overload` (calls to overloaded local functions).
    pub overload: String,
    /// `None` is an omitted optional input (`""` in ONNX).
    pub inputs: Vec<Option<ValueId>>,
    /// `None` is an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    /// In the order read; printed sorted by name.
    pub attrs: Vec<Attribute>,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
}

impl Node {
    pub fn new(op_type: impl Into<String>) -> Node {
        Node {
            name: String::new(),
            domain: String::new(),
            op_type: op_type.into(),
            overload: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            attrs: Vec::new(),
            doc_string: String::new(),
            metadata_props: Vec::new(),
        }
    }

    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attr(name)? {
            AttrValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn attr_float(&self, name: &str) -> Option<f32> {
        match self.attr(name)? {
            AttrValue::Float(v) => Some(*v),
            _ => None,
        }
    }

    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attr(name)? {
            AttrValue::Ints(v) => Some(v),
            _ => None,
        }
    }

    pub fn attr_floats(&self, name: &str) -> Option<&[f32]> {
        match self.attr(name)? {
            AttrValue::Floats(v) => Some(v),
            _ => None,
        }
    }

    pub fn attr_str(&self, name: &str) -> Option<&str> {
        match self.attr(name)? {
            AttrValue::String(v) => std::str::from_utf8(v).ok(),
            _ => None,
        }
    }

    pub fn attr_tensor(&self, name: &str) -> Option<&Tensor> {
        match self.attr(name)? {
            AttrValue::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// Set (replace or append) an attribute.
    pub fn set_attr(&mut self, name: &str, value: AttrValue) {
        match self.attrs.iter_mut().find(|a| a.name == name) {
            Some(a) => a.value = value,
            None => self.attrs.push(Attribute::new(name, value)),
        }
    }

    /// Subgraphs held in attributes (If branches, Loop/Scan bodies).
    pub fn subgraphs(&self) -> impl Iterator<Item = &Graph> {
        self.attrs.iter().flat_map(|a| match &a.value {
            AttrValue::Graph(g) => std::slice::from_ref(g.as_ref()),
            AttrValue::Graphs(gs) => gs.as_slice(),
            _ => &[],
        })
    }

    /// Names this node's subgraphs read from enclosing scopes.
    pub fn captured_names(&self) -> std::collections::BTreeSet<String> {
        self.subgraphs().flat_map(|g| g.captured_names()).collect()
    }

    /// Input `i` if present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    /// Output `i` if present.
    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }

    /// The domain as used for registry lookups (`ai.onnx` is the default domain).
    pub fn canonical_domain(&self) -> &str {
        if self.domain == "ai.onnx" {
            ""
        } else {
            &self.domain
        }
    }

    /// A name for diagnostics: the node name, or its op type and first output when unnamed.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("<unnamed {}>", self.op_type)
        } else {
            self.name.clone()
        }
    }

    /// `domain.op_type` for diagnostics (`Conv`, `com.microsoft.FusedConv`).
    pub fn qualified_op(&self) -> String {
        if self.canonical_domain().is_empty() {
            self.op_type.clone()
        } else {
            format!("{}.{}", self.domain, self.op_type)
        }
    }
}

/// A graph (the main graph, a subgraph of If/Loop/Scan, or a function body).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub doc_string: String,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub metadata_props: Vec<(String, String)>,
    nodes: Vec<Option<Node>>,
    values: Vec<Option<Value>>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    pub fn add_value(&mut self, value: Value) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Some(value));
        id
    }

    /// Append a node; its outputs' `def` are set to point at it.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        for (i, o) in node.outputs.iter().enumerate() {
            if let Some(v) = o {
                if let Some(Some(val)) = self.values.get_mut(v.index()) {
                    val.def = ValueDef::Node(id, i as u32);
                }
            }
        }
        self.nodes.push(Some(node));
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.index()]
            .as_ref()
            .expect("node id refers to an erased node")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.index()]
            .as_mut()
            .expect("node id refers to an erased node")
    }

    pub fn try_node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.index()).and_then(|n| n.as_ref())
    }

    pub fn value(&self, id: ValueId) -> &Value {
        self.values[id.index()]
            .as_ref()
            .expect("value id refers to an erased value")
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        self.values[id.index()]
            .as_mut()
            .expect("value id refers to an erased value")
    }

    pub fn try_value(&self, id: ValueId) -> Option<&Value> {
        self.values.get(id.index()).and_then(|v| v.as_ref())
    }

    /// Live nodes in arena order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| NodeId(i as u32))
    }

    /// Live values in arena order.
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| ValueId(i as u32))
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_some()).count()
    }

    /// Arena capacity (ids are below this), for side tables indexed by id.
    pub fn node_capacity(&self) -> usize {
        self.nodes.len()
    }

    pub fn value_capacity(&self) -> usize {
        self.values.len()
    }

    /// Erase a node. Its outputs become `Undefined` (the caller rewires or erases them).
    pub fn erase_node(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(id.index()).and_then(|n| n.take()) {
            for v in node.outputs.into_iter().flatten() {
                if let Some(Some(val)) = self.values.get_mut(v.index()) {
                    val.def = ValueDef::Undefined;
                }
            }
        }
    }

    pub fn erase_value(&mut self, id: ValueId) {
        if let Some(v) = self.values.get_mut(id.index()) {
            *v = None;
        }
    }

    /// Constants in value order (initializers and sparse initializers).
    pub fn constants(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.value_ids().filter(|&v| {
            let val = self.value(v);
            val.init.is_some() || val.sparse_init.is_some()
        })
    }

    /// The constant a value holds: an initializer or the `value` of a `Constant` node.
    pub fn constant(&self, id: ValueId) -> Option<&Tensor> {
        let v = self.try_value(id)?;
        if v.def == ValueDef::Const {
            return v.init.as_ref();
        }
        if let ValueDef::Node(n, 0) = v.def {
            let node = self.try_node(n)?;
            if node.op_type == "Constant" && node.canonical_domain().is_empty() {
                return node.attr_tensor("value");
            }
        }
        None
    }

    /// Names this graph (and its nested subgraphs) read from enclosing scopes.
    pub fn captured_names(&self) -> std::collections::BTreeSet<String> {
        let mut defined = std::collections::HashSet::new();
        let mut out = std::collections::BTreeSet::new();
        for v in self.value_ids() {
            let val = self.value(v);
            if val.def == ValueDef::Capture {
                out.insert(val.name.clone());
            } else {
                defined.insert(val.name.as_str());
            }
        }
        for id in self.node_ids() {
            for name in self.node(id).captured_names() {
                if !defined.contains(name.as_str()) {
                    out.insert(name);
                }
            }
        }
        out
    }

    /// Integer contents of a constant value: an initializer, or a `Constant` node's `value`,
    /// `value_ints` or `value_int`.
    pub fn constant_ints(&self, id: ValueId) -> Option<Vec<i64>> {
        if let Some(t) = self.constant(id) {
            return t.to_i64().ok();
        }
        let v = self.try_value(id)?;
        let ValueDef::Node(n, 0) = v.def else {
            return None;
        };
        let node = self.try_node(n)?;
        if node.op_type != "Constant" || !node.canonical_domain().is_empty() {
            return None;
        }
        match node.attr("value_ints").or_else(|| node.attr("value_int"))? {
            AttrValue::Ints(v) => Some(v.clone()),
            AttrValue::Int(i) => Some(vec![*i]),
            _ => None,
        }
    }

    /// Users of each value: `(node, input index)`, indexed by `ValueId`.
    pub fn users(&self) -> Vec<Vec<(NodeId, usize)>> {
        let mut users = vec![Vec::new(); self.values.len()];
        for id in self.node_ids() {
            for (i, v) in self.node(id).inputs.iter().enumerate() {
                if let Some(v) = v {
                    if let Some(u) = users.get_mut(v.index()) {
                        u.push((id, i));
                    }
                }
            }
        }
        users
    }

    /// Value ids by name (the first one wins when names repeat).
    pub fn names(&self) -> HashMap<&str, ValueId> {
        let mut map = HashMap::new();
        for v in self.value_ids() {
            map.entry(self.value(v).name.as_str()).or_insert(v);
        }
        map
    }

    /// A schedule: every node after the producers of its inputs, keeping arena order where it is
    /// already valid. Values captured from an outer scope count as defined.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, IrError> {
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); n];
        for id in self.node_ids() {
            for v in self.node(id).inputs.iter().flatten() {
                if let Some(ValueDef::Node(p, _)) = self.try_value(*v).map(|v| v.def) {
                    if self.try_node(p).is_some() {
                        indegree[id.index()] += 1;
                        consumers[p.index()].push(id);
                    }
                }
            }
        }
        // Kahn's algorithm with the smallest ready id first keeps arena order when it is valid.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<u32>> = self
            .node_ids()
            .filter(|id| indegree[id.index()] == 0)
            .map(|id| std::cmp::Reverse(id.0))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            let id = NodeId(i);
            order.push(id);
            for &c in &consumers[id.index()] {
                indegree[c.index()] -= 1;
                if indegree[c.index()] == 0 {
                    ready.push(std::cmp::Reverse(c.0));
                }
            }
        }
        if order.len() != self.num_nodes() {
            let stuck = self
                .node_ids()
                .find(|id| indegree[id.index()] > 0)
                .map(|id| self.node(id))
                .map(|node| (node.label(), node.qualified_op()))
                .unwrap_or_default();
            return Err(IrError::Cycle {
                node: stuck.0,
                op: stuck.1,
            });
        }
        Ok(order)
    }

    /// Renumber: nodes in schedule order, values in order of first appearance (inputs, constants,
    /// node outputs, then the rest). Falls back to arena order if the graph has a cycle.
    pub fn compact(&self) -> Graph {
        let order = self
            .topo_order()
            .unwrap_or_else(|_| self.node_ids().collect());
        let mut vmap: Vec<Option<ValueId>> = vec![None; self.values.len()];
        let mut values: Vec<Option<Value>> = Vec::with_capacity(self.values.len());
        let mut take = |v: ValueId, values: &mut Vec<Option<Value>>| {
            if let Some(Some(val)) = self.values.get(v.index()) {
                if vmap[v.index()].is_none() {
                    vmap[v.index()] = Some(ValueId(values.len() as u32));
                    values.push(Some(val.clone()));
                }
            }
        };
        for &v in &self.inputs {
            take(v, &mut values);
        }
        for v in self.constants() {
            take(v, &mut values);
        }
        for &id in &order {
            let node = self.node(id);
            for v in node.inputs.iter().flatten() {
                if self.value(*v).def == ValueDef::Capture {
                    take(*v, &mut values);
                }
            }
            for v in node.outputs.iter().flatten() {
                take(*v, &mut values);
            }
        }
        for v in self.value_ids() {
            take(v, &mut values);
        }
        let map = |v: ValueId| vmap[v.index()].unwrap_or(v);
        let mut nodes = Vec::with_capacity(order.len());
        for (new_id, &id) in order.iter().enumerate() {
            let mut node = self.node(id).clone();
            node.inputs.iter_mut().flatten().for_each(|v| *v = map(*v));
            node.outputs.iter_mut().flatten().for_each(|v| *v = map(*v));
            for (i, o) in node.outputs.iter().enumerate() {
                if let Some(o) = o {
                    if let Some(Some(val)) = values.get_mut(o.index()) {
                        val.def = ValueDef::Node(NodeId(new_id as u32), i as u32);
                    }
                }
            }
            nodes.push(Some(node));
        }
        Graph {
            name: self.name.clone(),
            doc_string: self.doc_string.clone(),
            inputs: self.inputs.iter().map(|&v| map(v)).collect(),
            outputs: self.outputs.iter().map(|&v| map(v)).collect(),
            metadata_props: self.metadata_props.clone(),
            nodes,
            values,
        }
    }
}
