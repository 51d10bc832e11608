//! spa-passes: the pass manager, the pipeline syntax, the pass registry, and every pass.
//!
//! A pass is declared once ([`PassInfo`]: kebab-case name, summary, typed options with defaults and
//! help); `--help`, `--list-passes`, the pipeline parser and `--dump-pass-pipeline` all read that
//! declaration, so they cannot drift from the code. Passes transform a [`spa_ir::Model`] in place
//! and share analyses through the [`AnalysisCache`].
//!
//! This crate never touches protobuf or writes files: frontends read models, backends write them.
//! The one file it reads is calibration data the user names (`score{data=FILE}`, [`calib`]).

pub mod analysis;
pub mod calib;
pub mod canonicalize;
pub mod error;
pub mod group;
pub mod manager;
pub mod options;
pub mod pipeline;
pub mod prune;
pub mod registry;
pub mod score;
pub mod sparsify;
pub mod transforms;

pub use analysis::{Analysis, AnalysisCache, Preserved};
pub use error::PassError;
pub use manager::{PassContext, PassManager, PassTiming, RunConfig, RunOutput, Statistics};
pub use options::{OptionDecl, OptionKind, OptionValue, Options};
pub use pipeline::{parse_pipeline, PassSpec, Pipeline};
pub use registry::{register_all_passes, Pass, PassInfo, PassRegistry};
