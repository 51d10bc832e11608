//! `obspa`: Optimal Brain Surgeon lifted to channel groups, for pruning after training without
//! fine-tuning (SPA, Section 4.2 of DESIGN.md).
//!
//! The *consumers* of a group are the layers (Conv, Gemm, MatMul with a constant weight) whose
//! weight's input-channel axis carries the group's channels. For each consumer the score pass
//! runs the calibration batch through the reference interpreter and accumulates the layer-input
//! Hessian `H = 2/N X^T X` (im2col patches for convs, one Hessian per conv group), damped with
//! `damp * mean(diag H)`, and inverts it. A group's channels are then ranked by a *joint* greedy
//! OBS search over all its consumers at once ([`math::greedy_scores`]): at each step the channels
//! whose removal from every consumer costs least go together, every consumer is re-fitted and its
//! inverse Hessian downdated. A channel's score is the loss accumulated before its step plus its
//! own saliency, so scores grow along the greedy order and `prune` removes a greedy prefix.
//!
//! After `prune` has chosen the channels, it re-fits the kept input columns of every consumer
//! with `dW = -W_:,Q (Hinv_QQ)^-1 Hinv_Q,:` for the removed set `Q` (all groups at once), using
//! the inverse Hessians stored here in the [`Compensation`] analysis (`prune/compensate.rs`).
//!
//! `data=none` uses `H = I`: scores are cumulative column norms `1/2 ||W_:,Q||^2` and nothing is
//! compensated. Attention Q/K head dims, which no layer consumes, are re-based per head and scored
//! through the attention output when there is data ([`attention`]); other groups without a
//! consumer (or pinned ones) are scored by `l2` magnitude.

pub mod attention;
pub mod collect;
pub mod layer;
pub mod lowrank;
pub mod math;
pub mod value;

use super::{activation, Normalize, Scores};
use crate::analysis::{Analysis, Preserved};
use crate::calib::{self, CalibOptions, DataSource};
use crate::error::PassError;
use crate::group::GroupAnalysis;
use crate::manager::PassContext;
use crate::options::Options;
use crate::registry::Pass;
use layer::{Consumer, LayerKind};
use lowrank::{InverseHessian, LowRank};
use math::HessianSum;
use ndarray::Array2;
use rayon::prelude::*;
use spa_ir::{Graph, Model, NodeId, ValueId};
use std::borrow::Cow;
use std::collections::HashMap;

/// Greedy steps per group (larger groups remove `ceil(n / MAX_STEPS)` channels per step).
pub const MAX_STEPS: usize = 128;

/// The data-aware criteria.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataCriterion {
    Obspa,
    Activation,
}

/// Inverse Hessians of the consumers, for compensation by `prune`.
#[derive(Clone, Debug, Default)]
pub struct Compensation {
    pub layers: Vec<CompensatedLayer>,
    /// The calibration data for `prune`'s LayerNorm re-fit (data from a file, models with
    /// LayerNorms only).
    pub refit: Option<crate::prune::refit::NormRefit>,
}

#[derive(Clone, Debug)]
pub struct CompensatedLayer {
    pub consumer: Consumer,
    /// One per sub-layer.
    pub hinv: Vec<InverseHessian>,
}

impl Analysis for Compensation {
    const NAME: &'static str = "obspa-compensation";

    /// Nothing to compensate unless an `obspa` score pass stored it.
    fn compute(_: &Model) -> Result<Compensation, PassError> {
        Ok(Compensation::default())
    }
}

/// The `score` pass for `criterion=obspa|activation`.
pub struct DataScore {
    pub criterion: DataCriterion,
    pub calib: CalibOptions,
    pub damp: f64,
    pub normalize: Normalize,
    /// Re-base attention heads ([`attention`], [`value`]).
    pub rebase: bool,
    /// The graph input whose zeros mark padding positions (left out of the statistics).
    pub mask: String,
    /// Inverse Hessians of layers with few calibration rows in low-rank form ([`lowrank`]).
    pub low_rank: bool,
}

fn failed(message: impl Into<String>) -> PassError {
    PassError::Failed {
        pass: "score".into(),
        message: message.into(),
    }
}

