//! `score`: per-channel importance of every channel group, gathered over every member slice
//! (producer weights and biases, norm parameters, consumer input slices), reduced across members
//! and normalized for global ranking. Criteria are one file each behind [`Criterion`].

mod activation;
mod bn_scale;
mod fpgm;
mod l1;
mod l2;
mod lamp;
pub mod obspa;
mod random;

use crate::analysis::{Analysis, Preserved};
use crate::error::PassError;
use crate::group::{AtomTerm, GroupAnalysis};
use crate::manager::PassContext;
use crate::options::{OptionDecl, OptionKind, Options};
use crate::registry::{Pass, PassInfo};
use rayon::prelude::*;
use spa_ir::{Graph, Model, NodeId, Tensor, ValueId};
use std::collections::HashMap;
use std::fmt::Write as _;

/// An importance criterion, as a per-element magnitude summed over each channel's slice of a
/// member tensor and then finished (`l2`: sum of squares, then the square root). The score pass sums
/// each axis of each member tensor in one pass and reduces across members. Higher means more
/// important.
pub trait Criterion: Sync {
    fn name(&self) -> &'static str;
    /// Contribution of one weight.
    fn element(&self, w: f32) -> f64;
    /// Add a row's contributions position-wise into `acc`; returns the row's total. (A default
    /// method, so `element` is called statically for each criterion.)
    fn accumulate_row(&self, row: &[f32], acc: &mut [f64]) -> f64 {
        let mut total = 0.0;
        for (a, &w) in acc.iter_mut().zip(row) {
            let e = self.element(w);
            *a += e;
            total += e;
        }
        total
    }
    /// Turn a channel's summed contributions within one member into its score.
    fn finish(&self, sum: f64) -> f64 {
        sum
    }
    /// Turn the summed contributions of every channel of one member into their scores, for
    /// criteria that compare the channels of a member with each other (`lamp`).
    fn finish_member(&self, sums: &mut [f64]) {
        sums.iter_mut().for_each(|s| *s = self.finish(*s));
    }
    /// Criteria that need a whole member tensor (`bn-scale`, `fpgm`) say here how one member
    /// counts; the default scores every member by its element sums.
    fn member(&self, _m: &MemberView<'_>) -> Result<MemberScores, PassError> {
        Ok(MemberScores::Sums)
    }
    /// Warnings about the model as a whole (groups a criterion has to score by its fallback).
    fn check(&self, _model: &Model, _groups: &GroupAnalysis) -> Vec<String> {
        Vec::new()
    }
    /// Scores that do not look at weights (random): the group's channels directly.
    fn group_scores(&self, _space: usize, _channels: usize) -> Option<Vec<f64>> {
        None
    }
}

/// One member tensor of a group, as [`Criterion::member`] sees it.
pub struct MemberView<'a> {
    pub graph: &'a Graph,
    /// The nodes using the member and at which input.
    pub users: &'a [(NodeId, usize)],
    pub value: ValueId,
    pub tensor: &'a Tensor,
    /// The axis of the member that lies in the group.
    pub axis: usize,
}

/// How one member counts in its group's score.
pub enum MemberScores {
    /// Element sums per channel, then `finish_member`.
    Sums,
    /// The score of every position of the member's axis (summed into channels as is).
    Positions(Vec<f64>),
    /// Not this criterion's kind of member: scored by element sums only when no member of the
    /// group is (the criterion's fallback).
    Fallback,
}

/// The default criterion (group L2 magnitude).
pub fn l2_criterion() -> impl Criterion {
    l2::L2
}

/// The names `criterion` accepts.
pub const CRITERIA: &[&str] = &[
    "l1",
    "l2",
    "random",
    "bn-scale",
    "fpgm",
    "lamp",
    "obspa",
    "activation",
];

