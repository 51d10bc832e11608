//! Errors of pipeline parsing and pass execution; each names the pass and option concerned.

use spa_ir::IrError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PassError {
    #[error("pipeline '{pipeline}', column {col}: {message}")]
    Syntax {
        pipeline: String,
        col: usize,
        message: String,
    },
    #[error("unknown pass '{name}'; known passes: {known}")]
    UnknownPass { name: String, known: String },
    #[error("pass '{pass}': unknown option '{option}'; valid options: {valid}")]
    UnknownOption {
        pass: String,
        option: String,
        valid: String,
    },
    #[error("pass '{pass}': option '{option}' expects {expected}, got '{value}'")]
    BadOption {
        pass: String,
        option: String,
        expected: String,
        value: String,
    },
    #[error("pass '{pass}': option '{option}' is given twice")]
    DuplicateOption { pass: String, option: String },
    #[error("pass '{pass}': {source}")]
    Ir {
        pass: String,
        #[source]
        source: IrError,
    },
    #[error("verification failed after pass '{pass}': {source}")]
    Verify {
        pass: String,
        #[source]
        source: IrError,
    },
    #[error("pass '{pass}': {message}")]
    Failed { pass: String, message: String },
}
