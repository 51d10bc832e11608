//! Value types. A tensor type's axes may carry a channel-space expression (`64@g0`), which is what
//! makes the IR channel-aware: the `group` pass writes them, `prune` reads them, the verifier checks
//! that each expression's size equals its axis size.

use crate::dtype::DType;
use std::fmt;

/// Index of a channel space (a group atom), printed `g<N>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpaceId(pub u32);

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// A term over channel spaces describing how an axis is composed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChannelExpr {
    /// One atom: `g3`.
    Space(SpaceId),
    /// A fixed-size factor inside a product (`49` in `(g5*49)`).
    Lit(u64),
    /// Concatenation along the axis: `cat(g0,g3)`.
    Cat(Vec<ChannelExpr>),
    /// Mixed-radix product, outermost first: `(g7*g8)` = g7 blocks of g8.
    Prod(Vec<ChannelExpr>),
}

impl ChannelExpr {
    /// Size of the expression given the size of every space.
    pub fn size(&self, space_size: &dyn Fn(SpaceId) -> Option<u64>) -> Option<u64> {
        match self {
            ChannelExpr::Space(s) => space_size(*s),
            ChannelExpr::Lit(n) => Some(*n),
            ChannelExpr::Cat(xs) => xs.iter().try_fold(0u64, |acc, x| {
                x.size(space_size).and_then(|n| acc.checked_add(n))
            }),
            ChannelExpr::Prod(xs) => xs.iter().try_fold(1u64, |acc, x| {
                x.size(space_size).and_then(|n| acc.checked_mul(n))
            }),
        }
    }

    /// Every space mentioned, in order of appearance.
    pub fn spaces(&self, out: &mut Vec<SpaceId>) {
        match self {
            ChannelExpr::Space(s) => out.push(*s),
            ChannelExpr::Lit(_) => {}
            ChannelExpr::Cat(xs) | ChannelExpr::Prod(xs) => xs.iter().for_each(|x| x.spaces(out)),
        }
    }
}

impl fmt::Display for ChannelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelExpr::Space(s) => write!(f, "{s}"),
            ChannelExpr::Lit(n) => write!(f, "{n}"),
            ChannelExpr::Cat(xs) => {
                f.write_str("cat(")?;
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str(")")
            }
            ChannelExpr::Prod(xs) => {
                f.write_str("(")?;
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("*")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The extent of one axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    /// A named symbolic size (ONNX `dim_param`), e.g. `batch`.
    Sym(String),
    /// Unknown size (ONNX dimension with neither value nor param).
    Unknown,
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    /// Two dims can describe the same axis: equal, or at least one of them not fixed.
    pub fn compatible(&self, other: &Dim) -> bool {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a == b,
            (Dim::Sym(a), Dim::Sym(b)) => a == b,
            _ => true,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// One axis of a tensor type: its extent and, once grouped, its channel expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Axis {
    pub dim: Dim,
    pub channels: Option<ChannelExpr>,
}

impl Axis {
    pub fn known(n: i64) -> Axis {
        Axis {
            dim: Dim::Known(n),
            channels: None,
        }
    }
}

impl From<Dim> for Axis {
    fn from(dim: Dim) -> Axis {
        Axis {
            dim,
            channels: None,
        }
    }
}

/// A tensor type. `dtype` is `None` when unknown; `shape` is `None` when the rank is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct TensorType {
    pub dtype: Option<DType>,
    pub shape: Option<Vec<Axis>>,
}

impl TensorType {
    pub fn new(dtype: DType, dims: &[i64]) -> TensorType {
        TensorType {
            dtype: Some(dtype),
            shape: Some(dims.iter().map(|&d| Axis::known(d)).collect()),
        }
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(|s| s.len())
    }

    /// All dims if every one is a known number.
    pub fn static_dims(&self) -> Option<Vec<i64>> {
        self.shape.as_ref()?.iter().map(|a| a.dim.known()).collect()
    }