/// The data-aware score pass for these options, or `None` for the other criteria.
pub fn create(opts: &Options, normalize: Normalize) -> Result<Option<Box<dyn Pass>>, PassError> {
    let criterion = match opts.str("criterion") {
        "obspa" => DataCriterion::Obspa,
        "activation" => DataCriterion::Activation,
        _ => return Ok(None),
    };
    let damp = opts.float("damp");
    if !(damp >= 0.0 && damp.is_finite()) {
        return Err(PassError::BadOption {
            pass: "score".into(),
            option: "damp".into(),
            expected: "a non-negative number".into(),
            value: damp.to_string(),
        });
    }
    let source = DataSource::parse(opts.str("data"));
    if criterion == DataCriterion::Activation && source == DataSource::None {
        return Err(PassError::BadOption {
            pass: "score".into(),
            option: "data".into(),
            expected: "FILE.npz, FILE.npy or synthetic (criterion 'activation' needs data)".into(),
            value: opts.str("data").into(),
        });
    }
    Ok(Some(Box::new(DataScore {
        criterion,
        calib: CalibOptions {
            source,
            samples: opts.int("samples").max(0) as usize,
            seed: opts.int("seed") as u64,
        },
        damp,
        normalize,
        rebase: opts.bool("rebase"),
        mask: opts.str("mask").to_string(),
        low_rank: opts.str("hessian") != "dense",
    })))
}

impl Pass for DataScore {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError> {
        let groups = cx.analyses.get::<GroupAnalysis>(model)?.clone();
        let batch = calib::load(model, &self.calib).map_err(|e| failed(e.to_string()))?;
        let mask = match (&batch, self.mask.as_str()) {
            (Some(b), m) if !m.is_empty() => Some(mask_input(model, b, m)?),
            _ => None,
        };
        let (mut scores, compensation, stats) = match self.criterion {
            DataCriterion::Obspa => {
                let out = obspa_scores(
                    model,
                    &groups,
                    batch.as_ref(),
                    Settings {
                        damp: self.damp,
                        relative: self.normalize == Normalize::Relative,
                        rebase: self.rebase,
                        low_rank: self.low_rank,
                    },
                    mask,
                )?;
                // The Q/K and V/O bases the scores are in (the same function).
                for (v, data) in &out.rotations {
                    crate::prune::compensate::replace_f32(&mut model.graph, *v, data);
                }
                for w in out.warnings {
                    cx.warn(w);
                }
                (out.scores, out.compensation, out.stats)
            }
            DataCriterion::Activation => {
                let batch = batch
                    .as_ref()
                    .ok_or_else(|| failed("criterion 'activation' needs data"))?;
                let (s, st) = activation::scores(model, &groups, batch)?;
                (s, None, st)
            }
        };
        for s in &mut scores.per_space {
            normalize(s, self.normalize);
        }
        if let Some(b) = &batch {
            cx.stat("calibration samples", b.samples);
        }
        for (name, v) in stats {
            cx.stat(name, v);
        }
        cx.stat("groups scored", scores.per_space.len());
        cx.analyses.insert(scores);
        let mut keep = vec![
            <GroupAnalysis as Analysis>::NAME,
            <Scores as Analysis>::NAME,
        ];
        if let Some(c) = compensation {
            keep.push(<Compensation as Analysis>::NAME);
            cx.analyses.insert(c);
        }
        Ok(Preserved::Only(keep))
    }
}

/// The graph input named `name`, checked as a padding mask: fed by the calibration batch, with
/// shape `[batch, positions]`.
fn mask_input(model: &Model, batch: &calib::CalibBatch, name: &str) -> Result<ValueId, PassError> {
    let graph = &model.graph;
    let bad = |expected: String| PassError::BadOption {
        pass: "score".into(),
        option: "mask".into(),
        expected,
        value: name.into(),
    };
    let names: Vec<&str> = graph
        .inputs
        .iter()
        .map(|&v| graph.value(v).name.as_str())
        .collect();
    let v = graph
        .inputs
        .iter()
        .copied()
        .find(|&v| graph.value(v).name == name)
        .ok_or_else(|| bad(format!("the name of a graph input ({})", names.join(", "))))?;
    let (_, a) = batch
        .inputs
        .iter()
        .find(|(i, _)| *i == v)
        .ok_or_else(|| bad("a graph input the calibration data feeds".into()))?;
    if a.shape.len() != 2 {
        return Err(bad(format!(
            "an input of shape [batch, positions] (the calibration data gives {:?})",
            a.shape
        )));
    }
    Ok(v)
}

fn normalize(scores: &mut [f64], how: Normalize) {
    let denom = match how {
        // Relative scores are made so by `obspa_scores`.
        Normalize::None | Normalize::Relative => 1.0,
        Normalize::Mean => scores.iter().sum::<f64>() / scores.len().max(1) as f64,
        Normalize::Max => scores.iter().cloned().fold(0.0, f64::max),
    };
    if denom > 0.0 && denom.is_finite() {
        scores.iter_mut().for_each(|x| *x /= denom);
    }
}

