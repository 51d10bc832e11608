//! The parser: recursive descent over the lexer's tokens. Names resolve per graph: a name used
//! before its definition is a forward reference, a name never defined is `Undefined` in the main
//! graph and in functions (the verifier reports it) and a `Capture` in a subgraph.

use super::lexer::{Lexer, Pos, Tok, Token};
use super::literal::{self, DenseBuilder, Field, Scalar};
use super::printer::write_type;
use super::syntax::write_value_name;
use super::ParseError;
use crate::attr::{AttrKind, AttrValue, Attribute, SparseTensor};
use crate::dtype::DType;
use crate::graph::{Graph, Node, Value, ValueDef, ValueId};
use crate::model::{ChannelSpace, Function, Model, OpsetImport};
use crate::tensor::{ExternalData, Tensor, TensorData};
use crate::types::{Axis, ChannelExpr, Dim, SpaceId, TensorType, Type};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::fmt::Display;

type PResult<T> = Result<T, ParseError>;

/// Nesting limit for types, lists, channel expressions and subgraphs: deep enough for any real
/// model, shallow enough that recursion cannot overflow a test thread's stack.
const MAX_DEPTH: u32 = 64;

pub(super) fn parse_model(src: &str) -> PResult<Model> {
    let mut p = Parser {
        lex: Lexer::new(src),
        buf: VecDeque::new(),
        depth: 0,
    };
    p.model()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Main,
    Sub,
    Func,
}

/// Names of one graph being parsed.
struct Scope {
    graph: Graph,
    kind: Kind,
    names: HashMap<String, ValueId>,
    /// Where each value was defined; `None` while it is only referenced.
    defined: Vec<Option<Pos>>,
    /// A value only referenced got its type from a result signature.
    from_sig: Vec<bool>,
}

impl Scope {
    fn new(graph: Graph, kind: Kind) -> Scope {
        Scope {
            graph,
            kind,
            names: HashMap::new(),
            defined: Vec::new(),
            from_sig: Vec::new(),
        }
    }

    fn use_value(&mut self, name: &str) -> ValueId {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = self
            .graph
            .add_value(Value::new(name, Type::Unknown, ValueDef::Undefined));
        self.names.insert(name.to_string(), id);
        self.defined.push(None);
        self.from_sig.push(false);
        id
    }

    fn define(&mut self, name: &str, pos: Pos) -> PResult<ValueId> {
        let id = self.use_value(name);
        match self.defined.get_mut(id.index()) {
            Some(Some(first)) => Err(pos.error(format!(
                "value {} is defined twice (first at {}:{})",
                show_name(name),
                first.line,
                first.col
            ))),
            Some(slot) => {
                *slot = Some(pos);
                Ok(id)
            }
            None => Ok(id),
        }
    }

    fn is_defined(&self, id: ValueId) -> bool {
        self.defined.get(id.index()).is_some_and(|d| d.is_some())
    }

    fn value_mut(&mut self, id: ValueId) -> &mut Value {
        self.graph.value_mut(id)
    }

    fn finish(mut self) -> Graph {
        if self.kind == Kind::Sub {
            for (i, d) in self.defined.iter().enumerate() {
                if d.is_none() {
                    self.graph.value_mut(ValueId(i as u32)).def = ValueDef::Capture;
                }
            }
        }
        self.graph
    }
}

fn show_name(name: &str) -> String {
    let mut s = String::new();
    write_value_name(&mut s, name);
    s
}

/// A value's type with its `!` and annotations, as written after `:`.
#[derive(Default)]
struct Info {
    ty: Option<Type>,
    declared: bool,
    doc: String,
    metadata: Vec<(String, String)>,
}

impl Info {
    fn has_extras(&self) -> bool {
        self.declared || !self.doc.is_empty() || !self.metadata.is_empty()
    }

    fn apply(self, v: &mut Value) {
        v.ty = self.ty.unwrap_or_default();
        v.declared = self.declared;
        v.doc_string = self.doc;
        v.metadata_props = self.metadata;
    }
}

/// One entry of a signature: `%x: f32[2]! {doc = "..."}`.
struct Sig {
    name: String,
    pos: Pos,
    info: Info,
}

/// A parsed tensor literal and the type it was written with (which may carry channels).
struct Lit {
    tensor: Tensor,
    ty: TensorType,
}

struct Parser<'a> {
    lex: Lexer<'a>,
    buf: VecDeque<Token<'a>>,
    depth: u32,
}

impl<'a> Parser<'a> {
    // -----------------------------------------------------------------------------------------
    // Tokens

