//! Shape and data-movement ops: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Expand, Shape,
//! Size, ConstantOfShape, Range, Tile, Identity, Dropout, DepthToSpace, SpaceToDepth, EyeLike.

use super::value::{flat, map_data, to_array, try_map_data, Data, Value};
use super::{arg, axis, opt, Ctx, KernelFn};
use ndarray::{ArrayD, Axis, IxDyn};

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "Reshape" => reshape,
        "Flatten" => flatten,
        "Transpose" => transpose,
        "Squeeze" => squeeze,
        "Unsqueeze" => unsqueeze,
        "Expand" => expand,
        "Shape" => shape,
        "Size" => size,
        "ConstantOfShape" => constant_of_shape,
        "Range" => range,
        "Tile" => tile,
        "Identity" => identity,
        "Dropout" => dropout,
        "DepthToSpace" | "SpaceToDepth" => depth_space,
        "EyeLike" => eye_like,
        _ => return None,
    })
}

/// Reshape to a new shape (row-major order).
pub(crate) fn reshaped(x: &Value, shape: &[usize]) -> Result<Value, String> {
    let n: usize = shape.iter().product();
    if n != x.len() {
        return Err(format!("cannot reshape {:?} to {shape:?}", x.shape()));
    }
    fn re<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
        to_array(shape, flat(a))
    }
    Ok(x.like(try_map_data!(x.data(), a => re(a, shape))))
}

fn reshape(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let spec: Vec<i64> = if cx.opset < 5 {
        cx.ints("shape")
            .map(|s| s.to_vec())
            .ok_or("shape is missing")?
    } else {
        arg(inputs, 1)?.to_i64_vec()
    };
    let allow_zero = cx.int("allowzero", 0) != 0;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(
                *x.shape()
                    .get(i)
                    .ok_or_else(|| format!("shape {spec:?}: 0 copies a missing axis {i}"))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("bad shape {spec:?}")),
        }
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || x.len() % known != 0 {
            return Err(format!("cannot reshape {:?} to {spec:?}", x.shape()));
        }
        out[i] = x.len() / known;
    }
    Ok(vec![reshaped(x, &out)?])
}

fn flatten(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let s = x.shape();
    let a = cx.int("axis", 1);
    let a = if a < 0 { a + s.len() as i64 } else { a };
    if a < 0 || a as usize > s.len() {
        return Err(format!("axis {a} out of range for rank {}", s.len()));
    }
    let a = a as usize;
    let shape = [s[..a].iter().product(), s[a..].iter().product()];
    Ok(vec![reshaped(x, &shape)?])
}

pub(crate) fn permuted(x: &Value, perm: &[usize]) -> Result<Value, String> {
    let r = x.shape().len();
    let mut seen = vec![false; r];
    if perm.len() != r
        || perm
            .iter()
            .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!("perm {perm:?} for rank {r}"));
    }
    Ok(x.like(map_data!(x.data(), a => a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned())))
}

