//! Consumer layers: nodes with a constant weight whose input-channel axis carries channels of a
//! group (Conv, Gemm, MatMul), seen as `rows x cols` weight matrices (one per conv group) and
//! fed with rows of layer input (im2col patches for convs).

use crate::group::GroupAnalysis;
use ndarray::{Array2, ArrayView2};
use spa_ir::interp::Value;
use spa_ir::{Graph, Model, NodeId, Tensor, ValueId};

#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// 1-D or 2-D convolution (1-D as height 1).
    Conv {
        kernel: [usize; 2],
        strides: [usize; 2],
        dilations: [usize; 2],
        /// Explicit begin pads, or `None` to derive them from `auto_pad` at run time.
        pads: Option<[usize; 2]>,
        auto_pad: String,
        rank: usize,
    },
    Gemm {
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
}

/// A layer that reads group channels through the input-channel axis of its weight.
#[derive(Clone, Debug)]
pub struct Consumer {
    pub node: NodeId,
    pub weight: ValueId,
    /// The weight axis of input channels.
    pub in_axis: usize,
    pub kind: LayerKind,
    /// Independent sub-layers (conv groups).
    pub subs: usize,
    /// Rows (outputs) per sub-layer.
    pub rows: usize,
    /// Positions of the input-channel axis (per sub-layer for convs).
    pub inputs: usize,
    /// Columns per input position (kernel elements; 1 for Gemm/MatMul).
    pub kernel: usize,
}

impl Consumer {
    pub fn cols(&self) -> usize {
        self.inputs * self.kernel
    }

    /// Index of weight element (sub, row, col) in the weight's row-major data.
    fn index(&self, sub: usize, row: usize, col: usize) -> usize {
        match self.kind {
            LayerKind::Conv { .. } => ((sub * self.rows + row) * self.cols()) + col,
            LayerKind::Gemm { trans_b: true, .. } => row * self.inputs + col,
            _ => col * self.rows + row,
        }
    }

    /// The weight as one `rows x cols` matrix per sub-layer.
    pub fn matrices(&self, w: &[f32]) -> Option<Vec<Array2<f64>>> {
        if w.len() != self.subs * self.rows * self.cols() {
            return None;
        }
        Some(
            (0..self.subs)
                .map(|s| {
                    Array2::from_shape_fn((self.rows, self.cols()), |(r, c)| {
                        w[self.index(s, r, c)] as f64
                    })
                })
                .collect(),
        )
    }

    /// Write sub-layer matrices back into the weight's data.
    pub fn write(&self, mats: &[Array2<f64>], w: &mut [f32]) {
        for (s, m) in mats.iter().enumerate() {
            for ((r, c), &v) in m.indexed_iter() {
                if let Some(x) = w.get_mut(self.index(s, r, c)) {
                    *x = v as f32;
                }
            }
        }
    }