    fn peek_nth(&mut self, n: usize) -> PResult<Token<'a>> {
        while self.buf.len() <= n {
            let t = self.lex.next_token()?;
            self.buf.push_back(t);
        }
        self.buf.get(n).cloned().ok_or_else(|| ParseError {
            line: 0,
            col: 0,
            message: "internal error: token buffer".into(),
        })
    }

    fn peek(&mut self) -> PResult<Token<'a>> {
        self.peek_nth(0)
    }

    fn next(&mut self) -> PResult<Token<'a>> {
        let t = self.peek()?;
        self.buf.pop_front();
        Ok(t)
    }

    fn found(t: &Token<'_>, expected: impl Display) -> ParseError {
        t.pos
            .error(format!("expected {expected}, found {}", t.tok.describe()))
    }

    /// "expected X, found <next token>".
    fn unexpected(&mut self, expected: impl Display) -> ParseError {
        match self.peek() {
            Ok(t) => Self::found(&t, expected),
            Err(e) => e,
        }
    }

    fn is_punct(&mut self, c: u8) -> PResult<bool> {
        Ok(self.peek()?.tok == Tok::Punct(c))
    }

    fn eat_punct(&mut self, c: u8) -> PResult<bool> {
        let yes = self.is_punct(c)?;
        if yes {
            self.next()?;
        }
        Ok(yes)
    }

    /// Expect punctuation; `context` completes "expected ')' <context>".
    fn expect_punct(&mut self, c: u8, context: &str) -> PResult<Pos> {
        let t = self.peek()?;
        if t.tok == Tok::Punct(c) {
            self.next()?;
            Ok(t.pos)
        } else if context.is_empty() {
            Err(Self::found(&t, format!("'{}'", c as char)))
        } else {
            Err(Self::found(&t, format!("'{}' {context}", c as char)))
        }
    }

    fn is_kw(&mut self, kw: &str) -> PResult<bool> {
        Ok(matches!(self.peek()?.tok, Tok::Ident(s) if s == kw))
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<Pos> {
        let t = self.peek()?;
        match t.tok {
            Tok::Ident(s) if s == kw => {
                self.next()?;
                Ok(t.pos)
            }
            _ => Err(Self::found(&t, format!("'{kw}'"))),
        }
    }

    fn enter(&mut self, pos: Pos) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(pos.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn string(&mut self, what: &str) -> PResult<String> {
        let t = self.next()?;
        match t.tok {
            Tok::Str(b) => {
                String::from_utf8(b).map_err(|_| t.pos.error(format!("{what} is not valid UTF-8")))
            }
            _ => Err(Self::found(&t, format!("a string ({what})"))),
        }
    }

    /// A bare identifier or a quoted string.
    fn name(&mut self, what: &str) -> PResult<String> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(s) => Ok(s.to_string()),
            Tok::Str(b) => {
                String::from_utf8(b).map_err(|_| t.pos.error(format!("{what} is not valid UTF-8")))
            }
            _ => Err(Self::found(&t, what)),
        }
    }

    fn int_i64(&mut self, what: &str) -> PResult<i64> {
        let t = self.next()?;
        match t.tok {
            Tok::Num(s) => literal::parse_int(s)
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| t.pos.error(format!("expected {what}, found number {s}"))),
            _ => Err(Self::found(&t, what)),
        }
    }

    fn int_u64(&mut self, what: &str) -> PResult<u64> {
        let t = self.next()?;
        match t.tok {
            Tok::Num(s) => literal::parse_int(s)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| t.pos.error(format!("expected {what}, found number {s}"))),
            _ => Err(Self::found(&t, what)),
        }
    }

    /// `{"k" = "v", ...}`.
    fn metadata(&mut self) -> PResult<Vec<(String, String)>> {
        self.expect_punct(b'{', "to open a metadata map")?;
        let mut out = Vec::new();
        if self.eat_punct(b'}')? {
            return Ok(out);
        }
        loop {
            let k = self.string("a metadata key")?;
            self.expect_punct(b'=', "after a metadata key")?;
            let v = self.string("a metadata value")?;
            out.push((k, v));
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b'}', "after metadata entries")?;
            return Ok(out);
        }
    }

    /// `("text")`, the argument of `doc`, `loc`, `overload`, ... trailers.
    fn paren_string(&mut self, what: &str) -> PResult<String> {
        self.expect_punct(b'(', &format!("after '{what}'"))?;
        let s = self.string(what)?;
        self.expect_punct(b')', &format!("after the {what} string"))?;
        Ok(s)
    }

    /// Record a trailer keyword; a second one is an error.
    fn once(seen: &mut Vec<&'static str>, kw: &'static str, pos: Pos) -> PResult<()> {
        if seen.contains(&kw) {
            return Err(pos.error(format!("'{kw}' given twice")));
        }
        seen.push(kw);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Model

    fn model(&mut self) -> PResult<Model> {
        let mut model = Model::new(Graph::default());
        let mut seen: Vec<&'static str> = Vec::new();
        let mut graph = None;
        loop {
            let t = self.peek()?;
            match t.tok {
                Tok::Ident("model") => {
                    Self::once(&mut seen, "model", t.pos)?;
                    self.model_header(&mut model)?;
                }
                Tok::Ident("spaces") => {
                    Self::once(&mut seen, "spaces", t.pos)?;
                    model.spaces = self.spaces()?;
                }
                Tok::Ident("graph") => {
                    if graph.is_some() {
                        return Err(t
                            .pos
                            .error("a model has one main graph; found a second 'graph'"));
                    }
                    graph = Some(self.graph(Kind::Main)?);
                }
                Tok::Ident("func") => {
                    let f = self.function()?;
                    model.functions.push(f);
                }
                Tok::Eof => break,
                _ => return Err(Self::found(&t, "'model', 'spaces', 'graph' or 'func'")),
            }
        }
        match graph {
            Some(g) => model.graph = g,
            None => {
                return Err(self.unexpected("'graph' (the model has no main graph)"));
            }
        }
        Ok(model)
    }

    fn model_header(&mut self, model: &mut Model) -> PResult<()> {
        self.expect_kw("model")?;
        self.expect_punct(b'{', "after 'model'")?;
        let mut seen: Vec<&'static str> = Vec::new();
        if self.eat_punct(b'}')? {
            return Ok(());
        }
        loop {
            let t = self.next()?;
            let key = match t.tok {
                Tok::Ident(s) => s,
                _ => return Err(Self::found(&t, "a model field name")),
            };
            const KEYS: [&str; 8] = [
                "ir_version",
                "opset",
                "producer",
                "producer_version",
                "domain",
                "model_version",
                "doc",
                "metadata",
            ];
            let Some(&k) = KEYS.iter().find(|k| **k == key) else {
                return Err(t.pos.error(format!(
                    "unknown model field '{key}' (expected one of {})",
                    KEYS.join(", ")
                )));
            };
            Self::once(&mut seen, k, t.pos)?;
            self.expect_punct(b'=', &format!("after '{k}'"))?;
            match k {
                "ir_version" => model.ir_version = self.int_i64("an integer IR version")?,
                "opset" => model.opset_imports = self.opsets()?,
                "producer" => model.producer_name = self.string("the producer name")?,
                "producer_version" => {
                    model.producer_version = self.string("the producer version")?
                }
                "domain" => model.domain = self.string("the model domain")?,
                "model_version" => {
                    model.model_version = self.int_i64("an integer model version")?
                }
                "doc" => model.doc_string = self.string("the model doc string")?,
                _ => model.metadata_props = self.metadata()?,
            }
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b'}', "after the model fields")?;
            return Ok(());
        }
    }

    /// `["" : 17, "com.microsoft" : 1]`.
    fn opsets(&mut self) -> PResult<Vec<OpsetImport>> {
        self.expect_punct(b'[', "to open the opset list")?;
        let mut out = Vec::new();
        if self.eat_punct(b']')? {
            return Ok(out);
        }
        loop {
            let domain = self.string("an opset domain")?;
            self.expect_punct(b':', "after the opset domain")?;
            let version = self.int_i64("an opset version")?;
            out.push(OpsetImport { domain, version });
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b']', "after the opset list")?;
            return Ok(out);
        }
    }

    /// `spaces {g0 = 64, g1 = 12}`, in order.
    fn spaces(&mut self) -> PResult<Vec<ChannelSpace>> {
        self.expect_kw("spaces")?;
        self.expect_punct(b'{', "after 'spaces'")?;
        let mut out = Vec::new();
        if self.eat_punct(b'}')? {
            return Ok(out);
        }
        loop {
            let want = format!("g{}", out.len());
            let t = self.next()?;
            if t.tok != Tok::Ident(&want) {
                return Err(Self::found(
                    &t,
                    format!("'{want}' (spaces are listed in order)"),
                ));
            }
            self.expect_punct(b'=', &format!("after '{want}'"))?;
            let size = self.int_u64("a space size")?;
            out.push(ChannelSpace { size });
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b'}', "after the spaces")?;
            return Ok(out);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Graphs and functions

    fn graph(&mut self, kind: Kind) -> PResult<Graph> {
        let start = self.expect_kw("graph")?;
        self.enter(start)?;
        self.expect_punct(b'@', "before the graph name")?;
        let name = self.name("a graph name")?;
        let mut label = String::from("graph @");
        super::syntax::write_ident_or_str(&mut label, &name);
        let mut scope = Scope::new(Graph::new(name), kind);
        self.params(&mut scope, &label)?;
        let outs = self.sig_list(&format!("the results of {label}"))?;
        let mut seen = Vec::new();
        loop {
            let t = self.peek()?;
            match t.tok {
                Tok::Ident("captures") => {
                    Self::once(&mut seen, "captures", t.pos)?;
                    self.next()?;
                    self.captures(&mut scope)?;
                }
                Tok::Ident("doc") => {
                    Self::once(&mut seen, "doc", t.pos)?;
                    self.next()?;
                    scope.graph.doc_string = self.paren_string("doc")?;
                }
                Tok::Ident("metadata") => {
                    Self::once(&mut seen, "metadata", t.pos)?;
                    self.next()?;
                    scope.graph.metadata_props = self.metadata()?;
                }
                _ => break,
            }
        }
        self.body(&mut scope, &outs, &label)?;
        self.leave();
        Ok(scope.finish())
    }

    fn function(&mut self) -> PResult<Function> {
        let start = self.expect_kw("func")?;
        self.enter(start)?;
        let (domain, name) = self.op_name()?;
        let mut label = String::from("func ");
        label.push_str(if domain.is_empty() { "onnx" } else { &domain });
        label.push('.');
        label.push_str(&name);
        let mut f = Function {
            name,
            domain,
            overload: String::new(),
            attributes: Vec::new(),
            attribute_defaults: Vec::new(),
            opset_imports: Vec::new(),
            doc_string: String::new(),
            metadata_props: Vec::new(),
            body: Graph::default(),
        };
        let mut scope = Scope::new(Graph::new(""), Kind::Func);
        self.params(&mut scope, &label)?;
        let outs = self.sig_list(&format!("the results of {label}"))?;
        let mut seen = Vec::new();
        loop {
            let t = self.peek()?;
            let Tok::Ident(kw) = t.tok else { break };
            let kw: &'static str = match kw {
                "attrs" => "attrs",
                "opset" => "opset",
                "overload" => "overload",
                "doc" => "doc",
                "metadata" => "metadata",
                "graph_name" => "graph_name",
                "graph_doc" => "graph_doc",
                "graph_metadata" => "graph_metadata",
                "captures" => "captures",
                _ => break,
            };
            Self::once(&mut seen, kw, t.pos)?;
            self.next()?;
            match kw {
                "attrs" => self.function_attrs(&mut f)?,
                "opset" => f.opset_imports = self.opsets()?,
                "overload" => f.overload = self.paren_string("overload")?,
                "doc" => f.doc_string = self.paren_string("doc")?,
                "metadata" => f.metadata_props = self.metadata()?,
                "graph_name" => scope.graph.name = self.paren_string("graph_name")?,
                "graph_doc" => scope.graph.doc_string = self.paren_string("graph_doc")?,
                "graph_metadata" => scope.graph.metadata_props = self.metadata()?,
                _ => self.captures(&mut scope)?,
            }
        }
        self.body(&mut scope, &outs, &label)?;
        self.leave();
        f.body = scope.finish();
        Ok(f)
    }

    /// `[alpha, beta = 1.0]`: names without defaults, then names with them.
    fn function_attrs(&mut self, f: &mut Function) -> PResult<()> {
        self.expect_punct(b'[', "after 'attrs'")?;
        if self.eat_punct(b']')? {
            return Ok(());
        }
        loop {
            let name = self.name("an attribute name")?;
            if self.eat_punct(b'=')? {
                let a = self.attr_rest(name)?;
                f.attribute_defaults.push(a);
            } else {
                f.attributes.push(name);
            }
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b']', "after the attribute parameters")?;
            return Ok(());
        }
    }

    /// `(%x: f32[2], ...) ->`: the inputs.
    fn params(&mut self, scope: &mut Scope, label: &str) -> PResult<()> {
        let params = self.sig_list(&format!("the inputs of {label}"))?;
        for p in params {
            let id = scope.define(&p.name, p.pos)?;
            let v = scope.value_mut(id);
            p.info.apply(v);
            v.def = ValueDef::Input;
            scope.graph.inputs.push(id);
        }
        let t = self.next()?;
        if t.tok != Tok::Arrow {
            return Err(Self::found(&t, format!("'->' after the inputs of {label}")));
        }
        Ok(())
    }

    /// `captures(%w: f32[3], ...)`: values of the enclosing graph with a known type.
    fn captures(&mut self, scope: &mut Scope) -> PResult<()> {
        for c in self.sig_list("the captures")? {
            let id = scope.define(&c.name, c.pos)?;
            let v = scope.value_mut(id);
            c.info.apply(v);
            v.def = ValueDef::Capture;
        }
        Ok(())
    }

    fn sig_list(&mut self, what: &str) -> PResult<Vec<Sig>> {
        self.expect_punct(b'(', &format!("to open {what}"))?;
        let mut out = Vec::new();
        if self.eat_punct(b')')? {
            return Ok(out);
        }
        loop {
            let t = self.next()?;
            let Tok::Value(name) = t.tok else {
                return Err(Self::found(&t, format!("a value name in {what}")));
            };
            let info = if self.eat_punct(b':')? {
                self.info()?
            } else {
                Info::default()
            };
            out.push(Sig {
                name: name.into_owned(),
                pos: t.pos,
                info,
            });
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b')', &format!("after {what}"))?;
            return Ok(out);
        }
    }

    /// `type [!] [{doc = ..., metadata = ...}]`.
    fn info(&mut self) -> PResult<Info> {
        let ty = self.ty()?;
        let declared = self.eat_punct(b'!')?;
        let mut info = Info {
            ty: Some(ty),
            declared,
            ..Info::default()
        };
        if self.eat_punct(b'{')? {
            if self.eat_punct(b'}')? {
                return Ok(info);
            }
            let mut seen = Vec::new();
            loop {
                let t = self.next()?;
                match t.tok {
                    Tok::Ident("doc") => {
                        Self::once(&mut seen, "doc", t.pos)?;
                        self.expect_punct(b'=', "after 'doc'")?;
                        info.doc = self.string("a doc string")?;
                    }
                    Tok::Ident("metadata") => {
                        Self::once(&mut seen, "metadata", t.pos)?;
                        self.expect_punct(b'=', "after 'metadata'")?;
                        info.metadata = self.metadata()?;
                    }
                    _ => return Err(Self::found(&t, "a value annotation ('doc' or 'metadata')")),
                }
                if self.eat_punct(b',')? {
                    continue;
                }
                self.expect_punct(b'}', "after value annotations")?;
                break;
            }
        }
        Ok(info)
    }

    fn body(&mut self, scope: &mut Scope, outs: &[Sig], label: &str) -> PResult<()> {
        self.expect_punct(b'{', &format!("to open the body of {label}"))?;
        let mut ret: Option<(Pos, Vec<String>)> = None;
        loop {
            let t = self.peek()?;
            match &t.tok {
                Tok::Punct(b'}') => {
                    self.next()?;
                    break;
                }
                _ if ret.is_some() => {
                    return Err(Self::found(&t, format!("'}}' after 'return' in {label}")));
                }
                Tok::Ident("return") => {
                    self.next()?;
                    let mut names = Vec::new();
                    if let Tok::Value(_) = self.peek()?.tok {
                        loop {
                            let t = self.next()?;
                            let Tok::Value(n) = t.tok else {
                                return Err(Self::found(&t, "a value name after ','"));
                            };
                            names.push(n.into_owned());
                            if !self.eat_punct(b',')? {
                                break;
                            }
                        }
                    }
                    ret = Some((t.pos, names));
                }
                Tok::Value(_) | Tok::Ident("_") => self.results_stmt(scope)?,
                Tok::Ident(s) if s.contains('.') => self.node_stmt(scope, Vec::new())?,
                Tok::Str(_) => self.node_stmt(scope, Vec::new())?,
                Tok::Eof => {
                    return Err(Self::found(&t, format!("'}}' to close {label}")));
                }
                _ => {
                    return Err(Self::found(
                        &t,
                        format!("a statement ('%x = ...', an op, 'return') or '}}' in {label}"),
                    ))
                }
            }
        }
        if let Some((pos, names)) = ret {
            let sig: Vec<&str> = outs.iter().map(|s| s.name.as_str()).collect();
            if names.len() != sig.len() {
                return Err(pos.error(format!(
                    "'return' has {} values, but {label} declares {} results",
                    names.len(),
                    sig.len()
                )));
            }
            if let Some((r, s)) = names.iter().zip(&sig).find(|(r, s)| r != s) {
                return Err(pos.error(format!(
                    "'return' does not match the results of {label}: expected {}, found {}",
                    show_name(s),
                    show_name(r)
                )));
            }
        }
        for s in outs {
            self.resolve_output(scope, s, label)?;
        }
        Ok(())
    }

    /// A result in the signature: a value the body defines (the types must agree) or one it only
    /// references (the signature gives its type).
    fn resolve_output(&mut self, scope: &mut Scope, s: &Sig, label: &str) -> PResult<()> {
        let existing = scope.names.get(&s.name).copied();
        let id = match existing {
            Some(id) if scope.is_defined(id) => {
                let v = scope.value_mut(id);
                if let Some(ty) = &s.info.ty {
                    if *ty != v.ty {
                        let (mut a, mut b) = (String::new(), String::new());
                        write_type(&mut a, ty);
                        write_type(&mut b, &v.ty);
                        return Err(s.pos.error(format!(
                            "result {} of {label} is declared as {a}, but its definition has type {b}",
                            show_name(&s.name)
                        )));
                    }
                }
                if s.info.has_extras() {
                    return Err(s.pos.error(format!(
                        "result {} is defined in the body: write '!' and annotations where it is defined",
                        show_name(&s.name)
                    )));
                }
                id
            }
            _ => {
                let id = scope.use_value(&s.name);
                let applied = scope.from_sig.get(id.index()).copied().unwrap_or(false);
                let v = scope.value_mut(id);
                if !applied {
                    let info = Info {
                        ty: s.info.ty.clone(),
                        declared: s.info.declared,
                        doc: s.info.doc.clone(),
                        metadata: s.info.metadata.clone(),
                    };
                    info.apply(v);
                    if let Some(f) = scope.from_sig.get_mut(id.index()) {
                        *f = true;
                    }
                } else if s.info.ty.as_ref().is_some_and(|t| *t != v.ty) {
                    return Err(s.pos.error(format!(
                        "result {} is listed twice with different types",
                        show_name(&s.name)
                    )));
                }
                id
            }
        };
        scope.graph.outputs.push(id);
        Ok(())
    }

    /// `%a, _, %c = ...`: a node, a `const` or a `default`.
    fn results_stmt(&mut self, scope: &mut Scope) -> PResult<()> {
        let mut results: Vec<Option<(String, Pos)>> = Vec::new();
        loop {
            let t = self.next()?;
            match t.tok {
                Tok::Value(n) => results.push(Some((n.into_owned(), t.pos))),
                Tok::Ident("_") => results.push(None),
                _ => return Err(Self::found(&t, "a result ('%x' or '_')")),
            }
            if !self.eat_punct(b',')? {
                break;
            }
        }
        self.expect_punct(b'=', "after the results")?;
        let t = self.peek()?;
        match t.tok {
            Tok::Ident(kw @ ("const" | "default")) => {
                let [Some((name, pos))] = results.as_slice() else {
                    return Err(t.pos.error(format!("'{kw}' defines exactly one value")));
                };
                self.next()?;
                if kw == "const" {
                    self.const_stmt(scope, name, *pos)
                } else {
                    self.default_stmt(scope, name, *pos)
                }
            }
            _ => self.node_stmt(scope, results),
        }
    }

    fn const_stmt(&mut self, scope: &mut Scope, name: &str, pos: Pos) -> PResult<()> {
        let ctx = format!("constant {}", show_name(name));
        let (ty, init, sparse) = if self.is_kw("sparse")? {
            let s = self.sparse_lit(&ctx, name)?;
            let ty = Type::SparseTensor(TensorType::new(s.values.dtype, &s.dims));
            (ty, None, Some(s))
        } else {
            let lit_pos = self.peek()?.pos;
            let lit = self.tensor_lit(&ctx, name, true)?;
            if self.is_punct(b':')? && has_channels(&lit.ty) {
                return Err(lit_pos.error(format!(
                    "{ctx}: channel expressions go on the value type after ':', not on the literal"
                )));
            }
            (Type::Tensor(lit.ty), Some(lit.tensor), None)
        };
        let info = if self.eat_punct(b':')? {
            self.info()?
        } else {
            Info {
                ty: Some(ty),
                ..Info::default()
            }
        };
        let id = scope.define(name, pos)?;
        let v = scope.value_mut(id);
        info.apply(v);
        v.def = ValueDef::Const;
        v.init = init;
        v.sparse_init = sparse;
        Ok(())
    }

    fn default_stmt(&mut self, scope: &mut Scope, name: &str, pos: Pos) -> PResult<()> {
        let id = scope
            .names
            .get(name)
            .copied()
            .filter(|id| scope.graph.inputs.contains(id))
            .ok_or_else(|| {
                pos.error(format!(
                    "'default' gives a graph input its initializer, but {} is not a graph input",
                    show_name(name)
                ))
            })?;
        let ctx = format!("default of {}", show_name(name));
        let (init, sparse) = if self.is_kw("sparse")? {
            (None, Some(self.sparse_lit(&ctx, name)?))
        } else {
            (Some(self.tensor_lit(&ctx, name, false)?.tensor), None)
        };
        let v = scope.value_mut(id);
        if v.init.is_some() || v.sparse_init.is_some() {
            return Err(pos.error(format!("{} has two defaults", show_name(name))));
        }
        v.init = init;
        v.sparse_init = sparse;
        Ok(())
    }

    /// `onnx.Conv`, `com.microsoft.FusedConv`, `"domain".Op`, `"domain"."op"`.
    fn op_name(&mut self) -> PResult<(String, String)> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(s) => match s.rsplit_once('.') {
                Some((d, op)) => {
                    let d = if d == "onnx" { "" } else { d };
                    Ok((d.to_string(), op.to_string()))
                }
                None => Err(Self::found(
                    &t,
                    "an op name with its domain ('onnx.Conv', 'com.microsoft.FusedConv')",
                )),
            },
            Tok::Str(b) => {
                let domain = String::from_utf8(b)
                    .map_err(|_| t.pos.error("an op domain is not valid UTF-8"))?;
                self.expect_punct(b'.', "between the op domain and the op name")?;
                let op = self.name("an op name")?;
                Ok((domain, op))
            }
            _ => Err(Self::found(&t, "an op name")),
        }
    }

    fn node_stmt(&mut self, scope: &mut Scope, results: Vec<Option<(String, Pos)>>) -> PResult<()> {
        let (domain, op_type) = self.op_name()?;
        let mut node = Node::new(op_type);
        node.domain = domain;
        self.expect_punct(b'(', "after the op name")?;
        if !self.eat_punct(b')')? {
            loop {
                let t = self.next()?;
                match t.tok {
                    Tok::Value(n) => node.inputs.push(Some(scope.use_value(&n))),
                    Tok::Ident("_") => node.inputs.push(None),
                    _ => return Err(Self::found(&t, "an operand ('%x' or '_')")),
                }
                if self.eat_punct(b',')? {
                    continue;
                }
                self.expect_punct(b')', "after operand list")?;
                break;
            }
        }
        if self.is_punct(b'{')? {
            node.attrs = self.attr_dict()?;
        }
        let present = results.iter().flatten().count();
        let mut infos: Vec<Info> = Vec::new();
        let colon = self.peek()?.pos;
        if self.eat_punct(b':')? {
            loop {
                infos.push(self.info()?);
                if !self.eat_punct(b',')? {
                    break;
                }
            }
            if infos.len() != present {
                return Err(colon.error(format!(
                    "expected {present} result types (one per result that is not '_'), found {}",
                    infos.len()
                )));
            }
        }
        let mut seen = Vec::new();
        loop {
            let t = self.peek()?;
            let Tok::Ident(kw) = t.tok else { break };
            let kw: &'static str = match kw {
                "loc" => "loc",
                "doc" => "doc",
                "overload" => "overload",
                "metadata" => "metadata",
                _ => break,
            };
            Self::once(&mut seen, kw, t.pos)?;
            self.next()?;
            match kw {
                "loc" => node.name = self.paren_string("loc")?,
                "doc" => node.doc_string = self.paren_string("doc")?,
                "overload" => node.overload = self.paren_string("overload")?,
                _ => node.metadata_props = self.metadata()?,
            }
        }
        let mut infos = infos.into_iter();
        for r in results {
            match r {
                Some((name, pos)) => {
                    let id = scope.define(&name, pos)?;
                    if let Some(info) = infos.next() {
                        info.apply(scope.value_mut(id));
                    }
                    node.outputs.push(Some(id));
                }
                None => node.outputs.push(None),
            }
        }
        scope.graph.add_node(node);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Attributes

    fn attr_dict(&mut self) -> PResult<Vec<Attribute>> {
        self.expect_punct(b'{', "to open the attributes")?;
        let mut out = Vec::new();
        if self.eat_punct(b'}')? {
            return Ok(out);
        }
        loop {
            let name = self.name("an attribute name")?;
            self.expect_punct(b'=', "after the attribute name")?;
            out.push(self.attr_rest(name)?);
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b'}', "after attributes")?;
            return Ok(out);
        }
    }

    /// The value of attribute `name` and its optional `doc(...)`.
    fn attr_rest(&mut self, name: String) -> PResult<Attribute> {
        let value = self.attr_value(&name, true)?;
        let mut a = Attribute::new(name, value);
        if self.is_kw("doc")? {
            self.next()?;
            a.doc_string = self.paren_string("doc")?;
        }
        Ok(a)
    }

    fn attr_value(&mut self, name: &str, top: bool) -> PResult<AttrValue> {
        let t = self.peek()?;
        let ctx = || format!("attribute '{name}'");
        Ok(match t.tok {
            Tok::Num(s) => {
                self.next()?;
                if is_float_lexeme(s) {
                    AttrValue::Float(
                        literal::parse_f32(s)
                            .ok_or_else(|| t.pos.error(format!("invalid float {s}")))?,
                    )
                } else {
                    AttrValue::Int(
                        literal::parse_int(s)
                            .and_then(|v| i64::try_from(v).ok())
                            .ok_or_else(|| t.pos.error(format!("integer {s} does not fit i64")))?,
                    )
                }
            }
            Tok::Ident("inf") => {
                self.next()?;
                AttrValue::Float(f32::INFINITY)
            }
            Tok::Ident("nan") => match self.scalar()? {
                Scalar::NanBits(b) => AttrValue::Float(f32::from_bits(
                    u32::try_from(b).map_err(|_| t.pos.error("NaN bits do not fit f32"))?,
                )),
                _ => AttrValue::Float(f32::NAN),
            },
            Tok::Str(b) => {
                self.next()?;
                AttrValue::String(Bytes::from(b))
            }
            Tok::Punct(b'[') if top => self.attr_list(name)?,
            Tok::Punct(b'[') => return Err(t.pos.error("attribute lists do not nest")),
            Tok::Ident("graph") => AttrValue::Graph(Box::new(self.graph(Kind::Sub)?)),
            Tok::Ident("type") => {
                self.next()?;
                self.expect_punct(b'<', "after 'type'")?;
                let ty = self.ty()?;
                self.expect_punct(b'>', "to close 'type<...>'")?;
                AttrValue::Type(ty)
            }
            Tok::Ident("sparse") => AttrValue::SparseTensor(Box::new(self.sparse_lit(&ctx(), "")?)),
            Tok::Ident(d) if DType::from_name(d).is_some() => {
                AttrValue::Tensor(self.tensor_lit(&ctx(), "", false)?.tensor)
            }
            Tok::Punct(b'@') if top => {
                self.next()?;
                self.expect_kw("ref")?;
                self.expect_punct(b'(', "after '@ref'")?;
                let r = self.name("the referenced attribute name")?;
                self.expect_punct(b')', "after the referenced attribute name")?;
                self.expect_punct(b':', "and the attribute kind after '@ref(...)'")?;
                let kind = self.attr_kind()?;
                AttrValue::Ref { kind, name: r }
            }
            _ => return Err(Self::found(&t, format!("a value for {}", ctx()))),
        })
    }

    fn attr_kind(&mut self) -> PResult<AttrKind> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(k) => AttrKind::from_name(k).ok_or_else(|| {
                t.pos.error(format!(
                    "unknown attribute kind '{k}' (expected int, float, string, tensor, graph, \
                     sparse_tensor, type, or one of those in the plural)"
                ))
            }),
            _ => Err(Self::found(&t, "an attribute kind")),
        }
    }

    /// `[1, 2]`, `[1.0, 2]` (floats), `["a"]`, `[f32[1] dense<[1.0]>]`, `[] : ints`.
    fn attr_list(&mut self, name: &str) -> PResult<AttrValue> {
        let open = self.expect_punct(b'[', "")?;
        self.enter(open)?;
        let mut items: Vec<(AttrValue, Pos)> = Vec::new();
        if !self.eat_punct(b']')? {
            loop {
                let pos = self.peek()?.pos;
                items.push((self.attr_value(name, false)?, pos));
                if self.eat_punct(b',')? {
                    continue;
                }
                self.expect_punct(b']', "after list elements")?;
                break;
            }
        }
        self.leave();
        let explicit = if self.eat_punct(b':')? {
            let pos = self.peek()?.pos;
            let k = self.attr_kind()?;
            if list_of(k, Vec::new()).is_none() {
                return Err(pos.error(format!("'{}' is not a list kind", k.name())));
            }
            Some(k)
        } else {
            None
        };
        let kind = match explicit {
            Some(k) => k,
            None => {
                let Some((first, _)) = items.first() else {
                    return Err(open.error(format!(
                        "empty list for attribute '{name}' needs its kind, e.g. '[] : ints'"
                    )));
                };
                let any_float = items.iter().any(|(v, _)| matches!(v, AttrValue::Float(_)));
                match first {
                    AttrValue::Int(_) | AttrValue::Float(_) if any_float => AttrKind::Floats,
                    AttrValue::Int(_) => AttrKind::Ints,
                    AttrValue::String(_) => AttrKind::Strings,
                    AttrValue::Tensor(_) => AttrKind::Tensors,
                    AttrValue::Graph(_) => AttrKind::Graphs,
                    AttrValue::SparseTensor(_) => AttrKind::SparseTensors,
                    _ => AttrKind::Types,
                }
            }
        };
        let want = kind.name();
        let mut converted = Vec::with_capacity(items.len());
        for (v, pos) in items {
            let v = match (kind, v) {
                (AttrKind::Floats, AttrValue::Int(i)) => AttrValue::Float(i as f32),
                (_, v) => v,
            };
            let ok = matches!(
                (kind, &v),
                (AttrKind::Floats, AttrValue::Float(_))
                    | (AttrKind::Ints, AttrValue::Int(_))
                    | (AttrKind::Strings, AttrValue::String(_))
                    | (AttrKind::Tensors, AttrValue::Tensor(_))
                    | (AttrKind::Graphs, AttrValue::Graph(_))
                    | (AttrKind::SparseTensors, AttrValue::SparseTensor(_))
                    | (AttrKind::Types, AttrValue::Type(_))
            );
            if !ok {
                return Err(pos.error(format!(
                    "a list of {want} cannot hold a {} element",
                    v.kind().name()
                )));
            }
            converted.push(v);
        }
        list_of(kind, converted).ok_or_else(|| open.error("internal error: list kind"))
    }

    // -----------------------------------------------------------------------------------------
    // Types

    fn ty(&mut self) -> PResult<Type> {
        let t = self.peek()?;
        self.enter(t.pos)?;
        let ty = match t.tok {
            Tok::Punct(b'?') => {
                self.next()?;
                if self.is_punct(b'[')? {
                    Type::Tensor(TensorType {
                        dtype: None,
                        shape: self.shape()?,
                    })
                } else {
                    Type::Unknown
                }
            }
            Tok::Ident(kw @ ("seq" | "opt")) => {
                self.next()?;
                self.expect_punct(b'<', &format!("after '{kw}'"))?;
                let inner = self.ty()?;
                self.expect_punct(b'>', &format!("to close '{kw}<...>'"))?;
                if kw == "seq" {
                    Type::Sequence(Box::new(inner))
                } else {
                    Type::Optional(Box::new(inner))
                }
            }
            Tok::Ident("map") => {
                self.next()?;
                self.expect_punct(b'<', "after 'map'")?;
                let k = self.dtype()?;
                self.expect_punct(b',', "after the key type of 'map<...>'")?;
                let v = self.ty()?;
                self.expect_punct(b'>', "to close 'map<...>'")?;
                Type::Map(k, Box::new(v))
            }
            Tok::Ident("sparse") => {
                self.next()?;
                self.expect_punct(b'<', "after 'sparse'")?;
                let pos = self.peek()?.pos;
                let Type::Tensor(inner) = self.ty()? else {
                    return Err(pos.error("'sparse<...>' holds a tensor type"));
                };
                self.expect_punct(b'>', "to close 'sparse<...>'")?;
                Type::SparseTensor(inner)
            }
            Tok::Ident(_) => {
                let dtype = self.dtype()?;
                Type::Tensor(TensorType {
                    dtype: Some(dtype),
                    shape: self.shape()?,
                })
            }
            _ => return Err(Self::found(&t, "a type")),
        };
        self.leave();
        Ok(ty)
    }

    fn dtype(&mut self) -> PResult<DType> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(s) => DType::from_name(s).ok_or_else(|| {
                t.pos
                    .error(format!("unknown dtype '{s}' (expected f32, f16, bf16, f64, i8, i16, i32, i64, u8, u16, u32, u64, bool, str, ...)"))
            }),
            _ => Err(Self::found(&t, "a dtype")),
        }
    }

    /// `[1,64@g0,batch,?]` or `[*]` (rank unknown).
    fn shape(&mut self) -> PResult<Option<Vec<Axis>>> {
        self.expect_punct(b'[', "after the dtype")?;
        if self.eat_punct(b'*')? {
            self.expect_punct(b']', "after '[*'")?;
            return Ok(None);
        }
        let mut axes = Vec::new();
        if self.eat_punct(b']')? {
            return Ok(Some(axes));
        }
        loop {
            let t = self.next()?;
            let dim = match t.tok {
                Tok::Num(s) => Dim::Known(
                    literal::parse_int(s)
                        .and_then(|v| i64::try_from(v).ok())
                        .ok_or_else(|| {
                            t.pos
                                .error(format!("expected an integer dimension, found number {s}"))
                        })?,
                ),
                Tok::Punct(b'?') => Dim::Unknown,
                Tok::Ident(s) => Dim::Sym(s.to_string()),
                Tok::Str(b) => Dim::Sym(
                    String::from_utf8(b)
                        .map_err(|_| t.pos.error("a symbolic dimension is not valid UTF-8"))?,
                ),
                _ => return Err(Self::found(&t, "a dimension (a number, '?' or a symbol)")),
            };
            let channels = if self.eat_punct(b'@')? {
                Some(self.chan()?)
            } else {
                None
            };
            axes.push(Axis { dim, channels });
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b']', "after the dimensions of a type")?;
            return Ok(Some(axes));
        }
    }

    /// `g3`, `49`, `cat(g0,g3)`, `(g5*49)`.
    fn chan(&mut self) -> PResult<ChannelExpr> {
        let t = self.next()?;
        self.enter(t.pos)?;
        let expected = "a channel expression (gN, an integer, cat(...) or (a*b))";
        let e =
            match t.tok {
                Tok::Ident("cat") if self.is_punct(b'(')? => {
                    self.next()?;
                    let mut xs = Vec::new();
                    if !self.eat_punct(b')')? {
                        loop {
                            xs.push(self.chan()?);
                            if self.eat_punct(b',')? {
                                continue;
                            }
                            self.expect_punct(b')', "to close 'cat(...)'")?;
                            break;
                        }
                    }
                    ChannelExpr::Cat(xs)
                }
                Tok::Ident(s) => match s
                    .strip_prefix('g')
                    .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                {
                    Some(d) => ChannelExpr::Space(SpaceId(d.parse().map_err(|_| {
                        t.pos.error(format!("channel space '{s}' is out of range"))
                    })?)),
                    None => return Err(Self::found(&t, expected)),
                },
                Tok::Num(s) => ChannelExpr::Lit(
                    literal::parse_int(s)
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| Self::found(&t, expected))?,
                ),
                Tok::Punct(b'(') => {
                    let mut xs = Vec::new();
                    if !self.eat_punct(b')')? {
                        loop {
                            xs.push(self.chan()?);
                            if self.eat_punct(b'*')? {
                                continue;
                            }
                            self.expect_punct(b')', "or '*' in a channel product")?;
                            break;
                        }
                    }
                    ChannelExpr::Prod(xs)
                }
                _ => return Err(Self::found(&t, expected)),
            };
        self.leave();
        Ok(e)
    }

    // -----------------------------------------------------------------------------------------
    // Tensor literals

    /// One element: a number, `inf`, `nan`, `nan(0x...)`, `true`/`false`, a string.
    fn scalar(&mut self) -> PResult<Scalar<'a>> {
        let t = self.next()?;
        Ok(match t.tok {
            Tok::Num(s) => Scalar::Num(s),
            Tok::Ident("inf") => Scalar::Num("inf"),
            Tok::Ident("nan") => {
                if self.eat_punct(b'(')? {
                    let h = self.next()?;
                    let bits = match h.tok {
                        Tok::Num(s) if s.starts_with("0x") || s.starts_with("0X") => {
                            literal::parse_int(s)
                                .and_then(|v| u64::try_from(v).ok())
                                .ok_or_else(|| Self::found(&h, "NaN bits in hex"))?
                        }
                        _ => return Err(Self::found(&h, "NaN bits in hex ('nan(0x7fc00001)')")),
                    };
                    self.expect_punct(b')', "after the NaN bits")?;
                    Scalar::NanBits(bits)
                } else {
                    Scalar::Num("nan")
                }
            }
            Tok::Ident("true") => Scalar::Bool(true),
            Tok::Ident("false") => Scalar::Bool(false),
            Tok::Str(b) => Scalar::Str(b),
            _ => return Err(Self::found(&t, "a tensor element")),
        })
    }

    /// `dtype[dims] <data> [as field] [external(...)] [{name = ..., doc = ..., metadata = ...}]`.
    fn tensor_lit(&mut self, ctx: &str, default_name: &str, allow_channels: bool) -> PResult<Lit> {
        let tpos = self.peek()?.pos;
        let ty = self.ty()?;
        let written = {
            let mut s = String::new();
            write_type(&mut s, &ty);
            s
        };
        let Type::Tensor(tt) = ty else {
            return Err(tpos.error(format!(
                "{ctx}: expected a tensor type such as f32[2,3], found {written}"
            )));
        };
        let Some(dtype) = tt.dtype else {
            return Err(tpos.error(format!("{ctx}: a constant needs a dtype, found {written}")));
        };
        let dims: Option<Vec<i64>> = tt
            .shape
            .as_ref()
            .and_then(|s| s.iter().map(|a| a.dim.known()).collect());
        let Some(dims) = dims else {
            return Err(tpos.error(format!(
                "{ctx}: a constant needs a static shape, found {written}"
            )));
        };
        if !allow_channels && has_channels(&tt) {
            return Err(tpos.error(format!("{ctx}: channel expressions are not allowed here")));
        }
        let count = || {
            dims.iter()
                .try_fold(1u64, |acc, &d| {
                    u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
                })
                .ok_or_else(|| tpos.error(format!("{ctx}: invalid dims in {written}")))
        };

        let t = self.next()?;
        // `packed` is true when the data is packed bytes that `as` and `external` may reinterpret.
        let (data, packed) = match t.tok {
            Tok::Ident("dense") => {
                let n = count()?;
                let mut b =
                    DenseBuilder::new(dtype).map_err(|m| t.pos.error(format!("{ctx}: {m}")))?;
                self.expect_punct(b'<', "after 'dense'")?;
                self.dense(&mut b, ctx)?;
                self.expect_punct(b'>', "to close 'dense<...>'")?;
                let want = b.scalars_for(n).unwrap_or(u64::MAX);
                if b.len() != want {
                    return Err(t.pos.error(format!(
                        "{ctx}: dense<...> has {} values, but {written} needs {want}",
                        b.len()
                    )));
                }
                (b.finish(), dtype != DType::Str)
            }
            Tok::Ident("hex") => {
                self.expect_punct(b'<', "after 'hex'")?;
                let s = self.next()?;
                let Tok::Str(hex) = s.tok else {
                    return Err(Self::found(&s, "a string of hex digits"));
                };
                let bytes = decode_hex(&hex).ok_or_else(|| {
                    s.pos.error(format!(
                        "{ctx}: hex<...> needs an even number of hex digits"
                    ))
                })?;
                self.expect_punct(b'>', "to close 'hex<...>'")?;
                (TensorData::Raw(Bytes::from(bytes)), true)
            }
            Tok::Hash(g @ ("splat" | "iota" | "rand")) => {
                let n = count()?;
                let mut b =
                    DenseBuilder::new(dtype).map_err(|m| t.pos.error(format!("{ctx}: {m}")))?;
                let r = match g {
                    "splat" => {
                        self.expect_punct(b'<', "after '#splat'")?;
                        let v = self.scalar()?;
                        self.expect_punct(b'>', "to close '#splat<...>'")?;
                        b.splat(&v, n)
                    }
                    "iota" => b.iota(n),
                    _ => {
                        self.expect_punct(b'<', "after '#rand'")?;
                        let seed = self.int_u64("a seed")?;
                        self.expect_punct(b'>', "to close '#rand<...>'")?;
                        b.rand(seed, n)
                    }
                };
                r.map_err(|m| t.pos.error(format!("{ctx}: {m}")))?;
                (b.finish(), dtype != DType::Str)
            }
            Tok::Hash("elided") => {
                return Err(t.pos.error(format!(
                    "{ctx} is elided; print with --print-constants to round-trip"
                )))
            }
            Tok::Ident(f) if Field::from_name(f).is_some_and(|f| f != Field::Raw) => {
                let field = Field::from_name(f).unwrap_or(Field::Raw);
                (self.verbatim(field, ctx)?, false)
            }
            _ => {
                return Err(Self::found(
                    &t,
                    format!(
                    "data for {ctx} (dense<[...]>, hex<\"...\">, #splat<v>, #iota or #rand<seed>)"
                ),
                ))
            }
        };
        let mut data = data;
        if self.is_kw("as")? {
            let a = self.next()?;
            let f = self.next()?;
            let field = match f.tok {
                Tok::Ident(s) => Field::from_name(s).ok_or_else(|| {
                    f.pos.error(format!("unknown storage field '{s}' (expected raw_data, float_data, int32_data, int64_data, double_data or uint64_data)"))
                })?,
                _ => return Err(Self::found(&f, "a storage field after 'as'")),
            };
            let TensorData::Raw(raw) = &data else {
                return Err(a.pos.error(format!(
                    "{ctx}: 'as' applies to numeric dense, hex or generated data"
                )));
            };
            if !packed {
                return Err(a.pos.error(format!(
                    "{ctx}: 'as' applies to numeric dense, hex or generated data"
                )));
            }
            data = literal::raw_to_field(dtype, raw, field).ok_or_else(|| {
                f.pos.error(format!(
                    "{ctx}: {} cannot hold these {dtype} elements",
                    field.name()
                ))
            })?;
        }
        if self.is_kw("external")? {
            let e = self.next()?;
            let entries = self.external_entries()?;
            match data {
                TensorData::Raw(bytes) if packed => {
                    data = TensorData::External(ExternalData { entries, bytes });
                }
                _ => {
                    return Err(e.pos.error(format!(
                        "{ctx}: external data must be dense, hex or generated bytes without 'as'"
                    )))
                }
            }
        }
        let mut tensor = Tensor {
            name: default_name.to_string(),
            dtype,
            dims,
            data,
            doc_string: String::new(),
            metadata_props: Vec::new(),
        };
        if self.eat_punct(b'{')? && !self.eat_punct(b'}')? {
            let mut seen = Vec::new();
            loop {
                let k = self.next()?;
                match k.tok {
                    Tok::Ident("name") => {
                        Self::once(&mut seen, "name", k.pos)?;
                        self.expect_punct(b'=', "after 'name'")?;
                        tensor.name = self.string("a tensor name")?;
                    }
                    Tok::Ident("doc") => {
                        Self::once(&mut seen, "doc", k.pos)?;
                        self.expect_punct(b'=', "after 'doc'")?;
                        tensor.doc_string = self.string("a doc string")?;
                    }
                    Tok::Ident("metadata") => {
                        Self::once(&mut seen, "metadata", k.pos)?;
                        self.expect_punct(b'=', "after 'metadata'")?;
                        tensor.metadata_props = self.metadata()?;
                    }
                    _ => {
                        return Err(Self::found(
                            &k,
                            "a tensor annotation ('name', 'doc' or 'metadata')",
                        ))
                    }
                }
                if self.eat_punct(b',')? {
                    continue;
                }
                self.expect_punct(b'}', "after tensor annotations")?;
                break;
            }
        }
        Ok(Lit { tensor, ty: tt })
    }

    /// `[1.0, 2.0]` or nested lists, flattened.
    fn dense(&mut self, b: &mut DenseBuilder, ctx: &str) -> PResult<()> {
        let open = self.expect_punct(b'[', "to open the elements")?;
        self.enter(open)?;
        if !self.eat_punct(b']')? {
            loop {
                if self.is_punct(b'[')? {
                    self.dense(b, ctx)?;
                } else {
                    let pos = self.peek()?.pos;
                    let s = self.scalar()?;
                    b.push(&s).map_err(|m| pos.error(format!("{ctx}: {m}")))?;
                }
                if self.eat_punct(b',')? {
                    continue;
                }
                self.expect_punct(b']', "after tensor elements")?;
                break;
            }
        }
        self.leave();
        Ok(())
    }

    /// `int32_data<[...]>` and friends: the field exactly as stored.
    fn verbatim(&mut self, field: Field, ctx: &str) -> PResult<TensorData> {
        self.expect_punct(b'<', &format!("after '{}'", field.name()))?;
        self.expect_punct(b'[', "to open the stored values")?;
        let mut data = match field {
            Field::Floats => TensorData::Floats(Vec::new()),
            Field::Int32s => TensorData::Int32s(Vec::new()),
            Field::Int64s => TensorData::Int64s(Vec::new()),
            Field::Doubles => TensorData::Doubles(Vec::new()),
            Field::Uint64s => TensorData::Uint64s(Vec::new()),
            Field::Strings | Field::Raw => TensorData::Strings(Vec::new()),
        };
        if !self.eat_punct(b']')? {
            loop {
                let pos = self.peek()?.pos;
                let s = self.scalar()?;
                let bad =
                    |what: &str| pos.error(format!("{ctx}: expected {what} in {}", field.name()));
                let int = |s: &Scalar<'_>| match s {
                    Scalar::Num(t) => literal::parse_int(t),
                    _ => None,
                };
                match &mut data {
                    TensorData::Floats(v) => v.push(match &s {
                        Scalar::NanBits(b) => {
                            f32::from_bits(u32::try_from(*b).map_err(|_| bad("f32 NaN bits"))?)
                        }
                        Scalar::Num(t) => literal::parse_f32(t).ok_or_else(|| bad("a float"))?,
                        _ => return Err(bad("a float")),
                    }),
                    TensorData::Doubles(v) => v.push(match &s {
                        Scalar::NanBits(b) => f64::from_bits(*b),
                        Scalar::Num(t) => literal::parse_f64(t).ok_or_else(|| bad("a float"))?,
                        _ => return Err(bad("a float")),
                    }),
                    TensorData::Int32s(v) => v.push(
                        int(&s)
                            .and_then(|x| i32::try_from(x).ok())
                            .ok_or_else(|| bad("an i32"))?,
                    ),
                    TensorData::Int64s(v) => v.push(
                        int(&s)
                            .and_then(|x| i64::try_from(x).ok())
                            .ok_or_else(|| bad("an i64"))?,
                    ),
                    TensorData::Uint64s(v) => v.push(
                        int(&s)
                            .and_then(|x| u64::try_from(x).ok())
                            .ok_or_else(|| bad("a u64"))?,
                    ),
                    TensorData::Strings(v) => match s {
                        Scalar::Str(b) => v.push(Bytes::from(b)),
                        _ => return Err(bad("a string")),
                    },
                    TensorData::Raw(_) | TensorData::External(_) => {}
                }
                if self.eat_punct(b',')? {
                    continue;
                }
                self.expect_punct(b']', "after the stored values")?;
                break;
            }
        }
        self.expect_punct(b'>', &format!("to close '{}<...>'", field.name()))?;
        Ok(data)
    }

    /// `(location = "w.bin", offset = 0, length = 256)`, in order.
    fn external_entries(&mut self) -> PResult<Vec<(String, String)>> {
        self.expect_punct(b'(', "after 'external'")?;
        let mut out = Vec::new();
        if self.eat_punct(b')')? {
            return Ok(out);
        }
        loop {
            let k = self.name("an external data key")?;
            self.expect_punct(b'=', "after the external data key")?;
            let t = self.next()?;
            let v = match t.tok {
                Tok::Num(s) => s.to_string(),
                Tok::Str(b) => String::from_utf8(b)
                    .map_err(|_| t.pos.error("an external data value is not valid UTF-8"))?,
                _ => return Err(Self::found(&t, "a number or a string")),
            };
            out.push((k, v));
            if self.eat_punct(b',')? {
                continue;
            }
            self.expect_punct(b')', "after the external data entries")?;
            return Ok(out);
        }
    }

    /// `sparse<[4,4], <values literal>, <indices literal>>`.
    fn sparse_lit(&mut self, ctx: &str, values_name: &str) -> PResult<SparseTensor> {
        self.expect_kw("sparse")?;
        self.expect_punct(b'<', "after 'sparse'")?;
        self.expect_punct(b'[', "to open the dims of a sparse tensor")?;
        let mut dims = Vec::new();
        if !self.eat_punct(b']')? {
            loop {
                dims.push(self.int_i64("a dimension")?);
                if self.eat_punct(b',')? {
                    continue;
                }
                self.expect_punct(b']', "after the dims of a sparse tensor")?;
                break;
            }
        }
        self.expect_punct(b',', "after the dims of a sparse tensor")?;
        let values = self
            .tensor_lit(&format!("{ctx} (values)"), values_name, false)?
            .tensor;
        self.expect_punct(b',', "after the values of a sparse tensor")?;
        let indices = self
            .tensor_lit(&format!("{ctx} (indices)"), "", false)?
            .tensor;
        self.expect_punct(b'>', "to close 'sparse<...>'")?;
        Ok(SparseTensor {
            values,
            indices,
            dims,
        })
    }
}

