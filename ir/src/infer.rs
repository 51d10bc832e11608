//! Shape inference over a model. Being written.