    /// Dims with symbolic and unknown sizes counted as 1 (for cost estimates).
    pub fn dims_or_one(&self) -> Option<Vec<i64>> {
        Some(
            self.shape
                .as_ref()?
                .iter()
                .map(|a| a.dim.known().unwrap_or(1))
                .collect(),
        )
    }

    pub fn dims(&self) -> Option<Vec<Dim>> {
        Some(self.shape.as_ref()?.iter().map(|a| a.dim.clone()).collect())
    }

    /// Same dtype and shape, ignoring channel expressions.
    pub fn same_shape(&self, other: &TensorType) -> bool {
        self.dtype == other.dtype && self.dims() == other.dims()
    }

    /// Drop channel expressions (used before comparing with inference).
    pub fn without_channels(&self) -> TensorType {
        TensorType {
            dtype: self.dtype,
            shape: self.shape.as_ref().map(|s| {
                s.iter()
                    .map(|a| Axis {
                        dim: a.dim.clone(),
                        channels: None,
                    })
                    .collect()
            }),
        }
    }
}

/// The type of a value. Non-tensor ONNX types are kept so they round-trip.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Type {
    /// Nothing known (no value_info, not inferred).
    #[default]
    Unknown,
    Tensor(TensorType),
    SparseTensor(TensorType),
    Sequence(Box<Type>),
    Optional(Box<Type>),
    Map(DType, Box<Type>),
}

impl Type {
    pub fn tensor(dtype: DType, dims: &[i64]) -> Type {
        Type::Tensor(TensorType::new(dtype, dims))
    }

    pub fn as_tensor(&self) -> Option<&TensorType> {
        match self {
            Type::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_tensor_mut(&mut self) -> Option<&mut TensorType> {
        match self {
            Type::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Type::Unknown)
    }
}

fn write_tensor_type(f: &mut fmt::Formatter<'_>, t: &TensorType) -> fmt::Result {
    match t.dtype {
        Some(d) => write!(f, "{d}")?,
        None => f.write_str("?")?,
    }
    match &t.shape {
        None => f.write_str("[*]"),
        Some(axes) => {
            f.write_str("[")?;
            for (i, a) in axes.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{}", a.dim)?;
                if let Some(c) = &a.channels {
                    write!(f, "@{c}")?;
                }
            }
            f.write_str("]")
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_tensor_type(f, self)
    }
}

/// Text form: `f32[1,64@g0,?,batch]`, `?[*]`, `sparse<f32[4,4]>`, `seq<f32[*]>`, `opt<...>`,
/// `map<i64,f32[*]>`, and `?` for unknown.
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Unknown => f.write_str("?"),
            Type::Tensor(t) => write_tensor_type(f, t),
            Type::SparseTensor(t) => {
                f.write_str("sparse<")?;
                write_tensor_type(f, t)?;
                f.write_str(">")
            }
            Type::Sequence(t) => write!(f, "seq<{t}>"),
            Type::Optional(t) => write!(f, "opt<{t}>"),
            Type::Map(k, v) => write!(f, "map<{k},{v}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_channel_types() {
        let t = TensorType {
            dtype: Some(DType::F32),
            shape: Some(vec![
                Axis::known(1),
                Axis {
                    dim: Dim::Known(128),
                    channels: Some(ChannelExpr::Cat(vec![
                        ChannelExpr::Space(SpaceId(0)),
                        ChannelExpr::Space(SpaceId(3)),
                    ])),
                },
                Axis {
                    dim: Dim::Known(3136),
                    channels: Some(ChannelExpr::Prod(vec![
                        ChannelExpr::Space(SpaceId(5)),
                        ChannelExpr::Lit(49),
                    ])),
                },
                Dim::Sym("h".into()).into(),
                Dim::Unknown.into(),
            ]),
        };
        assert_eq!(t.to_string(), "f32[1,128@cat(g0,g3),3136@(g5*49),h,?]");
        let sizes = |_: SpaceId| Some(64);
        let c = t.shape.as_ref().unwrap()[2].channels.clone().unwrap();
        assert_eq!(c.size(&sizes), Some(64 * 49));
    }
}
