//! Channel coupling facts, the vocabulary of op coupling rules.
//!
//! Every tensor axis is an index space. An op's coupling rule states how the index spaces of its
//! operands relate: equalities between terms (an axis, a concatenation `cat(...)`, a mixed-radix
//! product `(a*b)` outermost first), axes that are *fixed* (not channels: batch, spatial, kernel
//! axes), spaces that are *pinned* (channels that must keep their size: an op that cannot be
//! rewritten), and spaces whose removal is *inexact* (normalization statistics change). The `group`
//! pass turns the facts of every node into an e-graph and reads groups out of it.

/// A node operand: input `i` or output `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    In(usize),
    Out(usize),
}

/// An index-space term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Term {
    /// Axis `axis` of an operand.
    Axis(Operand, usize),
    /// A space local to this node with the given size (`n` distinguishes several per node), for
    /// example the parts of an axis that a Slice drops.
    Fresh(u32, u64),
    /// Concatenation, first part first.
    Cat(Vec<Term>),
    /// Mixed-radix product, outermost (slowest-varying) factor first.
    Prod(Vec<Term>),
}

impl Term {
    pub fn ax(operand: Operand, axis: usize) -> Term {
        Term::Axis(operand, axis)
    }

    pub fn input(i: usize, axis: usize) -> Term {
        Term::Axis(Operand::In(i), axis)
    }

    pub fn output(i: usize, axis: usize) -> Term {
        Term::Axis(Operand::Out(i), axis)
    }
}

/// The facts one node contributes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coupling {
    pub equal: Vec<(Term, Term)>,
    /// Not a channel axis (batch, spatial, kernel, sequence, ...): never a group.
    pub fixed: Vec<(Term, String)>,
    /// A channel space that must keep its size.
    pub pinned: Vec<(Term, String)>,
    /// Removing channels of this space changes the op's result beyond dropping them.
    pub inexact: Vec<(Term, String)>,
}

impl Coupling {
    pub fn same(&mut self, a: Term, b: Term) {
        self.equal.push((a, b));
    }

    pub fn fix(&mut self, t: Term, why: impl Into<String>) {
        self.fixed.push((t, why.into()));
    }

    pub fn pin(&mut self, t: Term, why: impl Into<String>) {
        self.pinned.push((t, why.into()));
    }

    pub fn inexact(&mut self, t: Term, why: impl Into<String>) {
        self.inexact.push((t, why.into()));
    }
}

use crate::graph::Node;
use crate::tensor::Tensor;
use crate::types::TensorType;

/// What a coupling rule sees of a node: types of its operands and known values of its inputs.
pub struct CoupleCtx<'a> {
    pub node: &'a Node,
    pub opset: i64,
    pub inputs: Vec<Option<&'a TensorType>>,
    pub outputs: Vec<Option<&'a TensorType>>,
    /// Known contents of inputs (constants, or shape computations folded by inference).
    pub values: Vec<Option<&'a Tensor>>,
    /// Whether input `i` is a constant (a weight the prune pass can slice).
    pub is_const: Vec<bool>,
}

impl CoupleCtx<'_> {
    fn ty(&self, op: Operand) -> Option<&TensorType> {
        match op {
            Operand::In(i) => self.inputs.get(i).copied().flatten(),
            Operand::Out(i) => self.outputs.get(i).copied().flatten(),
        }
    }

    /// Rank of an operand, when known.
    pub fn rank(&self, op: Operand) -> Option<usize> {
        self.ty(op)?.rank()
    }

    /// Static dims of an operand (unknown dims as -1), when its rank is known.
    pub fn dims(&self, op: Operand) -> Option<Vec<i64>> {
        Some(
            self.ty(op)?
                .shape
                .as_ref()?
                .iter()
                .map(|a| a.dim.known().unwrap_or(-1))
                .collect(),
        )
    }

    /// Dims of an operand, symbolic ones included, when its rank is known.
    pub fn dims_sym(&self, op: Operand) -> Option<Vec<crate::types::Dim>> {
        Some(
            self.ty(op)?
                .shape
                .as_ref()?
                .iter()
                .map(|a| a.dim.clone())
                .collect(),
        )
    }

    /// Known integer contents of input `i`.
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.values.get(i).copied().flatten()?.to_i64().ok()
    }

    pub fn is_const(&self, i: usize) -> bool {
        self.is_const.get(i).copied().unwrap_or(false)
    }
}
