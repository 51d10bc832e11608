//! Elementwise kernels: activations, unary math, broadcasting binary and variadic ops,
//! comparisons, logic, `Where`, `Clip`, `Cast`.

use super::value::{Data, Value};
use super::{arg, opt, Ctx, KernelFn, PAR_MIN};
use crate::dtype::DType;
use ndarray::{ArrayD, IxDyn, Zip};

pub(super) fn kernel(op: &str) -> Option<KernelFn> {
    Some(match op {
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Erf" | "Reciprocal" | "Floor"
        | "Ceil" | "Round" | "Sin" | "Cos" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh" | "Cosh"
        | "Asinh" | "Acosh" | "Atanh" | "Softplus" | "Softsign" | "HardSigmoid" | "HardSwish"
        | "LeakyRelu" | "Elu" | "Selu" | "Celu" | "Gelu" | "Mish" | "ThresholdedRelu"
        | "Shrink" => float_unary,
        "Neg" | "Abs" | "Sign" => signed_unary,
        "IsNaN" | "IsInf" => float_test,
        "Not" => not,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "PRelu" => arith,
        "Max" | "Min" | "Sum" | "Mean" => variadic,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => compare,
        "And" | "Or" | "Xor" => logic,
        "Where" => where_,
        "Clip" => clip,
        "Cast" => cast,
        "CastLike" => cast_like,
        _ => return None,
    })
}

/// The shape two or more shapes broadcast to (numpy rules).
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let x = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let y = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("cannot broadcast {a:?} with {b:?}")),
        };
    }
    Ok(out)
}

/// Map two arrays through `f` with broadcasting, in parallel when large.
pub(crate) fn zip2<A, B, O>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Result<ArrayD<O>, String>
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    O: Copy + Send + Sync,
{
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let bad = || format!("cannot broadcast {:?} with {:?}", a.shape(), b.shape());
    let av = a.broadcast(IxDyn(&shape)).ok_or_else(bad)?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or_else(bad)?;
    let z = Zip::from(&av).and(&bv);
    Ok(if shape.iter().product::<usize>() >= PAR_MIN {
        z.par_map_collect(|&x, &y| f(x, y))
    } else {
        z.map_collect(|&x, &y| f(x, y))
    })
}

/// Map one array through `f`, in parallel when large.
pub(crate) fn map1<A, O>(a: &ArrayD<A>, f: impl Fn(A) -> O + Sync + Send) -> ArrayD<O>
where
    A: Copy + Send + Sync,
    O: Copy + Send + Sync,
{
    let z = Zip::from(a);
    if a.len() >= PAR_MIN {
        z.par_map_collect(|&x| f(x))
    } else {
        z.map_collect(|&x| f(x))
    }
}