type Stats = Vec<(&'static str, usize)>;

/// The `l2` scores, for groups a data-aware criterion cannot score.
pub(super) fn fallback(model: &Model, groups: &GroupAnalysis) -> Result<Scores, PassError> {
    super::score(
        model,
        groups,
        &super::l2_criterion(),
        super::Reduce::Sum,
        Normalize::None,
    )
}

/// What `obspa` computes.
struct ObspaOut {
    scores: Scores,
    compensation: Option<Compensation>,
    stats: Stats,
    /// New data of the attention Q/K weights and biases (see [`attention`]).
    rotations: Vec<Rotation>,
    warnings: Vec<String>,
}

/// The options of [`obspa_scores`].
#[derive(Clone, Copy, Debug)]
struct Settings {
    damp: f64,
    /// `normalize=relative`.
    relative: bool,
    rebase: bool,
    low_rank: bool,
}

fn obspa_scores(
    model: &Model,
    groups: &GroupAnalysis,
    batch: Option<&calib::CalibBatch>,
    settings: Settings,
    mask: Option<ValueId>,
) -> Result<ObspaOut, PassError> {
    let Settings {
        damp,
        relative,
        rebase,
        low_rank,
    } = settings;
    let graph = &model.graph;
    let consumers = layer::find_consumers(model, groups);
    // The consumers of each prunable space, with the columns of each channel.
    type Uses = Vec<(usize, Vec<Vec<usize>>)>;
    let uses: Vec<Uses> = groups
        .spaces
        .iter()
        .map(|&a| {
            let atom = &groups.atoms[a];
            let n = atom.size.unwrap_or(0) as usize;
            if !atom.prunable() {
                return Vec::new();
            }
            consumers
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let b = layer::channel_blocks(groups, c, a, n)?;
                    b.iter().any(|q| !q.is_empty()).then_some((i, b))
                })
                .collect()
        })
        .collect();
    let mut used: Vec<usize> = uses.iter().flatten().map(|(i, _)| *i).collect();
    used.sort_unstable();
    used.dedup();
    // Attention Q/K head dims (no consumer): measured through the attention output.
    let unconsumed: Vec<bool> = uses.iter().map(|u| u.is_empty()).collect();
    let sites: Vec<attention::Site> = match batch {
        Some(_) if rebase => attention::find_sites(model, groups, &consumers, &unconsumed)
            .into_iter()
            .filter(|s| used.binary_search(&s.consumer).is_ok())
            .collect(),
        _ => Vec::new(),
    };
    // Attention V/O head dims (consumed by the output projection): re-based per head.
    let value_sites: Vec<value::ValueSite> = match batch {
        Some(_) if rebase => value::find_value_sites(model, groups, &consumers, &used),
        _ => Vec::new(),
    };
    // The projections' input Hessians: their own consumer entries where they are consumers,
    // else extra entries past the consumer list.
    let mut all = consumers.clone();
    let mut projections: Vec<[usize; 2]> = Vec::new();
    for site in &sites {
        let mut ix = [0; 2];
        for (k, side) in [&site.q, &site.k].into_iter().enumerate() {
            ix[k] = match all.iter().position(|c| c.node == side.node) {
                Some(i) => i,
                None => {
                    all.push(Consumer {
                        node: side.node,
                        weight: side.weight,
                        in_axis: 0,
                        kind: LayerKind::MatMul,
                        subs: 1,
                        rows: side.pos.len(),
                        inputs: side.rows_in,
                        kernel: 1,
                    });
                    all.len() - 1
                }
            };
        }
        projections.push(ix);
    }
    let mut hessian_of = used.clone();
    hessian_of.extend(projections.iter().flatten());
    hessian_of.sort_unstable();
    hessian_of.dedup();
    // Weights as matrices, per consumer and sub-layer, converted when needed.
    let mut weights = Weights {
        graph,
        consumers: &consumers,
        used: &used,
        changed: HashMap::new(),
    };
    // A weight that is not a constant fails here, not after the calibration run.
    for c in used.iter().filter_map(|&i| consumers.get(i)) {
        weights.constant(c)?;
    }
    // Output energy tr(W H W^T) per consumer and sub-layer (H = I for data=none), for
    // normalize=relative.
    let mut energy: Vec<Option<Vec<f64>>> = vec![None; consumers.len()];
    // Where each used consumer's output joins a residual stream (for relative, with data).
    let joins: Vec<Option<(ValueId, ValueId)>> = {
        let users = graph.users();
        consumers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (relative && batch.is_some() && used.binary_search(&i).is_ok())
                    .then(|| residual_join(graph, &users, c.node))
                    .flatten()
            })
            .collect()
    };
    if relative && batch.is_none() {
        energy = (0..consumers.len())
            .into_par_iter()
            .map(|i| {
                Ok(weights
                    .get(i)?
                    .map(|ws| ws.iter().map(|w| w.iter().map(|v| v * v).sum()).collect()))
            })
            .collect::<Result<_, PassError>>()?;
    }
    let mut recorded: Vec<Vec<attention::RecordedBatch>> = Vec::new();
    // The V/O bases: the output projections' weights before, and the new data.
    let mut unrotated: HashMap<usize, Array2<f64>> = HashMap::new();
    let mut rotations: Vec<Rotation> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut projection_hessians: HashMap<usize, HessianSum> = HashMap::new();
    let mut low_rank_layers = 0;
    // Inverse Hessians (none for data=none).
    let hinv: Option<Vec<Option<Vec<InverseHessian>>>> = match batch {
        None => None,
        Some(batch) => {
            let mut energy_of: Vec<ValueId> =
                joins.iter().flatten().flat_map(|&(b, s)| [b, s]).collect();
            energy_of.sort_unstable_by_key(|v| v.0);
            energy_of.dedup();
            let mut recorder = attention::Recorder::new(&sites, &all, mask);
            let mut collected = collect::collect(
                model,
                batch,
                &all,
                &hessian_of,
                &[],
                &energy_of,
                mask,
                &mut recorder,
            )
            .map_err(failed)?;
            recorded = recorder.into_batches();
            for site in &value_sites {
                let Some(Some(sum)) = collected
                    .hessians
                    .get_mut(&site.consumer)
                    .map(|h| h.first_mut())
                else {
                    continue;
                };
                let Some(mut ws) = weights.get(site.consumer)?.map(Cow::into_owned) else {
                    continue;
                };
                let Some(w) = ws.first_mut() else {
                    continue;
                };
                match rebase_values(model, site, &consumers[site.consumer], sum, w) {
                    Ok(rot) => {
                        unrotated.insert(site.consumer, rot.0);
                        rotations.extend(rot.1);
                        weights.changed.insert(site.consumer, ws);
                    }
                    Err(e) => warnings.push(format!(
                        "obspa: V head dims at node '{}' keep their basis: {e}",
                        graph.node(site.v.node).label()
                    )),
                }
            }
            for i in projections.iter().flatten() {
                if let Some(h) = collected.hessians.get(i).and_then(|h| h.first()) {
                    projection_hessians.insert(*i, h.clone());
                }
            }
            collected
                .hessians
                .retain(|i, _| used.binary_search(i).is_ok());
            if relative {
                energy = consumers
                    .par_iter()
                    .enumerate()
                    .map(|(i, _)| {
                        let Some(sums) = collected.hessians.get(&i) else {
                            return Ok(None);
                        };
                        let Some(ws) = weights.get(i)? else {
                            return Ok(None);
                        };
                        // On a residual branch: the stream's energy over the branch's.
                        let share = joins[i]
                            .and_then(|(b, s)| {
                                Some(collected.energies.get(&s)? / collected.energies.get(&b)?)
                            })
                            .filter(|r| r.is_finite() && *r > 0.0)
                            .unwrap_or(1.0);
                        Ok(Some(
                            sums.iter()
                                .zip(ws.iter())
                                .map(|(s, w)| share * s.output_energy(w))
                                .collect(),
                        ))
                    })
                    .collect::<Result<_, PassError>>()?;
            }
            // Each sum is dropped once inverted, so the sums and their inverses are not all in
            // memory at once (8 d^2 bytes each per consumer).
            let mut sums: Vec<(usize, Vec<math::HessianSum>)> =
                std::mem::take(&mut collected.hessians)
                    .into_iter()
                    .collect();
            for (_, s) in &mut sums {
                for s in s {
                    if !low_rank {
                        s.densify();
                    }
                    low_rank_layers += usize::from(s.kept_rows().is_some());
                }
            }
            let inverted = sums
                .into_par_iter()
                .map(|(i, sums)| {
                    let inv = sums
                        .into_iter()
                        .map(|s| invert(s, damp))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            failed(format!(
                                "node '{}': {e}",
                                graph.node(consumers[i].node).label()
                            ))
                        })?;
                    Ok((i, inv))
                })
                .collect::<Result<Vec<_>, PassError>>()?;
            let mut inv: Vec<Option<Vec<InverseHessian>>> = vec![None; consumers.len()];
            for (i, h) in inverted {
                if let Some(slot) = inv.get_mut(i) {
                    *slot = Some(h);
                }
            }
            Some(inv)
        }
    };
    let l2 = fallback(model, groups)?;
    let per_space: Vec<Vec<f64>> = uses
        .par_iter()
        .enumerate()
        .map(|(s, uses)| {
            let n = groups.atoms[groups.spaces[s]].size.unwrap_or(0) as usize;
            let mut layers = Vec::new();
            let mut total_energy = 0.0;
            for (i, blocks) in uses {
                let Some(ws) = weights.get(*i)? else { continue };
                for (sub, w) in ws.into_owned().into_iter().enumerate() {
                    let e = energy[*i].as_ref().and_then(|e| e.get(sub)).copied();
                    let h = match &hinv {
                        Some(h) => match h[*i].as_ref().and_then(|h| h.get(sub)) {
                            Some(h) => h.clone(),
                            None => continue,
                        },
                        None => InverseHessian::LowRank(Box::new(LowRank::identity(w.ncols()))),
                    };
                    total_energy += e.unwrap_or(0.0);
                    layers.push(math::Layer {
                        w,
                        hinv: h,
                        blocks: blocks.clone(),
                    });
                }
            }
            if layers.is_empty() {
                let l2 = l2.per_space.get(s).cloned().unwrap_or_else(|| vec![0.0; n]);
                return Ok(if relative {
                    cumulative_fractions(&l2)
                } else {
                    l2
                });
            }
            let mut scores = if hinv.is_none() {
                column_norm_scores(&layers, n)
            } else {
                math::greedy_scores(&mut layers, n, MAX_STEPS)
                    .map_err(|e| failed(format!("group g{s}: {e}")))?
            };
            if relative && total_energy > 0.0 && total_energy.is_finite() {
                scores.iter_mut().for_each(|x| *x /= total_energy);
            }
            Ok(scores)
        })
        .collect::<Result<_, PassError>>()?;
    let mut per_space = per_space;
    let site_out = attention_scores(
        model,
        &sites,
        &projections,
        &projection_hessians,
        &recorded,
        &weights,
        &unrotated,
        &energy,
        relative,
    );
    for (s, scores) in &site_out.scores {
        per_space[*s] = scores.clone();
    }
    let scored = uses.iter().filter(|u| !u.is_empty()).count();
    let compensation = hinv.map(|h| Compensation {
        layers: h
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| {
                Some(CompensatedLayer {
                    consumer: consumers[i].clone(),
                    hinv: h?,
                })
            })
            .collect(),
        refit: batch
            .filter(|b| {
                !b.synthetic
                    && graph
                        .node_ids()
                        .any(|n| graph.node(n).op_type == "LayerNormalization")
            })
            .map(|b| crate::prune::refit::NormRefit {
                batch: std::sync::Arc::new(b.clone()),
                mask: mask.map(|v| graph.value(v).name.clone()),
            }),
    });
    let stats = vec![
        ("consumer layers", used.len()),
        (
            "consumers on a residual branch (relative to the stream)",
            joins.iter().flatten().count(),
        ),
        ("groups scored by obspa", scored),
        (
            "Q/K head-dim groups scored through the attention output",
            site_out.scores.len(),
        ),
        ("attention V/O head dims re-based per head", unrotated.len()),
        (
            "layer inverse Hessians in low-rank form (few rows)",
            low_rank_layers,
        ),
        (
            "groups scored by l2 (no consumer or pinned)",
            groups.spaces.len() - scored - site_out.scores.len(),
        ),
    ];
    Ok(ObspaOut {
        scores: Scores {
            criterion: "obspa".into(),
            per_space,
        },
        compensation,
        stats,
        rotations: rotations.into_iter().chain(site_out.rotations).collect(),
        warnings: warnings.into_iter().chain(site_out.warnings).collect(),
    })
}

