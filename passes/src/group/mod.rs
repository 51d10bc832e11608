//! `group`: find the coupled channel groups with an index-space e-graph and write every value's
//! channel-aware type (`f32[1,128@cat(g0,g3),28,28]`). `test-print-groups` prints the groups.

pub mod analysis;
pub mod egraph;

pub use analysis::{AtomTerm, GroupAnalysis, Limits};

use crate::analysis::{Analysis, Preserved};
use crate::error::PassError;
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind, Options};
use crate::registry::{Pass, PassInfo};
use spa_ir::{ChannelSpace, Model, ValueId};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

impl Analysis for GroupAnalysis {
    const NAME: &'static str = "groups";

    /// Group a model as it is (types must be inferred; no shape folding).
    fn compute(model: &Model) -> Result<GroupAnalysis, PassError> {
        let known = known_values(model)?;
        analysis::analyze(model, &known, Limits::default(), &|_| false)
    }
}

fn known_values(model: &Model) -> Result<analysis::KnownValues, PassError> {
    let inferred = spa_ir::infer::infer_types(model).map_err(|source| PassError::Ir {
        pass: "group".into(),
        source,
    })?;
    let mut known = HashMap::new();
    for v in model.graph.value_ids() {
        if let Some(t) = inferred.known_value(v) {
            known.insert(v, t.clone());
        }
    }
    Ok(known)
}

/// Match `name` against a glob with `*` and `?`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Patterns from a comma- or space-separated option value.
pub fn patterns(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

pub static INFO: PassInfo = PassInfo {
    name: "group",
    summary: "Find coupled channel groups (index-space e-graph) and annotate every type with them",
    options: &[
        OptionDecl {
            name: "fold-shapes",
            kind: OptionKind::Bool,
            default: "true",
            help: "first fold shape computations into constants (as the fold-shapes pass)",
        },
        OptionDecl {
            name: "untie-constants",
            kind: OptionKind::Bool,
            default: "true",
            help: "first give each Identity of a constant, and each node reading a shared float vector, a constant of its own: exporters store equal parameters once (zero biases, unit norm scales of a fresh model), which would couple unrelated layers",
        },
        OptionDecl {
            name: "split-fused",
            kind: OptionKind::Bool,
            default: "true",
            help: "first split fused projections (one MatMul for Q, K and V, reshaped to (3, ...) and taken apart, or sliced; timm and torchvision ViT, Swin, MaxViT) into one MatMul per part, as the split-fused pass, so that Q/K and V head dims are groups of their own",
        },
        OptionDecl {
            name: "protect",
            kind: OptionKind::Str,
            default: "",
            help: "nodes or values (names or globs, comma-separated) whose output channels must not shrink",
        },
        OptionDecl {
            name: "node-limit",
            kind: OptionKind::UInt,
            default: "1000000",
            help: "e-graph node limit",
        },
        OptionDecl {
            name: "iter-limit",
            kind: OptionKind::UInt,
            default: "64",
            help: "e-graph iteration limit",
        },
        OptionDecl {
            name: "time-limit",
            kind: OptionKind::Float,
            default: "30",
            help: "e-graph time limit in seconds",
        },
    ],
    create: |opts: &Options| {
        Ok(Box::new(Group {
            fold: opts.bool("fold-shapes"),
            untie: opts.bool("untie-constants"),
            split: opts.bool("split-fused"),
            protect: patterns(opts.str("protect")),
            limits: Limits {
                nodes: opts.int("node-limit") as usize,
                iterations: opts.int("iter-limit") as usize,
                time: Duration::from_secs_f64(opts.float("time-limit").max(0.0)),
            },
        }))
    },
};

struct Group {
    fold: bool,
    untie: bool,
    split: bool,
    protect: Vec<String>,
    limits: Limits,
}

/// Write the channel expressions of `groups` into the value types and the space table.
pub fn annotate(model: &mut Model, groups: &GroupAnalysis) {
    let graph = &mut model.graph;
    let ids: Vec<ValueId> = graph.value_ids().collect();
    for v in ids {
        if let Some(t) = graph.value_mut(v).ty.as_tensor_mut() {
            if let Some(shape) = t.shape.as_mut() {
                for (k, ax) in shape.iter_mut().enumerate() {
                    ax.channels = groups
                        .terms
                        .get(&(v, k))
                        .filter(|t| groups.has_space(t))
                        .map(|t| groups.expr(t));
                }
            }
        }
    }
    model.spaces = groups
        .spaces
        .iter()
        .map(|&a| ChannelSpace {
            size: groups.atoms[a].size.unwrap_or(0),
        })
        .collect();
}

impl Pass for Group {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let ir = |source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        };
        if self.untie {
            let untied = crate::transforms::untie::untie_constants(&mut model.graph);
            cx.stat("constants untied", untied);
        }
        if self.fold {
            let folded = crate::transforms::fold_shapes::fold_shapes(model).map_err(ir)?;
            cx.stat("shape values folded", folded);
        }
        let infer = |m: &mut Model| {
            spa_ir::infer::infer_model(m, &spa_ir::infer::InferOptions::default()).map_err(ir)
        };
        infer(model)?;
        if self.split {
            // Reads the types just inferred; its new values are typed by a second inference.
            let split =
                crate::transforms::split_fused::split_fused_projections(model).map_err(ir)?;
            cx.stat("fused projections split", split);
            if split > 0 {
                infer(model)?;
            }
        }
        let known = known_values(model)?;
        let protect = self.protect.clone();
        let groups = analysis::analyze(model, &known, self.limits, &|name: &str| {
            !name.is_empty() && protect.iter().any(|p| glob_match(p, name))
        })?;
        annotate(model, &groups);
        let prunable = groups
            .spaces
            .iter()
            .filter(|&&a| groups.atoms[a].prunable())
            .count();
        cx.stat("groups", groups.spaces.len());
        cx.stat("prunable groups", prunable);
        cx.stat("pinned groups", groups.spaces.len() - prunable);
        cx.stat("e-graph stop reason", &groups.stop_reason);
        cx.stat("e-graph iterations", groups.iterations);
        cx.stat("e-graph nodes", groups.egraph_nodes);
        cx.stat("e-graph classes", groups.egraph_classes);
        if groups.size_conflicts > 0 {
            cx.warn(format!(
                "{} unions joined spaces of different sizes; the groups involved may be wrong",
                groups.size_conflicts
            ));
        }
        if groups.stop_reason != "saturated" {
            cx.warn(format!(
                "the e-graph stopped early ({}); groups may be coarser than possible",
                groups.stop_reason
            ));
        }
        cx.analyses.insert(groups);
        Ok(Preserved::Only(vec![<GroupAnalysis as Analysis>::NAME]))
    }
}

