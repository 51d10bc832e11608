//! The printer. It reads the IR only through non-panicking accessors, so that invalid IR (erased
//! ids, undefined values, cycles, malformed tensors) still prints.

use super::literal::{self, Field};
use super::syntax::{
    is_dotted_ident, is_ident, write_bytes_lit, write_ident_or_str, write_metadata, write_str_lit,
    write_value_name,
};
use super::PrintOptions;
use crate::attr::{AttrValue, Attribute, SparseTensor};
use crate::graph::{Graph, NodeId, Value, ValueDef, ValueId};
use crate::model::{Function, Model};
use crate::tensor::{Tensor, TensorData};
use crate::types::{Dim, TensorType, Type};
use std::collections::HashSet;
use std::fmt::Write;

pub(super) fn print_model(model: &Model, opts: &PrintOptions) -> String {
    let mut p = Printer {
        out: String::new(),
        opts,
    };
    p.out.push_str("// spa-opt IR\n");
    p.model_header(model);
    if !model.spaces.is_empty() {
        p.out.push_str("spaces {");
        for (i, s) in model.spaces.iter().enumerate() {
            if i > 0 {
                p.out.push_str(", ");
            }
            let _ = write!(p.out, "g{i} = {}", s.size);
        }
        p.out.push_str("}\n");
    }
    p.graph(&model.graph, 0, Head::Main);
    p.out.push('\n');
    for f in &model.functions {
        p.graph(&f.body, 0, Head::Func(f));
        p.out.push('\n');
    }
    p.out
}

struct Printer<'o> {
    out: String,
    opts: &'o PrintOptions,
}

#[derive(Clone, Copy)]
enum Head<'m> {
    /// The main graph.
    Main,
    /// A subgraph in an attribute: names it does not define are captures.
    Sub,
    Func(&'m Function),
}

/// The printed name of every value of one graph: its own name, or a fallback `v<id>` when the
/// name is empty or already taken by a value printed earlier.
struct Names {
    names: Vec<Option<String>>,
}

impl Names {
    fn new(g: &Graph, order: &[ValueId]) -> Names {
        let all: HashSet<&str> = g
            .value_ids()
            .filter_map(|v| g.try_value(v))
            .map(|v| v.name.as_str())
            .collect();
        let mut claimed: HashSet<String> = HashSet::new();
        let mut names = vec![None; g.value_capacity()];
        for &id in order {
            let Some(v) = g.try_value(id) else { continue };
            if names.get(id.index()).is_some_and(|n| n.is_some()) {
                continue;
            }
            let name = if !v.name.is_empty() && !claimed.contains(&v.name) {
                v.name.clone()
            } else {
                let mut cand = format!("v{}", id.0);
                let mut k = 1;
                while all.contains(cand.as_str()) || claimed.contains(&cand) {
                    cand = format!("v{}_{k}", id.0);
                    k += 1;
                }
                cand
            };
            claimed.insert(name.clone());
            if let Some(slot) = names.get_mut(id.index()) {
                *slot = Some(name);
            }
        }
        Names { names }
    }

    fn get(&self, id: ValueId) -> String {
        match self.names.get(id.index()) {
            Some(Some(n)) => n.clone(),
            // An id that points at no live value: print something that cannot be a fallback.
            _ => format!("?v{}", id.0),
        }
    }
}

fn has_extras(v: &Value) -> bool {
    !v.doc_string.is_empty() || !v.metadata_props.is_empty()
}

/// A capture with anything to say beyond its name is listed in `captures(...)`.
fn is_explicit_capture(v: &Value) -> bool {
    v.def == ValueDef::Capture && (!v.ty.is_unknown() || v.declared || has_extras(v))
}