/// The used consumers' weights as `f64` matrices per sub-layer ([`Consumer::matrices`]),
/// converted from the model's constants each time they are asked for rather than all held
/// through the calibration pass and the inversions (8 bytes a parameter: 5 GB for
/// RegNetY-128GF); those that the V/O re-basing rewrote are held.
struct Weights<'a> {
    graph: &'a Graph,
    consumers: &'a [Consumer],
    /// The used consumers, sorted.
    used: &'a [usize],
    changed: HashMap<usize, Vec<Array2<f64>>>,
}

impl Weights<'_> {
    /// Consumer `i`'s matrices; `None` for a consumer not used, or whose weight does not fit
    /// its shape.
    fn get(&self, i: usize) -> Result<Option<Cow<'_, [Array2<f64>]>>, PassError> {
        if let Some(w) = self.changed.get(&i) {
            return Ok(Some(Cow::Borrowed(w)));
        }
        let Some(c) = self
            .consumers
            .get(i)
            .filter(|_| self.used.binary_search(&i).is_ok())
        else {
            return Ok(None);
        };
        let w = self.constant(c)?.to_f32().map_err(|source| PassError::Ir {
            pass: "score".into(),
            source,
        })?;
        Ok(c.matrices(&w).map(Cow::Owned))
    }

    fn constant(&self, c: &Consumer) -> Result<&spa_ir::Tensor, PassError> {
        self.graph
            .constant(c.weight)
            .ok_or_else(|| failed("a consumer weight is not a constant"))
    }
}

