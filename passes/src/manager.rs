//! The pass manager: runs a resolved pipeline over a model, verifying after each pass, printing IR
//! where asked, timing each pass and collecting statistics.

use crate::analysis::AnalysisCache;
use crate::error::PassError;
use crate::pipeline::Pipeline;
use spa_ir::text::{print_model, PrintOptions};
use spa_ir::Model;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How the manager runs a pipeline.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub verify_each: bool,
    pub print_ir_after_all: bool,
    /// Pass names after which the IR is printed.
    pub print_ir_after: Vec<String>,
    pub print_options: PrintOptions,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            verify_each: true,
            print_ir_after_all: false,
            print_ir_after: Vec::new(),
            print_options: PrintOptions::default(),
        }
    }
}

/// Named counters and facts a pass reports (`--pass-statistics`), in the order reported.
#[derive(Clone, Debug, Default)]
pub struct Statistics {
    pub entries: Vec<(String, String, String)>,
}

impl Statistics {
    /// Render as MLIR-like text: one block per pass.
    pub fn render(&self) -> String {
        let mut out =
            String::from("===-------------------------------------------------------------===\n");
        out.push_str("                         ... Pass statistics report ...\n");
        out.push_str("===-------------------------------------------------------------===\n");
        let mut last = "";
        for (pass, name, value) in &self.entries {
            if pass != last {
                let _ = writeln!(out, "{pass}");
                last = pass;
            }
            let _ = writeln!(out, "  ({value}) {name}");
        }
        out
    }
}

/// What a pass sees besides the model.
pub struct PassContext<'a> {
    pub analyses: &'a mut AnalysisCache,
    pass: &'static str,
    stats: &'a mut Statistics,
    /// Text a pass prints (test-print passes); the driver writes it to stdout.
    pub out: &'a mut String,
    /// Warnings for the user (the driver prints them to stderr).
    pub warnings: &'a mut Vec<String>,
    /// Short summaries for the user (stderr, unless quiet).
    pub notes: &'a mut Vec<String>,
    /// Machine-readable reports (JSON), written where the user asks (`--report`).
    pub reports: &'a mut Vec<String>,
}

impl PassContext<'_> {
    /// Report a statistic for `--pass-statistics`.
    pub fn stat(&mut self, name: &str, value: impl std::fmt::Display) {
        self.stats
            .entries
            .push((self.pass.to_string(), name.to_string(), value.to_string()));
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings
            .push(format!("{}: {}", self.pass, message.into()));
    }

    pub fn report(&mut self, json: impl Into<String>) {
        self.reports.push(json.into());
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn pass_name(&self) -> &'static str {
        self.pass
    }
}

/// Time spent in one pass.
#[derive(Clone, Debug)]
pub struct PassTiming {
    pub pass: String,
    pub time: Duration,
    pub verify: Duration,
}

/// Everything a run produced besides the transformed model.
#[derive(Debug, Default)]
pub struct RunOutput {
    pub out: String,
    pub ir_dumps: String,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    pub reports: Vec<String>,
    pub stats: Statistics,
    pub timings: Vec<PassTiming>,
}

pub struct PassManager {
    pub pipeline: Pipeline,
    pub config: RunConfig,
}

impl PassManager {
    pub fn new(pipeline: Pipeline, config: RunConfig) -> PassManager {
        PassManager { pipeline, config }
    }

    /// Run every pass in order. On error, the model may be partially transformed; the driver then
    /// writes nothing.
    pub fn run(&self, model: &mut Model, output: &mut RunOutput) -> Result<(), PassError> {
        let mut analyses = AnalysisCache::default();
        for (info, options) in &self.pipeline.passes {
            let start = Instant::now();
            let mut pass = (info.create)(options)?;
            let preserved = {
                let mut cx = PassContext {
                    analyses: &mut analyses,
                    pass: info.name,
                    stats: &mut output.stats,
                    out: &mut output.out,
                    warnings: &mut output.warnings,
                    notes: &mut output.notes,
                    reports: &mut output.reports,
                };
                pass.run(model, &mut cx)?
            };
            analyses.invalidate(&preserved);
            let time = start.elapsed();
            let vstart = Instant::now();
            if self.config.verify_each {
                spa_ir::verify::verify_model(model).map_err(|source| PassError::Verify {
                    pass: info.name.to_string(),
                    source,
                })?;
            }
            output.timings.push(PassTiming {
                pass: info.name.to_string(),
                time,
                verify: vstart.elapsed(),
            });
            if self.config.print_ir_after_all
                || self.config.print_ir_after.iter().any(|p| p == info.name)
            {
                let _ = writeln!(
                    output.ir_dumps,
                    "// -----// IR Dump After {} //----- //",
                    info.name
                );
                output
                    .ir_dumps
                    .push_str(&print_model(model, &self.config.print_options));
            }
        }
        Ok(())
    }
}