pub fn criterion(name: &str, seed: u64) -> Option<Box<dyn Criterion>> {
    Some(match name {
        "l1" => Box::new(l1::L1),
        "l2" => Box::new(l2::L2),
        "random" => Box::new(random::Random { seed }),
        "bn-scale" => Box::new(bn_scale::BnScale),
        "fpgm" => Box::new(fpgm::Fpgm),
        "lamp" => Box::new(lamp::Lamp),
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
    /// obspa only: a group's scores over the output energy `tr(W H W^T)` of its consumers, so a
    /// score is the fraction of the consumers' output that removing the channels up to it loses.
    Relative,
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

/// Per-position sums of `crit.element` along every axis of a tensor, in one pass: rows along the
/// last axis are contiguous, so the last axis accumulates element-wise and the others take row
/// totals.
fn axis_sums(t: &spa_ir::Tensor, crit: &dyn Criterion) -> Result<Vec<Vec<f64>>, PassError> {
    let ir = |source| PassError::Ir {
        pass: "score".into(),
        source,
    };
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    if dims.is_empty() {
        return Ok(Vec::new());
    }
    // Rows are the trailing axes merged until they are long enough to stream well (a 3x3 kernel
    // row would be all overhead); their sums are split back per axis at the end.
    let mut split = dims.len() - 1;
    while split > 0 && dims[split..].iter().product::<usize>() < 256 {
        split -= 1;
    }
    let outer_dims = &dims[..split];
    let last: usize = dims[split..].iter().product();
    let mut sums: Vec<Vec<f64>> = outer_dims.iter().map(|&d| vec![0.0; d]).collect();
    sums.push(vec![0.0; last]);
    let rows: usize = outer_dims.iter().product();
    if last == 0 || rows == 0 {
        return Ok(dims.iter().map(|&d| vec![0.0; d]).collect());
    }
    let mut coord = vec![0usize; outer_dims.len()];
    let (last_sums, outer_sums) = match sums.split_last_mut() {
        Some(x) => x,
        None => return Ok(Vec::new()),
    };
    let mut add_row = |row: &[f32]| {
        let total = crit.accumulate_row(row, last_sums);
        for (k, s) in outer_sums.iter_mut().enumerate() {
            s[coord[k]] += total;
        }
        // Odometer over the outer axes.
        for k in (0..coord.len()).rev() {
            coord[k] += 1;
            if coord[k] < outer_dims[k] {
                break;
            }
            coord[k] = 0;
        }
    };
    let raw = t.raw_bytes().map_err(ir)?;
    if t.dtype == spa_ir::DType::F32 && cfg!(target_endian = "little") {
        // f32 weights are read in place when aligned, else a row at a time through a buffer.
        if raw.len() < rows * last * 4 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0f32; last];
        for row in raw.chunks_exact(last * 4).take(rows) {
            match bytemuck::try_cast_slice::<u8, f32>(row) {
                Ok(v) => add_row(v),
                Err(_) => {
                    for (b, w) in buf.iter_mut().zip(row.chunks_exact(4)) {
                        *b = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                    }
                    add_row(&buf);
                }
            }
        }
    } else {
        let values = t.to_f32().map_err(ir)?;
        if values.len() < rows * last {
            return Ok(Vec::new());
        }
        for row in values.chunks_exact(last).take(rows) {
            add_row(row);
        }
    }
    // Split the merged row sums back into the trailing axes.
    let merged = sums.pop().unwrap_or_default();
    let tail = &dims[split..];
    let mut per_axis: Vec<Vec<f64>> = tail.iter().map(|&d| vec![0.0; d]).collect();
    let mut c = vec![0usize; tail.len()];
    for v in merged {
        for (k, s) in per_axis.iter_mut().enumerate() {
            s[c[k]] += v;
        }
        for k in (0..c.len()).rev() {
            c[k] += 1;
            if c[k] < tail[k] {
                break;
            }
            c[k] = 0;
        }
    }
    sums.extend(per_axis);
    Ok(sums)
}

/// Add per-position values into the channels of atom `map` maps them to.
fn into_channels(values: &[f64], map: &[Option<u32>], n: usize) -> Option<Vec<f64>> {
    if map.len() != values.len() {
        return None;
    }
    let mut member = vec![0.0; n];
    for (&p, c) in values.iter().zip(map) {
        if let Some(m) = c.and_then(|c| member.get_mut(c as usize)) {
            *m += p;
        }
    }
    Some(member)
}

/// The scores of atom `a`'s channels from its members, reduced across members. Members the
/// criterion marks as fallback count only when no other member does.
fn member_scores(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    groups: &GroupAnalysis,
    a: usize,
    sums: &HashMap<ValueId, Vec<Vec<f64>>>,
    crit: &dyn Criterion,
    reduce: Reduce,
) -> Result<Vec<f64>, PassError> {
    let atom = &groups.atoms[a];
    let n = atom.size.unwrap_or(0) as usize;
    let mut s = vec![0.0; n];
    let mut count = 0usize;
    let add = |s: &mut Vec<f64>, count: &mut usize, member: Vec<f64>| {
        for (acc, x) in s.iter_mut().zip(member) {
            *acc = match reduce {
                Reduce::Sum | Reduce::Mean => *acc + x,
                Reduce::Max => acc.max(x),
            };
        }
        *count += 1;
    };
    let from_sums = |v: ValueId, k: usize, map: &[Option<u32>]| {
        let pos = sums.get(&v)?.get(k)?;
        let mut member = into_channels(pos, map, n)?;
        crit.finish_member(&mut member);
        Some(member)
    };
    let mut fallback = Vec::new();
    for &(v, k) in &atom.members {
        // Only scored members (learned float constants) have sums.
        let (Some(tensor), true, Some(term)) = (
            graph.constant(v),
            sums.contains_key(&v),
            groups.terms.get(&(v, k)),
        ) else {
            continue;
        };
        let Some(map) = channel_map(groups, term, a) else {
            continue;
        };
        let view = MemberView {
            graph,
            users: users.get(v.index()).map(Vec::as_slice).unwrap_or(&[]),
            value: v,
            tensor,
            axis: k,
        };
        let member = match crit.member(&view)? {
            MemberScores::Sums => from_sums(v, k, &map),
            MemberScores::Positions(p) => into_channels(&p, &map, n),
            MemberScores::Fallback => {
                fallback.push((v, k, map));
                None
            }
        };
        if let Some(m) = member {
            add(&mut s, &mut count, m);
        }
    }
    if count == 0 {
        for (v, k, map) in fallback {
            if let Some(m) = from_sums(v, k, &map) {
                add(&mut s, &mut count, m);
            }
        }
    }
    if reduce == Reduce::Mean && count > 0 {
        s.iter_mut().for_each(|x| *x /= count as f64);
    }
    Ok(s)
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
    // Member tensors: float constants that are learned parameters.
    let mut members: Vec<ValueId> = Vec::new();
    for &a in &groups.spaces {
        for &(v, _) in &groups.atoms[a].members {
            if let Some(t) = graph.constant(v) {
                if t.dtype.is_float() && !is_statistic(graph, &users, v) && !members.contains(&v) {
                    members.push(v);
                }
            }
        }
    }
    let sums: HashMap<ValueId, Vec<Vec<f64>>> = members
        .par_iter()
        .filter_map(|&v| graph.constant(v).map(|t| (v, t)))
        .map(|(v, t)| axis_sums(t, crit).map(|s| (v, s)))
        .collect::<Result<_, _>>()?;
    let per_space: Vec<Vec<f64>> = groups
        .spaces
        .par_iter()
        .enumerate()
        .map(|(sid, &a)| {
            let n = groups.atoms[a].size.unwrap_or(0) as usize;
            let mut scores = match crit.group_scores(sid, n) {
                Some(s) => s,
                None => member_scores(graph, &users, groups, a, &sums, crit, reduce)?,
            };
            let denom = match normalize {
                Normalize::None | Normalize::Relative => 1.0,
                Normalize::Mean => scores.iter().sum::<f64>() / scores.len().max(1) as f64,
                Normalize::Max => scores.iter().cloned().fold(0.0, f64::max),
            };
            if denom > 0.0 && denom.is_finite() {
                scores.iter_mut().for_each(|x| *x /= denom);
            }
            Ok(scores)
        })
        .collect::<Result<_, PassError>>()?;
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
            kind: OptionKind::Enum(CRITERIA),
            default: "l2",
            help: "importance criterion: l1, l2 (group magnitude); random{seed}; bn-scale (|gamma| of the group's BatchNorms; groups with no BatchNorm fall back to l2, with a warning); fpgm (distance of each producer filter to the others, i.e. to their geometric median; groups with no Conv/Gemm/MatMul producer fall back to l2); lamp (per member, w^2 over the sum of w^2 of channels at least as large; comparable across layers); activation (mean |activation| on calibration data); obspa (Optimal Brain Surgeon on groups, with weight compensation in prune; with data it also re-bases attention heads (Q/K and V/O, the same function: see rebase) and scores Q/K dims through the attention output; data=FILE|synthetic|none). See docs/criteria.md and docs/obspa.md",
        },
        OptionDecl {
            name: "reduce",
            kind: OptionKind::Enum(&["sum", "mean", "max"]),
            default: "sum",
            help: "how member scores combine into a group score",
        },
        OptionDecl {
            name: "normalize",
            kind: OptionKind::Enum(&["auto", "none", "mean", "max", "relative"]),
            default: "auto",
            help: "per-group normalization, for one global ranking: none; mean or max (each group's scores over their mean or max); relative (obspa only: over the output energy of the group's consumers, so a score is the fraction of their output the removal loses). auto: relative for obspa, none otherwise",
        },
        OptionDecl {
            name: "seed",
            kind: OptionKind::UInt,
            default: "0",
            help: "seed of the random criterion and of synthetic calibration data",
        },
        OptionDecl {
            name: "data",
            kind: OptionKind::Str,
            default: "synthetic",
            help: "calibration inputs of obspa/activation: FILE.npz (arrays by graph input name), FILE.npy (single-input models), synthetic (noise; every BatchNorm renormalizes it to its running statistics), or none (obspa: H = I, no compensation)",
        },
        OptionDecl {
            name: "samples",
            kind: OptionKind::UInt,
            default: "0",
            help: "calibration samples (0: all of the file; synthetic: as many as 2^37 forward FLOPs allow, 64 to 1024, a power of two)",
        },
        OptionDecl {
            name: "damp",
            kind: OptionKind::Float,
            default: "0.01",
            help: "obspa Hessian damping, as a fraction of the mean diagonal",
        },
        OptionDecl {
            name: "rebase",
            kind: OptionKind::Bool,
            default: "true",
            help: "obspa with data: re-base attention heads first (Q/K and V/O head dims, per head; the model computes the same function, its weights change) so that pruning a head dim cuts each head's weakest direction; false keeps the weights as they are and scores Q/K head dims by l2",
        },
        OptionDecl {
            name: "hessian",
            kind: OptionKind::Enum(&["auto", "dense"]),
            default: "auto",
            help: "obspa with data: auto keeps a layer's inverse Hessian in low-rank form when the layer saw at most one calibration row per 4 inputs (exact, by the Woodbury identity: r x d numbers instead of d x d, and no d x d inverse; e.g. VGG's 25,088-input classifier on 16 samples); dense always forms the d x d inverse",
        },
        OptionDecl {
            name: "mask",
            kind: OptionKind::Str,
            default: "",
            help: "obspa with data: the graph input whose zeros mark padding positions, of shape [batch, positions] (e.g. attention_mask): rows at those positions are left out of MatMul layers' Hessians, residual-stream energies, the Q/K attention measurement and prune's LayerNorm re-fit. Default: none (every position counts)",
        },
    ],
    create: |opts: &Options| {
        let reduce = match opts.str("reduce") {
            "mean" => Reduce::Mean,
            "max" => Reduce::Max,
            _ => Reduce::Sum,
        };
        let obspa = opts.str("criterion") == "obspa";
        let normalize = match opts.str("normalize") {
            "mean" => Normalize::Mean,
            "max" => Normalize::Max,
            "relative" if obspa => Normalize::Relative,
            "auto" if obspa => Normalize::Relative,
            "relative" => {
                return Err(PassError::BadOption {
                    pass: "score".into(),
                    option: "normalize".into(),
                    expected: "auto, none, mean or max (relative needs criterion=obspa)".into(),
                    value: "relative".into(),
                })
            }
            _ => Normalize::None,
        };
        let data = crate::calib::DataSource::parse(opts.str("data"));
        if !opts.str("mask").is_empty() && (!obspa || data == crate::calib::DataSource::None) {
            return Err(PassError::BadOption {
                pass: "score".into(),
                option: "mask".into(),
                expected: "no mask unless criterion=obspa has data (FILE or synthetic)".into(),
                value: opts.str("mask").into(),
            });
        }
        if let Some(pass) = obspa::create(opts, normalize)? {
            return Ok(pass);
        }
        let crit = criterion(opts.str("criterion"), opts.int("seed") as u64).ok_or_else(|| {
            PassError::BadOption {
                pass: "score".into(),
                option: "criterion".into(),
                expected: CRITERIA.join("|"),
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
        let warnings = self.crit.check(model, groups);
        for w in warnings {
            cx.warn(w);
        }
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