/// A constant's data as f32.
fn read_f32(graph: &Graph, v: ValueId) -> Result<Vec<f32>, String> {
    graph
        .constant(v)
        .ok_or("not a constant")?
        .to_f32()
        .map_err(|e| e.to_string())
}

/// Re-base a V/O site ([`value`]): transforms the output projection's Hessian sums and weight
/// matrix in place; returns the weight matrix before, and the new data of `Wv`, `bv` and `Wo`.
fn rebase_values(
    model: &Model,
    site: &value::ValueSite,
    c: &Consumer,
    sum: &mut HessianSum,
    w: &mut Array2<f64>,
) -> Result<(Array2<f64>, Vec<Rotation>), String> {
    let graph = &model.graph;
    let read = |v: ValueId| read_f32(graph, v);
    // The basis and the transform read and rewrite `X^T X` itself, both triangles.
    sum.densify();
    let basis = value::value_basis(site, sum, w).map_err(|e| e.to_string())?;
    let mut rot = Vec::new();
    for v in std::iter::once(site.v.weight).chain(site.v.bias) {
        let data = attention::rotate(&read(v)?, &site.v.pos, site.heads, site.dim, &basis.g)
            .ok_or("a V weight has an unexpected shape")?;
        rot.push((v, data));
    }
    let before = w.clone();
    value::transform_weight(site, &basis, w);
    value::transform_hessian(site, &basis, sum);
    // Every element is written: no need to decode the old data.
    let mut data = vec![0.0f32; c.subs * c.rows * c.cols()];
    c.write(std::slice::from_ref(w), &mut data);
    rot.push((c.weight, data));
    Ok((before, rot))
}

