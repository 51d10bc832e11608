//! The index-space e-graph. Leaves are axes (of values, or spaces local to a node); `cat` and `*`
//! (mixed-radix product, outermost factor first) compose them. Coupling facts become unions; a
//! small directional ruleset normalizes the algebra; the runner has node, iteration and time limits.
//!
//! Rules (all one-directional; none adds commutativity):
//! - `flatten-prod`, `flatten-cat`: a product (concatenation) whose factor is itself a product
//!   (concatenation) equals the flat one: both are associative.
//! - `prod-drop-unit`: a factor of size 1 does not change the index map of a product.
//! - `cat-drop-empty`: a part of size 0 does not change the index map of a concatenation.
//! - `prod-align`: two products of the same class whose outermost factors have equal sizes index
//!   the same way, so those factors (and the remaining products) are equal; generally, runs of
//!   factors between equal cumulative sizes are equal.
//! - `cat-align`: the same for concatenations, with cumulative offsets.

use egg::{
    define_language, Analysis, Applier, DidMerge, EGraph, Id, PatternAst, Rewrite, SearchMatches,
    Searcher, Subst, Symbol, Var,
};

define_language! {
    /// A node of the index-space e-graph.
    pub enum SpaceNode {
        "cat" = Cat(Box<[Id]>),
        "*" = Prod(Box<[Id]>),
        Leaf(u32),
    }
}

/// Class data: the size of the space, when known.
#[derive(Default)]
pub struct SpaceSizes {
    /// Size of each leaf, by leaf number.
    pub leaf_sizes: Vec<Option<u64>>,
    /// Unions that joined spaces of different sizes (a coupling rule or model bug).
    pub conflicts: Vec<(u64, u64)>,
}

pub type SpaceGraph = EGraph<SpaceNode, SpaceSizes>;

impl Analysis<SpaceNode> for SpaceSizes {
    type Data = Option<u64>;

    fn make(egraph: &mut SpaceGraph, enode: &SpaceNode, _id: Id) -> Option<u64> {
        match enode {
            SpaceNode::Leaf(i) => egraph
                .analysis
                .leaf_sizes
                .get(*i as usize)
                .copied()
                .flatten(),
            SpaceNode::Cat(xs) => xs.iter().try_fold(0u64, |acc, x| {
                egraph[*x].data.and_then(|n| acc.checked_add(n))
            }),
            SpaceNode::Prod(xs) => xs.iter().try_fold(1u64, |acc, x| {
                egraph[*x].data.and_then(|n| acc.checked_mul(n))
            }),
        }
    }

    fn merge(&mut self, to: &mut Option<u64>, from: Option<u64>) -> DidMerge {
        match (*to, from) {
            (None, Some(b)) => {
                *to = Some(b);
                DidMerge(true, false)
            }
            (Some(a), Some(b)) if a != b => {
                self.conflicts.push((a, b));
                DidMerge(false, true)
            }
            (Some(_), None) => DidMerge(false, true),
            _ => DidMerge(false, false),
        }
    }
}

/// The algebra rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    FlattenProd,
    FlattenCat,
    ProdDropUnit,
    CatDropEmpty,
    ProdAlign,
    CatAlign,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Rule::FlattenProd => "flatten-prod",
            Rule::FlattenCat => "flatten-cat",
            Rule::ProdDropUnit => "prod-drop-unit",
            Rule::CatDropEmpty => "cat-drop-empty",
            Rule::ProdAlign => "prod-align",
            Rule::CatAlign => "cat-align",
        }
    }

    fn is_prod(self) -> bool {
        matches!(
            self,
            Rule::FlattenProd | Rule::ProdDropUnit | Rule::ProdAlign
        )
    }
}

fn children(node: &SpaceNode, prod: bool) -> Option<&[Id]> {
    match (node, prod) {
        (SpaceNode::Prod(xs), true) => Some(xs),
        (SpaceNode::Cat(xs), false) => Some(xs),
        _ => None,
    }
}

fn make(prod: bool, xs: Vec<Id>) -> SpaceNode {
    if prod {
        SpaceNode::Prod(xs.into_boxed_slice())
    } else {
        SpaceNode::Cat(xs.into_boxed_slice())
    }
}

/// Does `node` already live in class `class`?
fn present(egraph: &SpaceGraph, class: Id, node: &SpaceNode) -> bool {
    egraph
        .lookup(node.clone())
        .is_some_and(|id| egraph.find(id) == egraph.find(class))
}

/// A change a rule makes.
enum Action {
    /// Add the node and union it with the class.
    AddTo(Id, SpaceNode),
    /// Union two classes.
    Union(Id, Id),
    /// Add both nodes and union them.
    Join(SpaceNode, SpaceNode),
}