    /// Feed the layer-input rows of sub-layer `sub` for input `x` (and output shape `y_shape`),
    /// in blocks of at most
    /// `block` rows (`rows x cols`, row-major), to `f`.
    pub fn input_rows(
        &self,
        x: &Value,
        y_shape: &[usize],
        sub: usize,
        block: usize,
        f: &mut dyn FnMut(ArrayView2<'_, f32>),
    ) -> Result<(), String> {
        // The input as it is where it is f32 and contiguous (no copy per call: a grouped conv
        // reads it once per group).
        let converted;
        let a = match x.as_f32() {
            Some(a) => a,
            None => {
                converted = x.to_f32_array();
                &converted
            }
        };
        let shape = a.shape().to_vec();
        let data: std::borrow::Cow<'_, [f32]> = match a.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(a.iter().copied().collect()),
        };
        let cols = self.cols();
        match &self.kind {
            LayerKind::Gemm { trans_a, .. } => {
                let [m, k] = shape[..] else {
                    return Err(format!("Gemm input has shape {shape:?}"));
                };
                if (if *trans_a { m } else { k }) != cols {
                    return Err(format!(
                        "Gemm input {shape:?} does not match {cols} columns"
                    ));
                }
                if *trans_a {
                    let t = Array2::from_shape_fn((k, m), |(i, j)| data[j * k + i]);
                    for chunk in t.axis_chunks_iter(ndarray::Axis(0), block.max(1)) {
                        f(chunk);
                    }
                } else {
                    feed_rows(&data, cols, block, f)?;
                }
            }
            LayerKind::MatMul => {
                if shape.last() != Some(&cols) {
                    return Err(format!(
                        "MatMul input {shape:?} does not match {cols} columns"
                    ));
                }
                feed_rows(&data, cols, block, f)?;
            }
            LayerKind::Conv {
                kernel,
                strides,
                dilations,
                pads,
                auto_pad,
                rank,
            } => {
                // [N, C, (H,) W] as [N, C, H, W]; the output size comes from the node's output.
                let (n, c, h, w) = match (rank, &shape[..]) {
                    (1, &[n, c, w]) => (n, c, 1, w),
                    (2, &[n, c, h, w]) => (n, c, h, w),
                    _ => return Err(format!("Conv input has shape {shape:?}")),
                };
                let (oh, ow) = match (rank, y_shape) {
                    (1, &[_, _, ow]) => (1, ow),
                    (2, &[_, _, oh, ow]) => (oh, ow),
                    _ => return Err(format!("Conv output has shape {y_shape:?}")),
                };
                let cpg = self.inputs;
                if c != cpg * self.subs {
                    return Err(format!(
                        "Conv input has {c} channels, the weight expects {}",
                        cpg * self.subs
                    ));
                }
                let size = [h, w];
                let outs = [oh, ow];
                let mut begin = [0i64; 2];
                for d in 0..2 {
                    begin[d] = match pads {
                        Some(p) => p[d] as i64,
                        None if auto_pad.starts_with("SAME") => {
                            let span = (kernel[d] - 1) * dilations[d] + 1;
                            let t = ((outs[d].saturating_sub(1)) * strides[d] + span)
                                .saturating_sub(size[d]);
                            (if auto_pad == "SAME_UPPER" {
                                t / 2
                            } else {
                                t - t / 2
                            }) as i64
                        }
                        None => 0,
                    };
                }
                let k = self.kernel;
                let rows_total = n * oh * ow;
                let block = block.max(1);
                let mut buf = vec![0f32; block.min(rows_total.max(1)) * cols];
                let mut start = 0;
                while start < rows_total {
                    let len = block.min(rows_total - start);
                    let chunk = &mut buf[..len * cols];
                    for (r, row) in chunk.chunks_exact_mut(cols).enumerate() {
                        let idx = start + r;
                        let (b, rem) = (idx / (oh * ow), idx % (oh * ow));
                        let (y0, x0) = (rem / ow, rem % ow);
                        for j in 0..cpg {
                            let ch = sub * cpg + j;
                            let plane = &data[((b * c + ch) * h * w)..((b * c + ch + 1) * h * w)];
                            for ky in 0..kernel[0] {
                                let iy = (y0 * strides[0] + ky * dilations[0]) as i64 - begin[0];
                                for kx in 0..kernel[1] {
                                    let ix =
                                        (x0 * strides[1] + kx * dilations[1]) as i64 - begin[1];
                                    let v = if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < h
                                        && (ix as usize) < w
                                    {
                                        plane[iy as usize * w + ix as usize]
                                    } else {
                                        0.0
                                    };
                                    row[j * k + ky * kernel[1] + kx] = v;
                                }
                            }
                        }
                    }
                    let v =
                        ArrayView2::from_shape((len, cols), &*chunk).map_err(|e| e.to_string())?;
                    f(v);
                    start += len;
                }
            }
        }
        Ok(())
    }
}