/// New data for a constant.
type Rotation = (ValueId, Vec<f32>);
/// A site's losses (of cutting 1..=dim directions) and its Q/K weights in the new basis.
type SiteResult = (Vec<f64>, Vec<Rotation>);

#[derive(Default)]
struct SiteOut {
    /// Per space.
    scores: HashMap<usize, Vec<f64>>,
    rotations: Vec<Rotation>,
    warnings: Vec<String>,
}

/// Scores and Q/K bases of the attention sites ([`attention`]); a site that fails leaves its
/// space to the `l2` fallback, with a warning.
#[allow(clippy::too_many_arguments)]
fn attention_scores(
    model: &Model,
    sites: &[attention::Site],
    projections: &[[usize; 2]],
    hessians: &HashMap<usize, HessianSum>,
    recorded: &[Vec<attention::RecordedBatch>],
    weights: &Weights<'_>,
    unrotated: &HashMap<usize, Array2<f64>>,
    energy: &[Option<Vec<f64>>],
    relative: bool,
) -> SiteOut {
    let graph = &model.graph;
    let mut out = SiteOut::default();
    // Per space: summed losses and energies of its sites.
    let mut sums: HashMap<usize, (Vec<f64>, f64)> = HashMap::new();
    let results: Vec<Result<SiteResult, String>> = sites
        .iter()
        .enumerate()
        .map(|(i, site)| {
            let read = |v: ValueId| read_f32(graph, v);
            let (wq, wk) = (read(site.q.weight)?, read(site.k.weight)?);
            let [qi, ki] = projections[i];
            let (Some(hq), Some(hk)) = (hessians.get(&qi), hessians.get(&ki)) else {
                return Err("no input Hessian of a projection".into());
            };
            let (bq, bk) = (
                site.q.bias.map(read).transpose()?,
                site.k.bias.map(read).transpose()?,
            );
            let q = attention::Projection {
                weight: &wq,
                bias: bq.as_deref(),
                hessian: hq,
            };
            let k = attention::Projection {
                weight: &wk,
                bias: bk.as_deref(),
                hessian: hk,
            };
            let basis = attention::basis(site, &q, &k).map_err(|e| e.to_string())?;
            // The recorded attention outputs are in the original V basis.
            let held;
            let wo = match unrotated.get(&site.consumer) {
                Some(w) => w,
                None => {
                    held = weights.get(site.consumer).map_err(|e| e.to_string())?;
                    held.as_ref()
                        .and_then(|w| w.first())
                        .ok_or("the output projection's weight is unreadable")?
                }
            };
            let losses = attention::measure(
                model,
                site,
                &basis,
                recorded.get(i).map(|r| r.as_slice()).unwrap_or(&[]),
                wo,
            )?;
            let (h, d) = (site.heads, site.dim);
            let mut rot = Vec::new();
            for (side, t) in [(&site.q, &basis.g), (&site.k, &basis.gt)] {
                for v in std::iter::once(side.weight).chain(side.bias) {
                    let data = attention::rotate(&read(v)?, &side.pos, h, d, t)
                        .ok_or("a Q/K weight has an unexpected shape")?;
                    rot.push((v, data));
                }
            }
            Ok((losses, rot))
        })
        .collect();
    for (site, r) in sites.iter().zip(results) {
        match r {
            Ok((losses, rot)) => {
                let e: f64 = energy
                    .get(site.consumer)
                    .and_then(|e| e.as_ref())
                    .map(|e| e.iter().sum())
                    .unwrap_or(0.0);
                let entry = sums
                    .entry(site.space)
                    .or_insert_with(|| (vec![0.0; losses.len()], 0.0));
                if entry.0.len() == losses.len() {
                    entry.0.iter_mut().zip(&losses).for_each(|(a, l)| *a += l);
                    entry.1 += e;
                    out.rotations.extend(rot);
                }
            }
            Err(e) => out.warnings.push(format!(
                "obspa: Q/K head dims at node '{}' are scored by l2: {e}",
                graph.node(site.chain[0].0).label()
            )),
        }
    }
    for (s, (losses, e)) in sums {
        let mut scores = attention::scores(&losses);
        if relative {
            if !(e > 0.0 && e.is_finite()) {
                continue;
            }
            scores.iter_mut().for_each(|x| *x /= e);
        }
        out.scores.insert(s, scores);
    }
    out
}

