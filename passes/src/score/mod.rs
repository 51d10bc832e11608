//! `score`: per-channel importance of every channel group, gathered over every member slice
//! (producer weights and biases, norm parameters, consumer input slices), reduced across members
//! and normalized for global ranking. Criteria are one file each behind [`Criterion`].

mod l1;
mod l2;
mod random;

use crate::analysis::{Analysis, Preserved};
use crate::error::PassError;
use crate::group::{AtomTerm, GroupAnalysis};
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind, Options};
use crate::registry::{Pass, PassInfo};
use spa_ir::{Graph, Model, ValueId};
use std::fmt::Write as _;

/// One member tensor of a group, seen as `[outer, channels-axis, inner]` with the channel of each
/// position along the axis.
pub struct MemberView<'a> {
    pub data: &'a [f32],
    pub outer: usize,
    pub axis_len: usize,
    pub inner: usize,
    /// The group channel at each position along the axis (`None`: another group's part).
    pub channel_of: &'a [Option<u32>],
    pub channels: usize,
}

impl MemberView<'_> {
    /// Fold `f` over the elements of each channel.
    pub fn per_channel(&self, f: impl Fn(f64, f32) -> f64) -> Vec<f64> {
        let mut acc = vec![0.0f64; self.channels];
        for o in 0..self.outer {
            for p in 0..self.axis_len {
                let Some(c) = self.channel_of[p] else {
                    continue;
                };
                let start = (o * self.axis_len + p) * self.inner;
                if let Some(slice) = self.data.get(start..start + self.inner) {
                    let a = &mut acc[c as usize];
                    for &w in slice {
                        *a = f(*a, w);
                    }
                }
            }
        }
        acc
    }
}