impl Printer<'_> {
    fn indent(&mut self, n: usize) {
        for _ in 0..n {
            self.out.push(' ');
        }
    }

    fn model_header(&mut self, m: &Model) {
        let _ = write!(self.out, "model {{ir_version = {}, opset = [", m.ir_version);
        for (i, o) in m.opset_imports.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            write_str_lit(&mut self.out, &o.domain);
            let _ = write!(self.out, " : {}", o.version);
        }
        self.out.push(']');
        let strings = [
            ("producer", &m.producer_name),
            ("producer_version", &m.producer_version),
            ("domain", &m.domain),
        ];
        for (key, s) in strings {
            if !s.is_empty() {
                let _ = write!(self.out, ", {key} = ");
                write_str_lit(&mut self.out, s);
            }
        }
        if m.model_version != 0 {
            let _ = write!(self.out, ", model_version = {}", m.model_version);
        }
        if !m.doc_string.is_empty() {
            self.out.push_str(", doc = ");
            write_str_lit(&mut self.out, &m.doc_string);
        }
        if !m.metadata_props.is_empty() {
            self.out.push_str(", metadata = ");
            write_metadata(&mut self.out, &m.metadata_props);
        }
        self.out.push_str("}\n");
    }

    /// A graph or function: header, body at `indent + 2`, closing brace at `indent`. The caller
    /// has already indented the first line.
    fn graph(&mut self, g: &Graph, indent: usize, head: Head<'_>) {
        let schedule: Vec<NodeId> = g.topo_order().unwrap_or_else(|_| g.node_ids().collect());
        let order = value_order(g, &schedule);
        let names = Names::new(g, &order);
        let inputs: HashSet<ValueId> = g.inputs.iter().copied().collect();
        let live = |id: &ValueId| g.try_value(*id).is_some();
        let consts: Vec<ValueId> = g
            .value_ids()
            .filter(|id| !inputs.contains(id))
            .filter(|&id| {
                g.try_value(id).is_some_and(|v| {
                    v.def == ValueDef::Const && (v.init.is_some() || v.sparse_init.is_some())
                })
            })
            .collect();
        let mut seen = HashSet::new();
        // Outside a subgraph an unlisted name reads back as undefined, so list every capture.
        let sub = matches!(head, Head::Sub);
        let captures: Vec<ValueId> = order
            .iter()
            .copied()
            .filter(|&id| {
                g.try_value(id)
                    .is_some_and(|v| is_explicit_capture(v) || (!sub && v.def == ValueDef::Capture))
                    && seen.insert(id)
            })
            .collect();
        let mut defined: HashSet<ValueId> = inputs.iter().copied().filter(live).collect();
        defined.extend(consts.iter().copied());
        defined.extend(captures.iter().copied());
        for &n in &schedule {
            if let Some(node) = g.try_node(n) {
                defined.extend(node.outputs.iter().flatten().copied().filter(live));
            }
        }

        // Header.
        match head {
            Head::Main | Head::Sub => {
                self.out.push_str("graph @");
                write_ident_or_str(&mut self.out, &g.name);
            }
            Head::Func(f) => {
                self.out.push_str("func ");
                write_op(&mut self.out, &f.domain, &f.name);
            }
        }
        self.out.push('(');
        for (i, &id) in g.inputs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.sig_entry(g, &names, id, true);
        }
        self.out.push_str(") -> (");
        for (i, &id) in g.outputs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.sig_entry(g, &names, id, !defined.contains(&id));
        }
        self.out.push(')');
        if let Head::Func(f) = head {
            self.function_trailers(f, indent);
            if !g.name.is_empty() {
                self.out.push_str(" graph_name(");
                write_str_lit(&mut self.out, &g.name);
                self.out.push(')');
            }
            self.doc_trailer("graph_doc", &g.doc_string);
            self.metadata_trailer("graph_metadata", &g.metadata_props);
        }
        if !captures.is_empty() {
            self.out.push_str(" captures(");
            for (i, &id) in captures.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                self.sig_entry(g, &names, id, true);
            }
            self.out.push(')');
        }
        if let Head::Main | Head::Sub = head {
            self.doc_trailer("doc", &g.doc_string);
            self.metadata_trailer("metadata", &g.metadata_props);
        }
        self.out.push_str(" {\n");

        // Body: input defaults, constants, nodes, return.
        let inner = indent + 2;
        for &id in &g.inputs {
            let Some(v) = g.try_value(id) else { continue };
            if v.init.is_none() && v.sparse_init.is_none() {
                continue;
            }
            self.indent(inner);
            write_value_name(&mut self.out, &names.get(id));
            self.out.push_str(" = default ");
            if let Some(t) = &v.init {
                self.tensor_lit(t, None, &v.name);
            } else if let Some(s) = &v.sparse_init {
                self.sparse_lit(s, &v.name);
            }
            self.out.push('\n');
        }
        for &id in &consts {
            let Some(v) = g.try_value(id) else { continue };
            self.indent(inner);
            write_value_name(&mut self.out, &names.get(id));
            self.out.push_str(" = const ");
            self.const_data(v);
            self.out.push('\n');
        }
        for &n in &schedule {
            self.node(g, &names, n, inner);
        }
        self.indent(inner);
        self.out.push_str("return");
        for (i, &id) in g.outputs.iter().enumerate() {
            self.out.push_str(if i > 0 { ", " } else { " " });
            write_value_name(&mut self.out, &names.get(id));
        }
        self.out.push('\n');
        self.indent(indent);
        self.out.push('}');
    }

    fn function_trailers(&mut self, f: &Function, indent: usize) {
        if !f.attributes.is_empty() || !f.attribute_defaults.is_empty() {
            self.out.push_str(" attrs [");
            let mut first = true;
            for a in &f.attributes {
                if !first {
                    self.out.push_str(", ");
                }
                first = false;
                write_ident_or_str(&mut self.out, a);
            }
            for a in &f.attribute_defaults {
                if !first {
                    self.out.push_str(", ");
                }
                first = false;
                self.attr_entry(a, indent);
            }
            self.out.push(']');
        }
        if !f.opset_imports.is_empty() {
            self.out.push_str(" opset [");
            for (i, o) in f.opset_imports.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                write_str_lit(&mut self.out, &o.domain);
                let _ = write!(self.out, " : {}", o.version);
            }
            self.out.push(']');
        }
        if !f.overload.is_empty() {
            self.out.push_str(" overload(");
            write_str_lit(&mut self.out, &f.overload);
            self.out.push(')');
        }
        self.doc_trailer("doc", &f.doc_string);
        self.metadata_trailer("metadata", &f.metadata_props);
    }

    fn doc_trailer(&mut self, key: &str, doc: &str) {
        if !doc.is_empty() {
            let _ = write!(self.out, " {key}(");
            write_str_lit(&mut self.out, doc);
            self.out.push(')');
        }
    }

    fn metadata_trailer(&mut self, key: &str, props: &[(String, String)]) {
        if !props.is_empty() {
            let _ = write!(self.out, " {key}");
            write_metadata(&mut self.out, props);
        }
    }

    /// `%name: type! {doc = ..., metadata = ...}`; the type is left out when there is nothing to
    /// say, and `!` and annotations only when `full` (where the value is defined).
    fn sig_entry(&mut self, g: &Graph, names: &Names, id: ValueId, full: bool) {
        write_value_name(&mut self.out, &names.get(id));
        let Some(v) = g.try_value(id) else { return };
        let info = full && (v.declared || has_extras(v));
        if !v.ty.is_unknown() || info {
            self.out.push_str(": ");
            self.value_type(v, full);
        }
    }

    /// A value's type, its `!` and its annotations.
    fn value_type(&mut self, v: &Value, full: bool) {
        write_type(&mut self.out, &v.ty);
        if full && v.declared {
            self.out.push('!');
        }
        if full && has_extras(v) {
            self.out.push_str(" {");
            let mut first = true;
            if !v.doc_string.is_empty() {
                self.out.push_str("doc = ");
                write_str_lit(&mut self.out, &v.doc_string);
                first = false;
            }
            if !v.metadata_props.is_empty() {
                if !first {
                    self.out.push_str(", ");
                }
                self.out.push_str("metadata = ");
                write_metadata(&mut self.out, &v.metadata_props);
            }
            self.out.push('}');
        }
    }

    /// The data of a `const` line: the literal, then `: type` when the value's type is not the
    /// literal's own or the value has `!` or annotations.
    fn const_data(&mut self, v: &Value) {
        let needs_info = v.declared || has_extras(v);
        if let Some(t) = &v.init {
            let fits = match &v.ty {
                Type::Tensor(tt) => {
                    tt.dtype == Some(t.dtype)
                        && tt.shape.as_ref().is_some_and(|s| {
                            s.iter()
                                .map(|a| a.dim.known())
                                .eq(t.dims.iter().map(|&d| Some(d)))
                        })
                }
                _ => false,
            };
            let lit_ty = match &v.ty {
                Type::Tensor(tt) if fits && !needs_info => Some(tt),
                _ => None,
            };
            self.tensor_lit(t, lit_ty, &v.name);
            if !fits || needs_info {
                self.out.push_str(" : ");
                self.value_type(v, true);
            }
        } else if let Some(s) = &v.sparse_init {
            self.sparse_lit(s, &v.name);
            let default = Type::SparseTensor(TensorType::new(s.values.dtype, &s.dims));
            if v.ty != default || needs_info {
                self.out.push_str(" : ");
                self.value_type(v, true);
            }
        }
    }

    /// `f32[2,3] dense<[...]> as float_data external(...) {name = ..., doc = ..., metadata = ...}`.
    /// `lit_ty` is the value type to print instead of the plain one (it may carry channels);
    /// `default_name` is the tensor name the parser assumes when none is written.
    fn tensor_lit(&mut self, t: &Tensor, lit_ty: Option<&TensorType>, default_name: &str) {
        match lit_ty {
            Some(tt) => write_tensor_type(&mut self.out, tt),
            None => write_tensor_type(&mut self.out, &TensorType::new(t.dtype, &t.dims)),
        }
        self.out.push(' ');
        let elide = !self.opts.print_constants && stored_elements(t) > self.opts.elide_above as u64;
        let field = Field::of(&t.data);
        if elide {
            let _ = write!(self.out, "#elided<{}>", t.digest());
            if field != Field::Raw {
                let _ = write!(self.out, " as {}", field.name());
            }
        } else {
            let n = t.num_elements();
            let packed = |raw: &[u8]| {
                n.and_then(|n| literal::dense_text(t.dtype, raw, n))
                    .unwrap_or_else(|| literal::hex_text(raw))
            };
            let text = match &t.data {
                TensorData::Raw(b) => packed(b),
                TensorData::External(e) => packed(&e.bytes),
                TensorData::Strings(s)
                    if t.dtype == crate::dtype::DType::Str && n == Some(s.len() as u64) =>
                {
                    literal::strings_text("dense", s)
                }
                data => match canonical_raw(t) {
                    Some(raw) => format!("{} as {}", packed(&raw), field.name()),
                    None => literal::verbatim_text(data),
                },
            };
            self.out.push_str(&text);
        }
        if let TensorData::External(e) = &t.data {
            self.out.push_str(" external(");
            for (i, (k, v)) in e.entries.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                write_ident_or_str(&mut self.out, k);
                self.out.push_str(" = ");
                if is_canonical_u64(v) {
                    self.out.push_str(v);
                } else {
                    write_str_lit(&mut self.out, v);
                }
            }
            self.out.push(')');
        }
        let mut extras = Vec::new();
        if t.name != default_name {
            let mut s = String::from("name = ");
            write_str_lit(&mut s, &t.name);
            extras.push(s);
        }
        if !t.doc_string.is_empty() {
            let mut s = String::from("doc = ");
            write_str_lit(&mut s, &t.doc_string);
            extras.push(s);
        }
        if !t.metadata_props.is_empty() {
            let mut s = String::from("metadata = ");
            write_metadata(&mut s, &t.metadata_props);
            extras.push(s);
        }
        if !extras.is_empty() {
            let _ = write!(self.out, " {{{}}}", extras.join(", "));
        }
    }

    /// `sparse<[4,4], <values literal>, <indices literal>>`.
    fn sparse_lit(&mut self, s: &SparseTensor, values_name: &str) {
        self.out.push_str("sparse<[");
        for (i, d) in s.dims.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{d}");
        }
        self.out.push_str("], ");
        self.tensor_lit(&s.values, None, values_name);
        self.out.push_str(", ");
        self.tensor_lit(&s.indices, None, "");
        self.out.push('>');
    }

    fn node(&mut self, g: &Graph, names: &Names, id: NodeId, indent: usize) {
        let Some(node) = g.try_node(id) else { return };
        self.indent(indent);
        if !node.outputs.is_empty() {
            for (i, o) in node.outputs.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                match o {
                    Some(v) => write_value_name(&mut self.out, &names.get(*v)),
                    None => self.out.push('_'),
                }
            }
            self.out.push_str(" = ");
        }
        write_op(&mut self.out, &node.domain, &node.op_type);
        self.out.push('(');
        for (i, input) in node.inputs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            match input {
                Some(v) => write_value_name(&mut self.out, &names.get(*v)),
                None => self.out.push('_'),
            }
        }
        self.out.push(')');
        if !node.attrs.is_empty() {
            let mut attrs: Vec<&Attribute> = node.attrs.iter().collect();
            attrs.sort_by(|a, b| a.name.cmp(&b.name));
            self.out.push_str(" {");
            for (i, a) in attrs.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                self.attr_entry(a, indent);
            }
            self.out.push('}');
        }
        let present: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
        for (i, &v) in present.iter().enumerate() {
            self.out.push_str(if i == 0 { " : " } else { ", " });
            match g.try_value(v) {
                Some(val) => self.value_type(val, true),
                None => self.out.push('?'),
            }
        }
        if !node.name.is_empty() {
            self.out.push_str(" loc(");
            write_str_lit(&mut self.out, &node.name);
            self.out.push(')');
        }
        self.doc_trailer("doc", &node.doc_string);
        if !node.overload.is_empty() {
            self.out.push_str(" overload(");
            write_str_lit(&mut self.out, &node.overload);
            self.out.push(')');
        }
        self.metadata_trailer("metadata", &node.metadata_props);
        self.out.push('\n');
    }

    fn attr_entry(&mut self, a: &Attribute, indent: usize) {
        write_ident_or_str(&mut self.out, &a.name);
        self.out.push_str(" = ");
        self.attr_value(&a.value, indent);
        self.doc_trailer("doc", &a.doc_string);
    }

    fn attr_value(&mut self, v: &AttrValue, indent: usize) {
        match v {
            AttrValue::Float(x) => literal::write_f32(&mut self.out, *x),
            AttrValue::Int(x) => {
                let _ = write!(self.out, "{x}");
            }
            AttrValue::String(s) => write_bytes_lit(&mut self.out, s),
            AttrValue::Tensor(t) => self.tensor_lit(t, None, ""),
            AttrValue::Graph(g) => self.graph(g, indent, Head::Sub),
            AttrValue::SparseTensor(s) => self.sparse_lit(s, ""),
            AttrValue::Type(t) => {
                self.out.push_str("type<");
                write_type(&mut self.out, t);
                self.out.push('>');
            }
            AttrValue::Floats(xs) => {
                self.list(xs, "floats", |p, x| literal::write_f32(&mut p.out, *x))
            }
            AttrValue::Ints(xs) => self.list(xs, "ints", |p, x| {
                let _ = write!(p.out, "{x}");
            }),
            AttrValue::Strings(xs) => {
                self.list(xs, "strings", |p, x| write_bytes_lit(&mut p.out, x))
            }
            AttrValue::Tensors(xs) => self.list(xs, "tensors", |p, t| p.tensor_lit(t, None, "")),
            AttrValue::Graphs(xs) => self.list(xs, "graphs", |p, g| p.graph(g, indent, Head::Sub)),
            AttrValue::SparseTensors(xs) => {
                self.list(xs, "sparse_tensors", |p, s| p.sparse_lit(s, ""))
            }
            AttrValue::Types(xs) => self.list(xs, "types", |p, t| {
                p.out.push_str("type<");
                write_type(&mut p.out, t);
                p.out.push('>');
            }),
            AttrValue::Ref { kind, name } => {
                self.out.push_str("@ref(");
                write_ident_or_str(&mut self.out, name);
                let _ = write!(self.out, ") : {}", kind.name());
            }
        }
    }

    fn list<T>(&mut self, xs: &[T], kind: &str, mut item: impl FnMut(&mut Self, &T)) {
        self.out.push('[');
        for (i, x) in xs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            item(self, x);
        }
        self.out.push(']');
        if xs.is_empty() {
            let _ = write!(self.out, " : {kind}");
        }
    }
}