fn feed_rows(
    data: &[f32],
    cols: usize,
    block: usize,
    f: &mut dyn FnMut(ArrayView2<'_, f32>),
) -> Result<(), String> {
    if cols == 0 {
        return Ok(());
    }
    for chunk in data.chunks(block.max(1) * cols) {
        let v =
            ArrayView2::from_shape((chunk.len() / cols, cols), chunk).map_err(|e| e.to_string())?;
        f(v);
    }
    Ok(())
}

/// Every Conv (1-D/2-D), Gemm and MatMul whose weight is a float constant used by that node
/// alone and whose input-channel axis mentions a channel atom.
pub fn find_consumers(model: &Model, groups: &GroupAnalysis) -> Vec<Consumer> {
    let graph = &model.graph;
    let users = graph.users();
    let mut out = Vec::new();
    for n in graph.node_ids() {
        let node = graph.node(n);
        if !node.canonical_domain().is_empty() {
            continue;
        }
        let (Some(x), Some(wv)) = (node.input(0), node.input(1)) else {
            continue;
        };
        let Some(w) = graph.constant(wv) else {
            continue;
        };
        if graph.constant(x).is_some()
            || !w.dtype.is_float()
            || users.get(wv.index()).is_none_or(|u| u.len() != 1)
        {
            continue;
        }
        let Some(c) = consumer(graph, n, wv, w) else {
            continue;
        };
        let mut atoms = Vec::new();
        if let Some(t) = groups.terms.get(&(wv, c.in_axis)) {
            t.atoms(&mut atoms);
        }
        if atoms.iter().any(|&a| groups.atoms[a].space.is_some()) {
            out.push(c);
        }
    }
    out
}

fn consumer(graph: &Graph, n: NodeId, wv: ValueId, w: &Tensor) -> Option<Consumer> {
    let node = graph.node(n);
    let dims: Vec<usize> = w
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    match node.op_type.as_str() {
        "Conv" => {
            let rank = dims.len().checked_sub(2).filter(|r| (1..=2).contains(r))?;
            let g = usize::try_from(node.attr_int("group").unwrap_or(1))
                .ok()?
                .max(1);
            let (cout, cpg) = (dims[0], dims[1]);
            if cout % g != 0 {
                return None;
            }
            let attr2 = |name: &str, default: usize| -> Option<[usize; 2]> {
                match node.attr_ints(name) {
                    Some(v) if v.len() == rank => {
                        let v: Vec<usize> = v
                            .iter()
                            .map(|&x| usize::try_from(x).ok())
                            .collect::<Option<_>>()?;
                        Some(if rank == 1 {
                            [default, v[0]]
                        } else {
                            [v[0], v[1]]
                        })
                    }
                    Some(_) => None,
                    None => Some([default; 2]),
                }
            };
            let kernel = if rank == 1 {
                [1, dims[2]]
            } else {
                [dims[2], dims[3]]
            };
            let pads = match node.attr_ints("pads") {
                Some(p) if p.len() == 2 * rank => {
                    let p: Vec<usize> = p
                        .iter()
                        .map(|&x| usize::try_from(x).ok())
                        .collect::<Option<_>>()?;
                    Some(if rank == 1 { [0, p[0]] } else { [p[0], p[1]] })
                }
                Some(_) => return None,
                None => match node.attr_str("auto_pad").unwrap_or("NOTSET") {
                    "NOTSET" | "VALID" => Some([0, 0]),
                    _ => None,
                },
            };
            Some(Consumer {
                node: n,
                weight: wv,
                in_axis: 1,
                kind: LayerKind::Conv {
                    kernel,
                    strides: attr2("strides", 1)?,
                    dilations: attr2("dilations", 1)?,
                    pads,
                    auto_pad: node.attr_str("auto_pad").unwrap_or("NOTSET").to_string(),
                    rank,
                },
                subs: g,
                rows: cout / g,
                inputs: cpg,
                kernel: kernel[0] * kernel[1],
            })
        }
        "Gemm" => {
            let [a, b] = dims[..] else { return None };
            let trans_b = node.attr_int("transB").unwrap_or(0) != 0;
            let (rows, inputs) = if trans_b { (a, b) } else { (b, a) };
            Some(Consumer {
                node: n,
                weight: wv,
                in_axis: if trans_b { 1 } else { 0 },
                kind: LayerKind::Gemm {
                    trans_a: node.attr_int("transA").unwrap_or(0) != 0,
                    trans_b,
                },
                subs: 1,
                rows,
                inputs,
                kernel: 1,
            })
        }
        "MatMul" => {
            let [k, m] = dims[..] else { return None };
            Some(Consumer {
                node: n,
                weight: wv,
                in_axis: 0,
                kind: LayerKind::MatMul,
                subs: 1,
                rows: m,
                inputs: k,
                kernel: 1,
            })
        }
        _ => None,
    }
}

/// Columns of each channel of atom `atom` in one sub-layer of `c` (empty for channels the layer
/// does not read).
pub fn channel_blocks(
    groups: &GroupAnalysis,
    c: &Consumer,
    atom: usize,
    channels: usize,
) -> Option<Vec<Vec<usize>>> {
    let term = groups.terms.get(&(c.weight, c.in_axis))?;
    let map = crate::score::channel_map(groups, term, atom)?;
    if map.len() != c.inputs {
        return None;
    }
    let mut blocks = vec![Vec::new(); channels];
    for (p, ch) in map.iter().enumerate() {
        if let Some(b) = ch.and_then(|ch| blocks.get_mut(ch as usize)) {
            b.extend((0..c.kernel).map(|k| p * c.kernel + k));
        }
    }
    Some(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn conv(
        kernel: [usize; 2],
        strides: [usize; 2],
        pads: [usize; 2],
        subs: usize,
        cpg: usize,
    ) -> Consumer {
        Consumer {
            node: NodeId(0),
            weight: ValueId(0),
            in_axis: 1,
            kind: LayerKind::Conv {
                kernel,
                strides,
                dilations: [1, 1],
                pads: Some(pads),
                auto_pad: "NOTSET".into(),
                rank: 2,
            },
            subs,
            rows: 1,
            inputs: cpg,
            kernel: kernel[0] * kernel[1],
        }
    }

    #[test]
    fn im2col_rows_with_padding_and_groups() {
        // x[0, c, i, j] = 100c + 10i + j, 2 groups of 1 channel, 3x3 input, 2x2 kernel, pad 1,
        // stride 2: outputs 2x2.
        let x = ArrayD::from_shape_fn(vec![1, 2, 3, 3], |d| (100 * d[1] + 10 * d[2] + d[3]) as f32);
        let x = Value::f32(x);
        let c = conv([2, 2], [2, 2], [1, 1], 2, 1);
        let mut rows = Vec::new();
        c.input_rows(&x, &[1, 2, 2, 2], 1, 3, &mut |v| {
            rows.extend(v.rows().into_iter().map(|r| r.to_vec()))
        })
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![0., 0., 0., 100.],
                vec![0., 0., 101., 102.],
                vec![0., 110., 0., 120.],
                vec![111., 112., 121., 122.],
            ]
        );
    }

    #[test]
    fn weight_layouts_round_trip() {
        let w: Vec<f32> = (0..12).map(|v| v as f32).collect();
        for kind in [
            LayerKind::Gemm {
                trans_a: false,
                trans_b: true,
            },
            LayerKind::Gemm {
                trans_a: false,
                trans_b: false,
            },
            LayerKind::MatMul,
        ] {
            let c = Consumer {
                node: NodeId(0),
                weight: ValueId(0),
                in_axis: 0,
                kind: kind.clone(),
                subs: 1,
                rows: 3,
                inputs: 4,
                kernel: 1,
            };
            let m = c.matrices(&w).unwrap();
            // Row r, column k: transB=1 stores [N=3, K=4]; otherwise [K=4, N=3].
            let want = if kind
                == (LayerKind::Gemm {
                    trans_a: false,
                    trans_b: true,
                }) {
                w[4 + 2]
            } else {
                w[2 * 3 + 1]
            };
            assert_eq!(m[0][[1, 2]], want as f64);
            let mut back = vec![0f32; 12];
            c.write(&m, &mut back);
            assert_eq!(back, w);
        }
    }
}