/// Damped inverse Hessian; the damping grows tenfold (up to four times) until `H` is positive
/// definite.
fn invert(sum: math::HessianSum, damp: f64) -> Result<InverseHessian, math::MathError> {
    if let Some(x) = sum.kept_rows() {
        return escalating(damp, |d| LowRank::new(x, sum.rows, d))
            .map(|l| InverseHessian::LowRank(Box::new(l)));
    }
    // The damped copy is factored in place; the sum goes once it factors (the inverse is then
    // formed holding at most two d x d matrices).
    let l = escalating(damp, |d| math::cholesky_owned(sum.hessian(d)))?;
    drop(sum);
    Ok(InverseHessian::Dense(math::inverse_lower_from_factor(l)))
}

/// `f(damp)`, retried with the damping ten times larger (from `1e-6` if it was 0) up to four
/// times while it fails.
fn escalating<T>(
    damp: f64,
    mut f: impl FnMut(f64) -> Result<T, math::MathError>,
) -> Result<T, math::MathError> {
    let mut d = damp;
    let mut last = None;
    for _ in 0..5 {
        match f(d) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
        d = if d > 0.0 { d * 10.0 } else { 1e-6 };
    }
    Err(last.unwrap_or(math::MathError::NotPositiveDefinite { pivot: 0 }))
}

/// Where a layer's output joins a residual stream: following its only user through bias Adds and
/// Muls by a constant, BatchNorms and layout ops that keep every element (Transpose, Reshape,
/// Flatten, Identity; ConvNeXt permutes back before its layer scale), at most six steps, to the
/// first Add of two computed values. Returns the branch value entering that Add and the Add's
/// output.
fn residual_join(
    graph: &Graph,
    users: &[Vec<(NodeId, usize)>],
    node: NodeId,
) -> Option<(ValueId, ValueId)> {
    let mut v = graph.node(node).output(0)?;
    for _ in 0..6 {
        let [(n, _)] = users.get(v.index())?.as_slice() else {
            return None;
        };
        let next = graph.node(*n);
        if !next.canonical_domain().is_empty() {
            return None;
        }
        let out = next.output(0)?;
        let other = || next.inputs.iter().flatten().copied().find(|&x| x != v);
        match next.op_type.as_str() {
            "BatchNormalization" | "Transpose" | "Reshape" | "Flatten" | "Identity" => {}
            "Mul" if graph.constant(other()?).is_some() => {}
            "Add" if graph.constant(other()?).is_some() => {}
            "Add" => return Some((v, out)),
            _ => return None,
        }
        v = out;
    }
    None
}

/// In ascending order of `scores`, each channel gets the sum of the scores up to its own.
fn cumulative(scores: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut out = vec![0.0; scores.len()];
    let mut acc = 0.0;
    for c in order {
        acc += scores[c];
        out[c] = acc;
    }
    out
}

