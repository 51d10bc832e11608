//! The verifier. Being written.