/// Values in the order the text defines them: inputs, constants, node results in schedule order,
/// then operands and outputs that nothing defines, then the rest. Names go to the earliest.
fn value_order(g: &Graph, schedule: &[NodeId]) -> Vec<ValueId> {
    let mut order: Vec<ValueId> = g.inputs.clone();
    order.extend(g.constants());
    for &n in schedule {
        if let Some(node) = g.try_node(n) {
            order.extend(node.outputs.iter().flatten().copied());
        }
    }
    for &n in schedule {
        if let Some(node) = g.try_node(n) {
            order.extend(node.inputs.iter().flatten().copied());
        }
    }
    order.extend(g.outputs.iter().copied());
    order.extend(g.value_ids());
    order
}

/// `onnx.Conv`, `com.microsoft.FusedConv`, or `"odd domain"."odd op"` when a part would not read
/// back as one dotted identifier (`onnx` itself as a domain is quoted: bare it means `""`).
fn write_op(out: &mut String, domain: &str, op: &str) {
    if domain != "onnx" && (domain.is_empty() || is_dotted_ident(domain)) && is_ident(op) {
        out.push_str(if domain.is_empty() { "onnx" } else { domain });
        out.push('.');
        out.push_str(op);
    } else {
        write_str_lit(out, domain);
        out.push('.');
        write_ident_or_str(out, op);
    }
}