/// What the rule would change in `class`; empty when it has nothing to do there.
fn plan(rule: Rule, egraph: &SpaceGraph, class: Id) -> Vec<Action> {
    let prod = rule.is_prod();
    let size = |id: Id| egraph[id].data;
    let class = egraph.find(class);
    let mut actions = Vec::new();
    let nodes: Vec<&[Id]> = egraph[class]
        .nodes
        .iter()
        .filter_map(|n| children(n, prod))
        .collect();
    match rule {
        Rule::FlattenProd | Rule::FlattenCat => {
            for xs in &nodes {
                if xs.iter().any(|&x| size(x).is_none()) {
                    continue;
                }
                for (i, &x) in xs.iter().enumerate() {
                    let x = egraph.find(x);
                    if x == class {
                        continue;
                    }
                    let inner = egraph[x]
                        .nodes
                        .iter()
                        .filter_map(|n| children(n, prod))
                        .find(|ys| ys.len() >= 2 && ys.iter().all(|&y| egraph.find(y) != class));
                    if let Some(ys) = inner {
                        let mut flat = xs[..i].to_vec();
                        flat.extend_from_slice(ys);
                        flat.extend_from_slice(&xs[i + 1..]);
                        let node = make(prod, flat);
                        if !present(egraph, class, &node) {
                            actions.push(Action::AddTo(class, node));
                        }
                    }
                }
            }
        }
        Rule::ProdDropUnit | Rule::CatDropEmpty => {
            let neutral = if prod { 1 } else { 0 };
            for xs in &nodes {
                if xs.iter().any(|&x| size(x) == Some(neutral)) {
                    let kept: Vec<Id> = xs
                        .iter()
                        .copied()
                        .filter(|&x| size(x) != Some(neutral))
                        .collect();
                    match kept.len() {
                        0 => {}
                        1 => {
                            if egraph.find(kept[0]) != class {
                                actions.push(Action::Union(class, kept[0]));
                            }
                        }
                        _ => {
                            let node = make(prod, kept);
                            if !present(egraph, class, &node) {
                                actions.push(Action::AddTo(class, node));
                            }
                        }
                    }
                }
            }
        }
        Rule::ProdAlign | Rule::CatAlign => {
            for (i, a) in nodes.iter().enumerate() {
                for b in &nodes[i + 1..] {
                    align(egraph, prod, a, b, &mut actions);
                }
            }
        }
    }
    actions
}

/// Equate the runs of `a` and `b` between equal cumulative sizes (products or sums).
fn align(egraph: &SpaceGraph, prod: bool, a: &[Id], b: &[Id], actions: &mut Vec<Action>) {
    let sizes = |xs: &[Id]| -> Option<Vec<u64>> { xs.iter().map(|&x| egraph[x].data).collect() };
    let (Some(sa), Some(sb)) = (sizes(a), sizes(b)) else {
        return;
    };
    let step = |acc: u64, n: u64| {
        if prod {
            acc.checked_mul(n)
        } else {
            acc.checked_add(n)
        }
    };
    let start = if prod { 1 } else { 0 };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut ca, mut cb) = (start, start);
    let (mut ia, mut jb) = (0usize, 0usize);
    while i < a.len() || j < b.len() {
        let advance_a = i < a.len() && (ca <= cb || j >= b.len());
        if advance_a {
            match step(ca, sa[i]) {
                Some(v) => ca = v,
                None => return,
            }
            i += 1;
        } else {
            match step(cb, sb[j]) {
                Some(v) => cb = v,
                None => return,
            }
            j += 1;
        }
        // A boundary: both prefixes cover the same extent.
        let (run_a, run_b) = (&a[ia..i], &b[jb..j]);
        if ca == cb && !run_a.is_empty() && !run_b.is_empty() {
            let whole = run_a.len() == a.len() && run_b.len() == b.len();
            if !whole {
                let term = |run: &[Id]| -> Result<Id, SpaceNode> {
                    if run.len() == 1 {
                        Ok(run[0])
                    } else {
                        Err(make(prod, run.to_vec()))
                    }
                };
                match (term(run_a), term(run_b)) {
                    (Ok(x), Ok(y)) => {
                        if egraph.find(x) != egraph.find(y) {
                            actions.push(Action::Union(x, y));
                        }
                    }
                    (Ok(x), Err(n)) | (Err(n), Ok(x)) => {
                        if !present(egraph, x, &n) {
                            actions.push(Action::AddTo(x, n));
                        }
                    }
                    (Err(n), Err(m)) => {
                        let same = match (egraph.lookup(n.clone()), egraph.lookup(m.clone())) {
                            (Some(p), Some(q)) => egraph.find(p) == egraph.find(q),
                            _ => false,
                        };
                        if !same {
                            actions.push(Action::Join(n, m));
                        }
                    }
                }
            }
            ia = i;
            jb = j;
        }
    }
}

struct AlgebraRule(Rule);

impl Searcher<SpaceNode, SpaceSizes> for AlgebraRule {
    fn search_eclass_with_limit(
        &self,
        egraph: &SpaceGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, SpaceNode>> {
        if limit == 0 {
            return None;
        }
        (!plan(self.0, egraph, eclass).is_empty()).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        Vec::new()
    }
}

impl Applier<SpaceNode, SpaceSizes> for AlgebraRule {
    fn apply_one(
        &self,
        egraph: &mut SpaceGraph,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<SpaceNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let mut changed = Vec::new();
        for action in plan(self.0, egraph, eclass) {
            let (a, b) = match action {
                Action::AddTo(class, node) => (class, egraph.add(node)),
                Action::Union(a, b) => (a, b),
                Action::Join(n, m) => (egraph.add(n), egraph.add(m)),
            };
            if egraph.union(a, b) {
                changed.push(a);
            }
        }
        changed
    }
}

/// The ruleset, in a fixed order.
pub fn rules() -> Vec<Rewrite<SpaceNode, SpaceSizes>> {
    [
        Rule::FlattenProd,
        Rule::FlattenCat,
        Rule::ProdDropUnit,
        Rule::CatDropEmpty,
        Rule::ProdAlign,
        Rule::CatAlign,
    ]
    .into_iter()
    .filter_map(|r| Rewrite::new(r.name(), AlgebraRule(r), AlgebraRule(r)).ok())
    .collect()
}