pub static PRINT_INFO: PassInfo = PassInfo {
    name: "test-print-groups",
    summary: "Print every channel group: size, members, producers, consumers, status and why",
    options: &[],
    create: |_| Ok(Box::new(PrintGroups)),
};

struct PrintGroups;

impl Pass for PrintGroups {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let groups = cx.analyses.get::<GroupAnalysis>(model)?;
        let text = describe_groups(model, groups);
        cx.out.push_str(&text);
        Ok(Preserved::All)
    }
}

/// Text listing of the groups (what `test-print-groups` prints).
pub fn describe_groups(model: &Model, groups: &GroupAnalysis) -> String {
    let g = &model.graph;
    let mut out = String::new();
    let _ = writeln!(out, "// {} channel groups", groups.spaces.len());
    // Producers and consumers: nodes where the space meets a constant input and activations on
    // one side only.
    let space_in = |v: ValueId, s: usize| -> bool {
        let rank = g
            .value(v)
            .ty
            .as_tensor()
            .and_then(|t| t.rank())
            .unwrap_or(0);
        (0..rank).any(|k| {
            groups.terms.get(&(v, k)).is_some_and(|t| {
                let mut a = Vec::new();
                t.atoms(&mut a);
                a.contains(&s)
            })
        })
    };
    for (sid, &a) in groups.spaces.iter().enumerate() {
        let atom = &groups.atoms[a];
        let status = if atom.prunable() {
            "prunable"
        } else {
            "pinned"
        };
        let exact = if atom.inexact.is_empty() {
            "exact"
        } else {
            "inexact"
        };
        let _ = writeln!(
            out,
            "g{sid}: size {}, {status}, {exact}",
            atom.size.unwrap_or(0)
        );
        let mut params = Vec::new();
        let mut values = Vec::new();
        for &(v, k) in &atom.members {
            let val = g.value(v);
            let expr = groups
                .terms
                .get(&(v, k))
                .map(|t| groups.expr(t).to_string())
                .unwrap_or_default();
            let item = format!("%{}[{k}]={expr}", val.name);
            if g.constant(v).is_some() {
                params.push(item);
            } else {
                values.push(item);
            }
        }
        let _ = writeln!(out, "  params: {}", params.join(" "));
        let _ = writeln!(out, "  values: {}", values.join(" "));
        let mut producers = Vec::new();
        let mut consumers = Vec::new();
        for id in g.node_ids() {
            let n = g.node(id);
            let consts = n
                .inputs
                .iter()
                .flatten()
                .any(|&v| g.constant(v).is_some() && space_in(v, a));
            if !consts {
                continue;
            }
            let acts_in = n
                .inputs
                .iter()
                .flatten()
                .any(|&v| g.constant(v).is_none() && space_in(v, a));
            let acts_out = n.outputs.iter().flatten().any(|&v| space_in(v, a));
            let label = format!("{} '{}'", n.qualified_op(), n.label());
            if acts_out && !acts_in {
                producers.push(label);
            } else if acts_in && !acts_out {
                consumers.push(label);
            }
        }
        let _ = writeln!(out, "  producers: {}", producers.join(", "));
        let _ = writeln!(out, "  consumers: {}", consumers.join(", "));
        for why in &atom.pinned {
            let _ = writeln!(out, "  pinned: {why}");
        }
        for why in &atom.inexact {
            let _ = writeln!(out, "  inexact: {why}");
        }
    }
    out
}