/// Like `Type`'s `Display`, but symbolic dims that are not identifiers are quoted so that they
/// read back.
pub(super) fn write_type(out: &mut String, ty: &Type) {
    match ty {
        Type::Unknown => out.push('?'),
        Type::Tensor(t) => write_tensor_type(out, t),
        Type::SparseTensor(t) => {
            out.push_str("sparse<");
            write_tensor_type(out, t);
            out.push('>');
        }
        Type::Sequence(t) => {
            out.push_str("seq<");
            write_type(out, t);
            out.push('>');
        }
        Type::Optional(t) => {
            out.push_str("opt<");
            write_type(out, t);
            out.push('>');
        }
        Type::Map(k, v) => {
            let _ = write!(out, "map<{k},");
            write_type(out, v);
            out.push('>');
        }
    }
}

fn write_tensor_type(out: &mut String, t: &TensorType) {
    match t.dtype {
        Some(d) => out.push_str(d.name()),
        None => out.push('?'),
    }
    match &t.shape {
        None => out.push_str("[*]"),
        Some(axes) => {
            out.push('[');
            for (i, a) in axes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match &a.dim {
                    Dim::Known(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Dim::Sym(s) => write_ident_or_str(out, s),
                    Dim::Unknown => out.push('?'),
                }
                if let Some(c) = &a.channels {
                    let _ = write!(out, "@{c}");
                }
            }
            out.push(']');
        }
    }
}

