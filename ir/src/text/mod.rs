//! The `.spa` text format: an MLIR-like printer and parser for a [`Model`], the interface of every
//! pass test. `parse(print(m)) == m` up to attribute order (printed sorted by name) and value/node
//! renumbering, for models whose constants are printed in full. `docs/spa-format.md` is the syntax
//! reference.
//!
//! The printer never panics, even on invalid IR (undefined values, cycles, bad tensors): it prints
//! what is there. The parser never panics either: every error carries a line and a column and says
//! what was expected and what was found. Dangling references are not parse errors; the verifier
//! reports them.

mod lexer;
mod literal;
mod parser;
mod printer;
mod syntax;

use crate::model::Model;
use thiserror::Error;

/// How to print a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintOptions {
    /// Print every constant's full data (needed to parse the text back).
    pub print_constants: bool,
    /// Constants with more elements than this print as `#elided<digest>`.
    pub elide_above: usize,
}

impl Default for PrintOptions {
    fn default() -> PrintOptions {
        PrintOptions {
            print_constants: false,
            elide_above: 16,
        }
    }
}

/// A syntax error, at a 1-based line and column (in characters).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{line}:{col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Print a model in the `.spa` text format. Deterministic; never panics.
pub fn print_model(model: &Model, opts: &PrintOptions) -> String {
    printer::print_model(model, opts)
}

/// Parse a model from the `.spa` text format.
pub fn parse_model(src: &str) -> Result<Model, ParseError> {
    parser::parse_model(src)
}