fn has_channels(t: &TensorType) -> bool {
    t.shape
        .as_ref()
        .is_some_and(|s| s.iter().any(|a| a.channels.is_some()))
}

fn is_float_lexeme(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    if body.starts_with("0x") || body.starts_with("0X") {
        return false;
    }
    body.contains(['.', 'e', 'E']) || body == "inf" || body == "nan"
}

fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| {
            let h = (p[0] as char).to_digit(16)?;
            let l = (p[1] as char).to_digit(16)?;
            Some((h * 16 + l) as u8)
        })
        .collect()
}

fn list_of(kind: AttrKind, items: Vec<AttrValue>) -> Option<AttrValue> {
    fn take<T>(items: Vec<AttrValue>, f: impl Fn(AttrValue) -> Option<T>) -> Option<Vec<T>> {
        items.into_iter().map(f).collect()
    }
    Some(match kind {
        AttrKind::Floats => AttrValue::Floats(take(items, |v| match v {
            AttrValue::Float(x) => Some(x),
            _ => None,
        })?),
        AttrKind::Ints => AttrValue::Ints(take(items, |v| match v {
            AttrValue::Int(x) => Some(x),
            _ => None,
        })?),
        AttrKind::Strings => AttrValue::Strings(take(items, |v| match v {
            AttrValue::String(x) => Some(x),
            _ => None,
        })?),
        AttrKind::Tensors => AttrValue::Tensors(take(items, |v| match v {
            AttrValue::Tensor(x) => Some(x),
            _ => None,
        })?),
        AttrKind::Graphs => AttrValue::Graphs(take(items, |v| match v {
            AttrValue::Graph(x) => Some(*x),
            _ => None,
        })?),
        AttrKind::SparseTensors => AttrValue::SparseTensors(take(items, |v| match v {
            AttrValue::SparseTensor(x) => Some(*x),
            _ => None,
        })?),
        AttrKind::Types => AttrValue::Types(take(items, |v| match v {
            AttrValue::Type(x) => Some(x),
            _ => None,
        })?),
        _ => return None,
    })
}