/// An importance criterion: a per-member, per-channel score; the score pass reduces across
/// members. Higher means more important.
pub trait Criterion: Sync {
    fn name(&self) -> &'static str;
    /// Scores of the group's channels from one member tensor.
    fn member_scores(&self, member: &MemberView<'_>) -> Vec<f64>;
    /// Scores that do not look at weights (random): the group's channels directly.
    fn group_scores(&self, _space: usize, _channels: usize) -> Option<Vec<f64>> {
        None
    }
}

/// The default criterion (group L2 magnitude).
pub fn l2_criterion() -> impl Criterion {
    l2::L2
}

pub fn criterion(name: &str, seed: u64) -> Option<Box<dyn Criterion>> {
    Some(match name {
        "l1" => Box::new(l1::L1),
        "l2" => Box::new(l2::L2),
        "random" => Box::new(random::Random { seed }),
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    None,
    Mean,
    Max,
}

/// Per-channel importance of every channel space (indexed by `SpaceId`).
#[derive(Clone, Debug, Default)]
pub struct Scores {
    pub criterion: String,
    pub per_space: Vec<Vec<f64>>,
}

impl Analysis for Scores {
    const NAME: &'static str = "scores";

    /// The default: group L2 magnitude, summed over members, not normalized.
    fn compute(model: &Model) -> Result<Scores, PassError> {
        let groups = GroupAnalysis::compute(model)?;
        score(model, &groups, &l2::L2, Reduce::Sum, Normalize::None)
    }
}

/// The channel of each position of an axis with term `t`, for atom `atom`.
pub fn channel_map(groups: &GroupAnalysis, t: &AtomTerm, atom: usize) -> Option<Vec<Option<u32>>> {
    Some(match t {
        AtomTerm::Atom(a) => {
            let n = groups.atoms[*a].size? as usize;
            if *a == atom {
                (0..n as u32).map(Some).collect()
            } else {
                vec![None; n]
            }
        }
        AtomTerm::Cat(xs) => {
            let mut v = Vec::new();
            for x in xs {
                v.extend(channel_map(groups, x, atom)?);
            }
            v
        }
        AtomTerm::Prod(xs) => {
            let mut v: Vec<Option<u32>> = vec![None];
            for x in xs {
                let inner = channel_map(groups, x, atom)?;
                let mut next = Vec::with_capacity(v.len() * inner.len());
                for &o in &v {
                    for &i in &inner {
                        next.push(o.or(i));
                    }
                }
                v = next;
            }
            v
        }
    })
}

/// Is this constant a statistic rather than a learned parameter (BatchNorm running mean/var)?
fn is_statistic(graph: &Graph, users: &[Vec<(spa_ir::NodeId, usize)>], v: ValueId) -> bool {
    let u = &users[v.index()];
    !u.is_empty()
        && u.iter()
            .all(|&(n, i)| graph.node(n).op_type == "BatchNormalization" && (i == 3 || i == 4))
}

/// Score every channel space of `groups`.
pub fn score(
    model: &Model,
    groups: &GroupAnalysis,
    crit: &dyn Criterion,
    reduce: Reduce,
    normalize: Normalize,
) -> Result<Scores, PassError> {
    let graph = &model.graph;
    let users = graph.users();
    let mut per_space = Vec::with_capacity(groups.spaces.len());
    for (sid, &a) in groups.spaces.iter().enumerate() {
        let atom = &groups.atoms[a];
        let n = atom.size.unwrap_or(0) as usize;
        let mut scores = match crit.group_scores(sid, n) {
            Some(s) => s,
            None => {
                let mut members: Vec<Vec<f64>> = Vec::new();
                for &(v, k) in &atom.members {
                    if graph.constant(v).is_none() || is_statistic(graph, &users, v) {
                        continue;
                    }
                    let (Some(t), Some(term)) = (graph.constant(v), groups.terms.get(&(v, k)))
                    else {
                        continue;
                    };
                    if !t.dtype.is_float() {
                        continue;
                    }
                    let data = t.to_f32().map_err(|source| PassError::Ir {
                        pass: "score".into(),
                        source,
                    })?;
                    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
                    let Some(map) = channel_map(groups, term, a) else {
                        continue;
                    };
                    if k >= dims.len() || map.len() != dims[k] {
                        continue;
                    }
                    let view = MemberView {
                        data: &data,
                        outer: dims[..k].iter().product(),
                        axis_len: dims[k],
                        inner: dims[k + 1..].iter().product(),
                        channel_of: &map,
                        channels: n,
                    };
                    members.push(crit.member_scores(&view));
                }
                let mut s = vec![0.0; n];
                for m in &members {
                    for (acc, &x) in s.iter_mut().zip(m) {
                        *acc = match reduce {
                            Reduce::Sum | Reduce::Mean => *acc + x,
                            Reduce::Max => acc.max(x),
                        };
                    }
                }
                if reduce == Reduce::Mean && !members.is_empty() {
                    let k = members.len() as f64;
                    s.iter_mut().for_each(|x| *x /= k);
                }
                s
            }
        };
        let denom = match normalize {
            Normalize::None => 1.0,
            Normalize::Mean => scores.iter().sum::<f64>() / scores.len().max(1) as f64,
            Normalize::Max => scores.iter().cloned().fold(0.0, f64::max),
        };
        if denom > 0.0 && denom.is_finite() {
            scores.iter_mut().for_each(|x| *x /= denom);
        }
        per_space.push(scores);
    }
    Ok(Scores {
        criterion: crit.name().to_string(),
        per_space,
    })
}

pub static INFO: PassInfo = PassInfo {
    name: "score",
    summary: "Score every channel of every group with a criterion (group-aware: all member slices)",
    options: &[
        OptionDecl {
            name: "criterion",
            kind: OptionKind::Enum(&["l1", "l2", "random"]),
            default: "l2",
            help: "importance criterion",
        },
        OptionDecl {
            name: "reduce",
            kind: OptionKind::Enum(&["sum", "mean", "max"]),
            default: "sum",
            help: "how member scores combine into a group score",
        },
        OptionDecl {
            name: "normalize",
            kind: OptionKind::Enum(&["none", "mean", "max"]),
            default: "none",
            help: "per-group normalization (for global ranking)",
        },
        OptionDecl {
            name: "seed",
            kind: OptionKind::UInt,
            default: "0",
            help: "seed of the random criterion",
        },
    ],
    create: |opts: &Options| {
        let reduce = match opts.str("reduce") {
            "mean" => Reduce::Mean,
            "max" => Reduce::Max,
            _ => Reduce::Sum,
        };
        let normalize = match opts.str("normalize") {
            "mean" => Normalize::Mean,
            "max" => Normalize::Max,
            _ => Normalize::None,
        };
        let crit = criterion(opts.str("criterion"), opts.int("seed") as u64).ok_or_else(|| {
            PassError::BadOption {
                pass: "score".into(),
                option: "criterion".into(),
                expected: "l1|l2|random".into(),
                value: opts.str("criterion").into(),
            }
        })?;
        Ok(Box::new(Score {
            crit,
            reduce,
            normalize,
        }))
    },
};

struct Score {
    crit: Box<dyn Criterion>,
    reduce: Reduce,
    normalize: Normalize,
}

impl Pass for Score {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let groups = cx.analyses.get::<GroupAnalysis>(model)?;
        let scores = score(
            model,
            groups,
            self.crit.as_ref(),
            self.reduce,
            self.normalize,
        )?;
        cx.stat("groups scored", scores.per_space.len());
        cx.analyses.insert(scores);
        Ok(Preserved::Only(vec![
            <GroupAnalysis as Analysis>::NAME,
            <Scores as Analysis>::NAME,
        ]))
    }
}

pub static PRINT_INFO: PassInfo = PassInfo {
    name: "test-print-scores",
    summary: "Print the importance of every channel of every group",
    options: &[],
    create: |_| Ok(Box::new(PrintScores)),
};

struct PrintScores;

impl Pass for PrintScores {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let scores = cx.analyses.get::<Scores>(model)?.clone();
        let _ = writeln!(cx.out, "// scores ({})", scores.criterion);
        for (s, v) in scores.per_space.iter().enumerate() {
            let items: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
            let _ = writeln!(cx.out, "g{s}: [{}]", items.join(", "));
        }
        Ok(Preserved::All)
    }
}