fn transpose(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let r = x.shape().len();
    let perm: Vec<usize> = match cx.ints("perm") {
        Some(p) => p.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    Ok(vec![permuted(x, &perm)?])
}

fn axes_param(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Option<Vec<i64>> {
    if cx.opset >= 13 {
        opt(inputs, 1).map(|v| v.to_i64_vec())
    } else {
        cx.ints("axes").map(|a| a.to_vec())
    }
}

fn squeeze(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let s = x.shape();
    let out: Vec<usize> = match axes_param(cx, inputs) {
        Some(a) => {
            let axes: Vec<usize> = a
                .iter()
                .map(|&v| axis(v, s.len()))
                .collect::<Result<_, _>>()?;
            if let Some(&bad) = axes.iter().find(|&&i| s[i] != 1) {
                return Err(format!("cannot squeeze axis {bad} of {s:?}"));
            }
            s.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
        None => s.iter().copied().filter(|&d| d != 1).collect(),
    };
    Ok(vec![reshaped(x, &out)?])
}

fn unsqueeze(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let a = axes_param(cx, inputs).ok_or("axes are missing")?;
    let r = x.shape().len() + a.len();
    let mut axes: Vec<usize> = a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?;
    axes.sort_unstable();
    let mut out = Vec::with_capacity(r);
    let mut src = x.shape().iter();
    for i in 0..r {
        if axes.contains(&i) {
            out.push(1);
        } else {
            out.push(*src.next().ok_or("bad axes")?);
        }
    }
    Ok(vec![reshaped(x, &out)?])
}

fn expand(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let spec = arg(inputs, 1)?.to_i64_vec();
    if spec.iter().any(|&d| d < 0) {
        return Err(format!("bad shape {spec:?}"));
    }
    let spec: Vec<usize> = spec.iter().map(|&d| d as usize).collect();
    let target = super::elementwise::broadcast_shape(x.shape(), &spec)?;
    let bad = || format!("cannot expand {:?} to {spec:?}", x.shape());
    Ok(vec![x.like(try_map_data!(x.data(), a => a
        .broadcast(IxDyn(&target))
        .map(|v| v.to_owned())
        .ok_or_else(bad)))])
}

fn shape(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let s: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(cx.int("start", 0));
    let end = clamp(cx.int("end", r));
    let v = s[start..end.max(start)].to_vec();
    Ok(vec![Value::i64(to_array(&[v.len()], v)?)])
}

fn size(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    Ok(vec![Value::i64(to_array(&[], vec![x.len() as i64])?)])
}

fn constant_of_shape(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let spec = arg(inputs, 0)?.to_i64_vec();
    if spec.iter().any(|&d| d < 0) {
        return Err(format!("bad shape {spec:?}"));
    }
    let shape: Vec<usize> = spec.iter().map(|&d| d as usize).collect();
    let fill = match cx.attr("value") {
        Some(crate::attr::AttrValue::Tensor(t)) => Value::from_tensor(t)?,
        _ => Value::f32(ArrayD::zeros(IxDyn(&[1]))),
    };
    let data = match fill.data() {
        Data::F32(a) => Data::F32(ArrayD::from_elem(
            IxDyn(&shape),
            a.iter().next().copied().unwrap_or(0.0),
        )),
        Data::I64(a) => Data::I64(ArrayD::from_elem(
            IxDyn(&shape),
            a.iter().next().copied().unwrap_or(0),
        )),
        Data::Bool(a) => Data::Bool(ArrayD::from_elem(
            IxDyn(&shape),
            a.iter().next().copied().unwrap_or(false),
        )),
    };
    Ok(vec![fill.like(data)])
}

fn range(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let (s, l, d) = (arg(inputs, 0)?, arg(inputs, 1)?, arg(inputs, 2)?);
    match (s.data(), l.data(), d.data()) {
        (Data::F32(a), Data::F32(b), Data::F32(c)) => {
            let (a, b, c) = (first(a)?, first(b)?, first(c)?);
            if c == 0.0 {
                return Err("Range delta is 0".into());
            }
            let n = ((b - a) / c).ceil().max(0.0) as usize;
            let v: Vec<f32> = (0..n).map(|i| a + i as f32 * c).collect();
            Ok(vec![s.like(Data::F32(to_array(&[n], v)?))])
        }
        (Data::I64(a), Data::I64(b), Data::I64(c)) => {
            let (a, b, c) = (first(a)?, first(b)?, first(c)?);
            if c == 0 {
                return Err("Range delta is 0".into());
            }
            let n = ((b - a) as f64 / c as f64).ceil().max(0.0) as usize;
            if n > 1 << 31 {
                return Err(format!("Range of {n} elements"));
            }
            let v: Vec<i64> = (0..n).map(|i| a + i as i64 * c).collect();
            Ok(vec![s.like(Data::I64(to_array(&[n], v)?))])
        }
        _ => Err("Range operands must share a numeric dtype".into()),
    }
}

fn first<T: Copy>(a: &ArrayD<T>) -> Result<T, String> {
    a.iter()
        .next()
        .copied()
        .ok_or_else(|| "empty scalar".to_string())
}

fn tile(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let reps = arg(inputs, 1)?.to_i64_vec();
    if reps.len() != x.shape().len() || reps.iter().any(|&r| r < 0) {
        return Err(format!("repeats {reps:?} for shape {:?}", x.shape()));
    }
    fn t<T: Clone>(a: &ArrayD<T>, reps: &[i64]) -> Result<ArrayD<T>, String> {
        let mut cur = a.clone();
        for (ax, &r) in reps.iter().enumerate() {
            if r != 1 {
                let views: Vec<_> = (0..r).map(|_| cur.view()).collect();
                cur = if views.is_empty() {
                    let mut s = cur.shape().to_vec();
                    s[ax] = 0;
                    ArrayD::from_shape_vec(IxDyn(&s), Vec::new()).map_err(|e| e.to_string())?
                } else {
                    ndarray::concatenate(Axis(ax), &views).map_err(|e| e.to_string())?
                };
            }
        }
        Ok(cur)
    }
    Ok(vec![x.like(try_map_data!(x.data(), a => t(a, &reps)))])
}

fn identity(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    Ok(vec![arg(inputs, 0)?.clone()])
}

fn dropout(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let training = opt(inputs, 2).is_some_and(|t| t.to_i64_vec().first() == Some(&1));
    if training {
        return Err("Dropout in training mode is not supported".into());
    }
    let mut outs = vec![x.clone()];
    if cx.node.outputs.len() > 1 {
        outs.push(Value::bool(ArrayD::from_elem(IxDyn(x.shape()), true)));
    }
    Ok(outs)
}

fn depth_space(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let s = x.shape();
    if s.len() != 4 {
        return Err(format!("input of rank {} (4 needed)", s.len()));
    }
    let b = cx.int("blocksize", 0);
    if b <= 0 {
        return Err("blocksize must be positive".into());
    }
    let b = b as usize;
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    if cx.node.op_type == "DepthToSpace" {
        if c % (b * b) != 0 {
            return Err(format!("{c} channels for blocksize {b}"));
        }
        let c2 = c / (b * b);
        let (tmp, perm): (Vec<usize>, [usize; 6]) = if cx.string("mode", "DCR") == "CRD" {
            (vec![n, c2, b, b, h, w], [0, 1, 4, 2, 5, 3])
        } else {
            (vec![n, b, b, c2, h, w], [0, 3, 4, 1, 5, 2])
        };
        let y = permuted(&reshaped(x, &tmp)?, &perm)?;
        Ok(vec![reshaped(&y, &[n, c2, h * b, w * b])?])
    } else {
        if h % b != 0 || w % b != 0 {
            return Err(format!("spatial {h}x{w} for blocksize {b}"));
        }
        let y = permuted(
            &reshaped(x, &[n, c, h / b, b, w / b, b])?,
            &[0, 3, 5, 1, 2, 4],
        )?;
        Ok(vec![reshaped(&y, &[n, c * b * b, h / b, w / b])?])
    }
}

fn eye_like(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let s = x.shape();
    if s.len() != 2 {
        return Err("EyeLike needs a matrix".into());
    }
    let k = cx.int("k", 0);
    let mut e = ArrayD::<f32>::zeros(IxDyn(s));
    for i in 0..s[0] {
        let j = i as i64 + k;
        if j >= 0 && (j as usize) < s[1] {
            if let Some(v) = e.get_mut(IxDyn(&[i, j as usize])) {
                *v = 1.0;
            }
        }
    }
    let v = Value::f32(e);
    let to = match cx.int("dtype", -1) {
        -1 => x.dtype(),
        c => crate::dtype::DType::from_onnx_code(c as i32).ok_or("bad dtype")?,
    };
    Ok(vec![v.cast(to)?])
}