/// Elements the data actually holds (dims may be wrong in invalid IR), to decide elision.
fn stored_elements(t: &Tensor) -> u64 {
    let packed = |len: usize| match t.dtype.bits() {
        Some(bits) => len as u64 * 8 / bits as u64,
        None => len as u64,
    };
    match &t.data {
        TensorData::Raw(b) => packed(b.len()),
        TensorData::External(e) => packed(e.bytes.len()),
        TensorData::Floats(v) => v.len() as u64,
        TensorData::Int32s(v) => v.len() as u64,
        TensorData::Int64s(v) => v.len() as u64,
        TensorData::Doubles(v) => v.len() as u64,
        TensorData::Uint64s(v) => v.len() as u64,
        TensorData::Strings(v) => v.len() as u64,
    }
}

/// The packed bytes of a typed field, if converting them back with `as <field>` gives the field
/// exactly (otherwise the field prints verbatim).
fn canonical_raw(t: &Tensor) -> Option<Vec<u8>> {
    t.validate().ok()?;
    let raw = t.raw_bytes().ok()?.into_owned();
    let back = literal::raw_to_field(t.dtype, &raw, Field::of(&t.data))?;
    literal::same_bits(&back, &t.data).then_some(raw)
}

/// An external-data value that reads back as the same string when printed as a bare number.
fn is_canonical_u64(s: &str) -> bool {
    s.parse::<u64>().is_ok_and(|n| n.to_string() == s)
}
