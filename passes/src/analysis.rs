//! The analysis cache: passes query analyses (computed once, keyed by type) and declare what they
//! preserve; the manager drops the rest after each pass.

use crate::error::PassError;
use spa_ir::Model;
use std::any::{Any, TypeId};
use std::collections::HashMap;

/// A result computed from a model, cached until a pass invalidates it.
pub trait Analysis: Any + Sized {
    const NAME: &'static str;
    fn compute(model: &Model) -> Result<Self, PassError>;
}

/// What a pass left valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preserved {
    /// The model did not change.
    All,
    /// The model changed; nothing cached is valid.
    None,
    /// Only these analyses (by `Analysis::NAME`) stay valid.
    Only(Vec<&'static str>),
}

#[derive(Default)]
pub struct AnalysisCache {
    entries: HashMap<TypeId, (&'static str, Box<dyn Any>)>,
    /// How many analyses were computed (not served from cache), for statistics and tests.
    pub computed: usize,
}

impl AnalysisCache {
    /// The cached analysis, computing it first if needed.
    pub fn get<A: Analysis>(&mut self, model: &Model) -> Result<&A, PassError> {
        let key = TypeId::of::<A>();
        if !self.entries.contains_key(&key) {
            let a = A::compute(model)?;
            self.computed += 1;
            self.entries.insert(key, (A::NAME, Box::new(a)));
        }
        self.entries
            .get(&key)
            .and_then(|(_, b)| b.downcast_ref::<A>())
            .ok_or_else(|| PassError::Failed {
                pass: A::NAME.to_string(),
                message: "analysis cache holds a value of the wrong type".into(),
            })
    }

    /// Store an analysis a pass computed itself (the `group` pass, which also rewrites types).
    pub fn insert<A: Analysis>(&mut self, a: A) {
        self.entries
            .insert(TypeId::of::<A>(), (A::NAME, Box::new(a)));
    }

    pub fn is_cached<A: Analysis>(&self) -> bool {
        self.entries.contains_key(&TypeId::of::<A>())
    }

    pub fn invalidate(&mut self, preserved: &Preserved) {
        match preserved {
            Preserved::All => {}
            Preserved::None => self.entries.clear(),
            Preserved::Only(keep) => self.entries.retain(|_, (name, _)| keep.contains(name)),
        }
    }
}
