//! The prune report: params and FLOPs before and after, channels kept per group, pinned groups
//! and why. Printed as a short table on stderr and, with `report=FILE`, written as JSON.

use crate::group::GroupAnalysis;
use crate::transforms::untie;
use spa_ir::{Model, Tensor, ValueId};
use std::fmt::Write as _;

/// Params (elements of float constants, an exporter-shared one once per user) and FLOPs (from the
/// op registry's cost interface).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measure {
    pub params: u64,
    pub flops: u64,
}

pub fn measure(model: &Model) -> Measure {
    let g = &model.graph;
    // Exporters store equal parameters once: an Identity alias of a float constant, or a float
    // vector read by several nodes, is a parameter of each user, as the framework counts it.
    // `group` unties both into constants of their own, which must not change the count.
    let users = g.users();
    let count = |v: ValueId, t: &Tensor| -> u64 {
        if !t.dtype.is_float() {
            return 0;
        }
        let copies = if untie::is_untied_vector(t) {
            untie::reading_nodes(g, &users, v, true).len().max(1) as u64
        } else {
            1
        };
        copies * t.num_elements().unwrap_or(0)
    };
    let mut params = 0u64;
    for v in g.value_ids() {
        if let Some(t) = g.constant(v) {
            params += count(v, t);
        }
    }
    for id in g.node_ids() {
        let node = g.node(id);
        if node.op_type != "Identity" || !node.canonical_domain().is_empty() {
            continue;
        }
        let Some(Some(alias)) = node.outputs.first() else {
            continue;
        };
        // Follow a chain of aliases to its constant.
        let mut from = node;
        while let Some(Some(input)) = from.inputs.first() {
            if let Some(t) = g.constant(*input) {
                params += count(*alias, t);
                break;
            }
            match g.value(*input).def {
                spa_ir::ValueDef::Node(n, _) if g.node(n).op_type == "Identity" => from = g.node(n),
                _ => break,
            }
        }
    }
    Measure {
        params,
        flops: spa_ir::ops::model_flops(model),
    }
}

pub struct GroupRow {
    pub space: usize,
    pub size: u64,
    pub kept: u64,
    pub status: String,
    pub reasons: Vec<String>,
}

pub struct Report {
    pub params_before: u64,
    pub params_after: u64,
    pub flops_before: u64,
    pub flops_after: u64,
    pub groups: Vec<GroupRow>,
    /// More lines for the table and more `"key": value` entries for the JSON (a target's outcome).
    pub extra_lines: Vec<String>,
    pub extra_json: Vec<(String, String)>,
}

impl Report {
    pub fn new(
        _model: &Model,
        groups: &GroupAnalysis,
        kept: &[Vec<u64>],
        before: Measure,
        after: Measure,
    ) -> Report {
        let rows = groups
            .spaces
            .iter()
            .enumerate()
            .map(|(s, &a)| {
                let atom = &groups.atoms[a];
                GroupRow {
                    space: s,
                    size: atom.size.unwrap_or(0),
                    kept: kept.get(s).map(|k| k.len() as u64).unwrap_or(0),
                    status: if atom.prunable() {
                        "prunable"
                    } else {
                        "pinned"
                    }
                    .into(),
                    reasons: atom.pinned.iter().cloned().collect(),
                }
            })
            .collect();
        Report {
            params_before: before.params,
            params_after: after.params,
            flops_before: before.flops,
            flops_after: after.flops,
            groups: rows,
            extra_lines: Vec::new(),
            extra_json: Vec::new(),
        }
    }

    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 {
            1.0
        } else {
            a as f64 / b as f64
        }
    }

    /// A few lines for stderr.
    pub fn table(&self) -> String {
        let pruned = self.groups.iter().filter(|r| r.kept < r.size).count();
        let pinned = self.groups.iter().filter(|r| r.status == "pinned").count();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "prune: {} groups: {pruned} pruned, {pinned} pinned",
            self.groups.len()
        );
        let _ = writeln!(
            s,
            "  params {:>14} -> {:>14}  ({:.1}% kept)",
            self.params_before,
            self.params_after,
            100.0 * Self::ratio(self.params_after, self.params_before)
        );
        let _ = write!(
            s,
            "  FLOPs  {:>14} -> {:>14}  ({:.1}% kept)",
            self.flops_before,
            self.flops_after,
            100.0 * Self::ratio(self.flops_after, self.flops_before)
        );
        for line in &self.extra_lines {
            let _ = write!(s, "\n  {line}");
        }
        s
    }

    pub fn to_json(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut s = String::from("{\n");
        let _ = writeln!(s, "  \"params_before\": {},", self.params_before);
        let _ = writeln!(s, "  \"params_after\": {},", self.params_after);
        let _ = writeln!(s, "  \"flops_before\": {},", self.flops_before);
        let _ = writeln!(s, "  \"flops_after\": {},", self.flops_after);
        for (k, v) in &self.extra_json {
            let _ = writeln!(s, "  \"{}\": {v},", esc(k));
        }
        let _ = writeln!(s, "  \"groups\": [");
        for (i, r) in self.groups.iter().enumerate() {
            let reasons: Vec<String> = r
                .reasons
                .iter()
                .map(|x| format!("\"{}\"", esc(x)))
                .collect();
            let _ = write!(
                s,
                "    {{\"group\": \"g{}\", \"size\": {}, \"kept\": {}, \"status\": \"{}\", \"pinned_because\": [{}]}}",
                r.space,
                r.size,
                r.kept,
                r.status,
                reasons.join(", ")
            );
            s.push_str(if i + 1 < self.groups.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        s.push_str("  ]\n}\n");
        s
    }
}
