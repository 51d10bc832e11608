//! The op registry. Being written.