/// erf with absolute error below 1.2e-7 (Numerical Recipes `erfc` by Chebyshev fit), in f64.
pub(crate) fn erf(x: f32) -> f32 {
    let x = x as f64;
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { 1.0 - r } else { r - 1.0 }) as f32
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn float_unary(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let a = x
        .as_f32()
        .ok_or_else(|| format!("expected a float tensor, got {}", x.dtype()))?;
    let alpha = |d| cx.float("alpha", d);
    let out = match cx.node.op_type.as_str() {
        "Relu" => map1(a, |v| v.max(0.0)),
        "Sigmoid" => map1(a, sigmoid),
        "Tanh" => map1(a, f32::tanh),
        "Exp" => map1(a, f32::exp),
        "Log" => map1(a, f32::ln),
        "Sqrt" => map1(a, f32::sqrt),
        "Erf" => map1(a, erf),
        "Reciprocal" => map1(a, |v| 1.0 / v),
        "Floor" => map1(a, f32::floor),
        "Ceil" => map1(a, f32::ceil),
        "Round" => map1(a, f32::round_ties_even),
        "Sin" => map1(a, f32::sin),
        "Cos" => map1(a, f32::cos),
        "Tan" => map1(a, f32::tan),
        "Asin" => map1(a, f32::asin),
        "Acos" => map1(a, f32::acos),
        "Atan" => map1(a, f32::atan),
        "Sinh" => map1(a, f32::sinh),
        "Cosh" => map1(a, f32::cosh),
        "Asinh" => map1(a, f32::asinh),
        "Acosh" => map1(a, f32::acosh),
        "Atanh" => map1(a, f32::atanh),
        "Softplus" => map1(a, softplus),
        "Softsign" => map1(a, |v| v / (1.0 + v.abs())),
        "Mish" => map1(a, |v| v * softplus(v).tanh()),
        "HardSigmoid" => {
            let (al, be) = (alpha(0.2), cx.float("beta", 0.5));
            map1(a, move |v| (al * v + be).clamp(0.0, 1.0))
        }
        "HardSwish" => map1(a, |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
        "LeakyRelu" => {
            let al = alpha(0.01);
            map1(a, move |v| if v >= 0.0 { v } else { al * v })
        }
        "Elu" => {
            let al = alpha(1.0);
            map1(a, move |v| if v >= 0.0 { v } else { al * (v.exp() - 1.0) })
        }
        "Celu" => {
            let al = alpha(1.0);
            map1(a, move |v| {
                v.max(0.0) + (al * ((v / al).exp() - 1.0)).min(0.0)
            })
        }
        "Selu" => {
            let al = alpha(1.673_263_2);
            let g = cx.float("gamma", 1.050_701);
            map1(a, move |v| {
                g * if v > 0.0 { v } else { al * (v.exp() - 1.0) }
            })
        }
        "ThresholdedRelu" => {
            let al = alpha(1.0);
            map1(a, move |v| if v > al { v } else { 0.0 })
        }
        "Shrink" => {
            let (l, b) = (cx.float("lambd", 0.5), cx.float("bias", 0.0));
            map1(a, move |v| {
                if v < -l {
                    v + b
                } else if v > l {
                    v - b
                } else {
                    0.0
                }
            })
        }
        "Gelu" => {
            if cx.string("approximate", "none") == "tanh" {
                map1(a, |v| {
                    0.5 * v
                        * (1.0
                            + ((2.0f32 / std::f32::consts::PI).sqrt() * (v + 0.044715 * v * v * v))
                                .tanh())
                })
            } else {
                map1(a, |v| 0.5 * v * (1.0 + erf(v / std::f32::consts::SQRT_2)))
            }
        }
        op => return Err(format!("no float kernel for {op}")),
    };
    Ok(vec![x.like(Data::F32(out))])
}

fn signed_unary(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let op = cx.node.op_type.as_str();
    let data = match x.data() {
        Data::F32(a) => Data::F32(match op {
            "Neg" => map1(a, |v: f32| -v),
            "Abs" => map1(a, f32::abs),
            _ => map1(a, |v: f32| if v == 0.0 { 0.0 } else { v.signum() }),
        }),
        Data::I64(a) => Data::I64(match op {
            "Neg" => map1(a, i64::wrapping_neg),
            "Abs" => map1(a, i64::wrapping_abs),
            _ => map1(a, i64::signum),
        }),
        Data::Bool(_) => return Err(format!("{op} of a bool tensor")),
    };
    Ok(vec![x.like(data)])
}

fn float_test(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let a = x.to_f32_array();
    let out = if cx.node.op_type == "IsNaN" {
        map1(&a, f32::is_nan)
    } else {
        let (pos, neg) = (
            cx.int("detect_positive", 1) != 0,
            cx.int("detect_negative", 1) != 0,
        );
        map1(&a, move |v| {
            v.is_infinite() && ((v > 0.0 && pos) || (v < 0.0 && neg))
        })
    };
    Ok(vec![Value::bool(out)])
}

fn not(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let a = x.as_bool().ok_or("Not needs a bool tensor")?;
    Ok(vec![Value::bool(map1(a, |v: bool| !v))])
}

/// Float and integer binary arithmetic with broadcasting.
fn arith(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let (x, y) = (arg(inputs, 0)?, arg(inputs, 1)?);
    let op = cx.node.op_type.as_str();
    let data = binary_op(op, x, y, cx.int("fmod", 0) != 0)?;
    Ok(vec![x.like(data)])
}

pub(crate) fn binary_op(op: &str, x: &Value, y: &Value, fmod: bool) -> Result<Data, String> {
    Ok(match (x.data(), y.data()) {
        (Data::F32(a), Data::F32(b)) => Data::F32(match op {
            "Add" | "Sum" | "Mean" => zip2(a, b, |p, q| p + q)?,
            "Sub" => zip2(a, b, |p, q| p - q)?,
            "Mul" => zip2(a, b, |p, q| p * q)?,
            "Div" => zip2(a, b, |p, q| p / q)?,
            "Pow" => zip2(a, b, pow_f32)?,
            "Max" => zip2(a, b, |p: f32, q: f32| {
                if p.is_nan() || q.is_nan() {
                    f32::NAN
                } else {
                    p.max(q)
                }
            })?,
            "Min" => zip2(a, b, |p: f32, q: f32| {
                if p.is_nan() || q.is_nan() {
                    f32::NAN
                } else {
                    p.min(q)
                }
            })?,
            "PRelu" => zip2(a, b, |p, s| if p < 0.0 { p * s } else { p })?,
            "Mod" => {
                if fmod {
                    zip2(a, b, |p, q| p % q)?
                } else {
                    zip2(a, b, |p, q| {
                        let r = p % q;
                        if r != 0.0 && (r < 0.0) != (q < 0.0) {
                            r + q
                        } else {
                            r
                        }
                    })?
                }
            }
            _ => return Err(format!("no float kernel for {op}")),
        }),
        (Data::F32(a), Data::I64(b)) if op == "Pow" => {
            Data::F32(zip2(a, b, |p, q| pow_f32(p, q as f32))?)
        }
        (Data::I64(a), Data::I64(b)) => {
            let zero = b.iter().any(|&q| q == 0);
            if zero && matches!(op, "Div" | "Mod") {
                return Err("integer division by zero".into());
            }
            Data::I64(match op {
                "Add" | "Sum" | "Mean" => zip2(a, b, i64::wrapping_add)?,
                "Sub" => zip2(a, b, i64::wrapping_sub)?,
                "Mul" => zip2(a, b, i64::wrapping_mul)?,
                "Div" => zip2(a, b, i64::wrapping_div)?,
                "Max" => zip2(a, b, i64::max)?,
                "Min" => zip2(a, b, i64::min)?,
                "Pow" => zip2(a, b, |p, q| {
                    if q < 0 {
                        0
                    } else {
                        p.wrapping_pow(q.min(u32::MAX as i64) as u32)
                    }
                })?,
                "Mod" => {
                    if fmod {
                        zip2(a, b, i64::wrapping_rem)?
                    } else {
                        zip2(a, b, |p, q| {
                            let r = p.wrapping_rem(q);
                            if r != 0 && (r < 0) != (q < 0) {
                                r + q
                            } else {
                                r
                            }
                        })?
                    }
                }
                _ => return Err(format!("no integer kernel for {op}")),
            })
        }
        (Data::I64(a), Data::F32(b)) if op == "Pow" => {
            Data::I64(zip2(a, b, |p, q| (p as f32).powf(q) as i64)?)
        }
        _ => {
            return Err(format!(
                "{op} of {} and {} is not supported",
                x.dtype(),
                y.dtype()
            ))
        }
    })
}

fn pow_f32(p: f32, q: f32) -> f32 {
    if q == 2.0 {
        p * p
    } else if q == 0.5 {
        p.sqrt()
    } else {
        p.powf(q)
    }
}

/// Max, Min, Sum, Mean over any number of inputs.
fn variadic(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let op = cx.node.op_type.as_str();
    let first = arg(inputs, 0)?;
    let mut acc: Option<Value> = None;
    let n = inputs.iter().flatten().count();
    for x in inputs.iter().flatten().skip(1) {
        let cur = acc.as_ref().unwrap_or(first);
        acc = Some(first.like(binary_op(op, cur, x, false)?));
    }
    let mut out = acc.unwrap_or_else(|| first.clone());
    if op == "Mean" {
        if let Data::F32(a) = out.data() {
            let k = n as f32;
            out = out.like(Data::F32(map1(a, move |v| v / k)));
        }
    }
    Ok(vec![out])
}

fn compare(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let (x, y) = (arg(inputs, 0)?, arg(inputs, 1)?);
    let op = cx.node.op_type.as_str();
    fn cmp<T: PartialOrd + Copy + Send + Sync>(
        op: &str,
        a: &ArrayD<T>,
        b: &ArrayD<T>,
    ) -> Result<ArrayD<bool>, String> {
        match op {
            "Equal" => zip2(a, b, |p, q| p == q),
            "Less" => zip2(a, b, |p, q| p < q),
            "Greater" => zip2(a, b, |p, q| p > q),
            "LessOrEqual" => zip2(a, b, |p, q| p <= q),
            _ => zip2(a, b, |p, q| p >= q),
        }
    }
    let out = match (x.data(), y.data()) {
        (Data::F32(a), Data::F32(b)) => cmp(op, a, b)?,
        (Data::I64(a), Data::I64(b)) => cmp(op, a, b)?,
        (Data::Bool(a), Data::Bool(b)) => cmp(op, a, b)?,
        _ => cmp(op, &x.to_f32_array(), &y.to_f32_array())?,
    };
    Ok(vec![Value::bool(out)])
}

fn logic(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let (x, y) = (arg(inputs, 0)?, arg(inputs, 1)?);
    let (Some(a), Some(b)) = (x.as_bool(), y.as_bool()) else {
        return Err("expected bool tensors".into());
    };
    let out = match cx.node.op_type.as_str() {
        "And" => zip2(a, b, |p, q| p && q)?,
        "Or" => zip2(a, b, |p, q| p || q)?,
        _ => zip2(a, b, |p, q| p ^ q)?,
    };
    Ok(vec![Value::bool(out)])
}

fn where_(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let c = arg(inputs, 0)?;
    let (x, y) = (arg(inputs, 1)?, arg(inputs, 2)?);
    let cond = c.as_bool().ok_or("condition must be bool")?;
    fn sel<T: Copy + Send + Sync>(
        c: &ArrayD<bool>,
        a: &ArrayD<T>,
        b: &ArrayD<T>,
    ) -> Result<ArrayD<T>, String> {
        let s = broadcast_shape(&broadcast_shape(c.shape(), a.shape())?, b.shape())?;
        let bad = || "cannot broadcast Where operands".to_string();
        let (cv, av, bv) = (
            c.broadcast(IxDyn(&s)).ok_or_else(bad)?,
            a.broadcast(IxDyn(&s)).ok_or_else(bad)?,
            b.broadcast(IxDyn(&s)).ok_or_else(bad)?,
        );
        Ok(Zip::from(&cv)
            .and(&av)
            .and(&bv)
            .map_collect(|&c, &p, &q| if c { p } else { q }))
    }
    let data = match (x.data(), y.data()) {
        (Data::F32(a), Data::F32(b)) => Data::F32(sel(cond, a, b)?),
        (Data::I64(a), Data::I64(b)) => Data::I64(sel(cond, a, b)?),
        (Data::Bool(a), Data::Bool(b)) => Data::Bool(sel(cond, a, b)?),
        _ => return Err(format!("Where of {} and {}", x.dtype(), y.dtype())),
    };
    Ok(vec![x.like(data)])
}

fn clip(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let scalar = |i: usize| -> Option<f64> {
        let v = opt(inputs, i)?;
        match v.data() {
            Data::F32(a) => a.iter().next().map(|&x| x as f64),
            Data::I64(a) => a.iter().next().map(|&x| x as f64),
            Data::Bool(_) => None,
        }
    };
    let (lo, hi) = if cx.opset < 11 {
        (
            Some(cx.float("min", f32::MIN) as f64),
            Some(cx.float("max", f32::MAX) as f64),
        )
    } else {
        (scalar(1), scalar(2))
    };
    let data = match x.data() {
        Data::F32(a) => {
            let (l, h) = (
                lo.map_or(f32::NEG_INFINITY, |v| v as f32),
                hi.map_or(f32::INFINITY, |v| v as f32),
            );
            Data::F32(map1(a, move |v| v.max(l).min(h)))
        }
        Data::I64(a) => {
            let (l, h) = (
                lo.map_or(i64::MIN, |v| v as i64),
                hi.map_or(i64::MAX, |v| v as i64),
            );
            Data::I64(map1(a, move |v| v.max(l).min(h)))
        }
        Data::Bool(_) => return Err("Clip of a bool tensor".into()),
    };
    Ok(vec![x.like(data)])
}

fn cast(cx: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    let x = arg(inputs, 0)?;
    let to = cx.int("to", 0);
    let to = DType::from_onnx_code(to as i32).ok_or_else(|| format!("unknown dtype code {to}"))?;
    Ok(vec![x.cast(to)?])
}

fn cast_like(_: &Ctx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, String> {
    Ok(vec![arg(inputs, 0)?.cast(arg(inputs, 1)?.dtype())?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_and_erf() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert!(broadcast_shape(&[2], &[3]).is_err());
        // Hand values: erf(0.5) = 0.5204999, erf(-1) = -0.8427008, erf(2) = 0.9953223.
        for (x, y) in [
            (0.5, 0.520_499_9),
            (-1.0, -0.842_700_8),
            (2.0, 0.995_322_3),
            (0.0, 0.0),
        ] {
            assert!((erf(x) - y).abs() < 2e-7, "erf({x})");
        }
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1.0f32, 2.0]).unwrap();
        let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![10.0f32, 20.0, 30.0]).unwrap();
        let c = zip2(&a, &b, |p, q| p * q).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(
            c.iter().copied().collect::<Vec<_>>(),
            vec![10.0, 20.0, 30.0, 20.0, 40.0, 60.0]
        );
    }
}