/// Magnitude scores of a group no layer consumes, in the form of relative obspa scores:
/// [`cumulative`] over the group's total.
fn cumulative_fractions(scores: &[f64]) -> Vec<f64> {
    let total: f64 = scores.iter().sum();
    let mut out = cumulative(scores);
    out.iter_mut()
        .for_each(|x| *x = if total > 0.0 { *x / total } else { 0.0 });
    out
}

/// `H = I`: saliency `1/2 ||W_:,Q||^2` summed over consumers, accumulated in ascending order
/// (what the greedy search gives when nothing is re-fitted).
fn column_norm_scores(layers: &[math::Layer], n: usize) -> Vec<f64> {
    let sal: Vec<f64> = (0..n)
        .map(|c| {
            layers
                .iter()
                .map(|l| {
                    l.blocks.get(c).map_or(0.0, |q| {
                        q.iter()
                            .map(|&j| 0.5 * l.w.column(j).iter().map(|v| v * v).sum::<f64>())
                            .sum()
                    })
                })
                .sum()
        })
        .collect();
    cumulative(&sal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_joins_through_bias_scale_batchnorm_and_layout_ops() {
        let model = spa_ir::text::parse_model(
            "graph @main(%x: f32[1,4,2,2], %t: f32[3,4]) -> (%y: f32[1,4,2,2], %u: f32[3,4], %v: f32[3,4], %z: f32[3,4], %y2: f32[1,4,2,2]) {
  %w = const f32[4,4,1,1] #rand<1>
  %c = onnx.Conv(%x, %w) {kernel_shape = [1, 1]} : f32[1,4,2,2]
  %g = const f32[4] #rand<2>
  %b = const f32[4] #rand<3>
  %m = const f32[4] #splat<0.0>
  %s = const f32[4] #splat<1.0>
  %n = onnx.BatchNormalization(%c, %g, %b, %m, %s) : f32[1,4,2,2]
  %y = onnx.Add(%x, %n) : f32[1,4,2,2]
  %wm = const f32[4,4] #rand<4>
  %p = onnx.MatMul(%t, %wm) : f32[3,4]
  %bias = const f32[4] #rand<5>
  %pb = onnx.Add(%p, %bias) : f32[3,4]
  %k = const f32[] dense<[0.5]>
  %ps = onnx.Mul(%k, %pb) : f32[3,4]
  %u = onnx.Add(%ps, %t) : f32[3,4]
  %wr = const f32[4,4] #rand<6>
  %q = onnx.MatMul(%t, %wr) : f32[3,4]
  %v = onnx.Relu(%q) : f32[3,4]
  %wd = const f32[4,4] #rand<7>
  %d = onnx.MatMul(%t, %wd) : f32[3,4]
  %z = onnx.Add(%d, %d) : f32[3,4]
  %xt = onnx.Transpose(%x) {perm = [0, 2, 3, 1]} : f32[1,2,2,4]
  %we = const f32[4,4] #rand<8>
  %e = onnx.MatMul(%xt, %we) : f32[1,2,2,4]
  %be = const f32[4] #rand<9>
  %eb = onnx.Add(%e, %be) : f32[1,2,2,4]
  %et = onnx.Transpose(%eb) {perm = [0, 3, 1, 2]} : f32[1,4,2,2]
  %gam = const f32[4,1,1] #rand<10>
  %es = onnx.Mul(%et, %gam) : f32[1,4,2,2]
  %y2 = onnx.Add(%es, %x) : f32[1,4,2,2]
  return %y, %u, %v, %z, %y2
}",
        )
        .unwrap();
        let g = &model.graph;
        let users = g.users();
        let names = g.names();
        let node_of = |out: &str| {
            let v = names[out];
            g.node_ids()
                .find(|&n| g.node(n).output(0) == Some(v))
                .unwrap()
        };
        let join = |out: &str| {
            residual_join(g, &users, node_of(out))
                .map(|(b, s)| (g.value(b).name.clone(), g.value(s).name.clone()))
        };
        // Conv -> BatchNorm -> Add(x): the branch is the BatchNorm output.
        assert_eq!(join("c"), Some(("n".into(), "y".into())));
        // MatMul -> bias Add -> Mul by a constant -> Add(t).
        assert_eq!(join("p"), Some(("ps".into(), "u".into())));
        // ConvNeXt: MatMul -> bias Add -> Transpose back to NCHW -> layer scale Mul -> Add(x).
        assert_eq!(join("e"), Some(("es".into(), "y2".into())));
        // A Relu ends the search; so does an Add of the value with itself.
        assert_eq!(join("q"), None);
        assert_eq!(join("d"), None);
    }
}
