//! The pass registry: one declaration per pass, listed explicitly in [`register_all_passes`].

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::options::{OptionDecl, Options};
use crate::pipeline::{PassSpec, Pipeline};
use crate::transforms;
use spa_ir::Model;

/// A pass instance, created from its options.
pub trait Pass {
    fn run(&mut self, model: &mut Model, cx: &mut PassContext<'_>) -> Result<Preserved, PassError>;
}

/// The declaration of a pass: everything `--help`, the parser and the printer need.
pub struct PassInfo {
    /// kebab-case; `test-` passes exist to print an analysis.
    pub name: &'static str,
    pub summary: &'static str,
    pub options: &'static [OptionDecl],
    pub create: fn(&Options) -> Result<Box<dyn Pass>, PassError>,
}

impl std::fmt::Debug for PassInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub struct PassRegistry {
    passes: Vec<&'static PassInfo>,
}

/// Every pass spa-opt knows, in the order `--help` lists them.
pub fn register_all_passes() -> PassRegistry {
    PassRegistry {
        passes: vec![
            &crate::canonicalize::INFO,
            &crate::group::INFO,
            &crate::score::INFO,
            &crate::prune::INFO,
            &crate::sparsify::INFO,
            &transforms::fold_bn::INFO,
            &transforms::cse::INFO,
            &transforms::dce::INFO,
            &transforms::fold_constants::INFO,
            &transforms::fold_shapes::INFO,
            &transforms::shape_infer::INFO,
            &transforms::split_fused::INFO,
            &transforms::verify::INFO,
            &crate::group::PRINT_INFO,
            &crate::score::PRINT_INFO,
            &transforms::test_print_shapes::INFO,
        ],
    }
}

impl PassRegistry {
    pub fn passes(&self) -> &[&'static PassInfo] {
        &self.passes
    }

    pub fn get(&self, name: &str) -> Option<&'static PassInfo> {
        self.passes.iter().copied().find(|p| p.name == name)
    }

    /// Check pass names and option types.
    pub fn resolve(&self, specs: &[PassSpec]) -> Result<Pipeline, PassError> {
        let mut pipeline = Pipeline::default();
        for spec in specs {
            let info = self.get(&spec.name).ok_or_else(|| PassError::UnknownPass {
                name: spec.name.clone(),
                known: self
                    .passes
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            let opts = Options::resolve(info.name, info.options, &spec.options)?;
            // Creating the pass checks option values beyond their types (ranges, combinations),
            // so that a bad pipeline is a usage error before any model is read.
            (info.create)(&opts)?;
            pipeline.passes.push((info, opts));
        }
        Ok(pipeline)
    }

    /// Parse and resolve pipeline text.
    pub fn parse(&self, text: &str) -> Result<Pipeline, PassError> {
        self.resolve(&crate::pipeline::parse_pipeline(text)?)
    }

    /// The pass list for `--help` and `--list-passes`: each pass, its summary and options.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for p in &self.passes {
            out.push_str(&format!("  {:<20} {}\n", p.name, p.summary));
            for o in p.options {
                let default = if o.default.is_empty() {
                    String::new()
                } else {
                    format!(" (default {})", o.default)
                };
                out.push_str(&format!(
                    "      {}=<{}>  {}{}\n",
                    o.name,
                    o.kind.type_name(),
                    o.help,
                    default
                ));
            }
        }
        out
    }

    /// The pass reference as Markdown (`docs/passes.md` is generated from this; a test fails when
    /// the file is out of date).
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "# Passes\n\n<!-- Generated from the pass registry (passes/src/registry.rs); do not edit.\n     \
             Regenerate: SPA_UPDATE_DOCS=1 cargo test -p spa-passes --test docs -->\n\n\
             Run passes with `spa-opt MODEL --pass='NAME{option=value,...},NAME,...'`; options take the \
             defaults below when omitted. `spa-opt --list-passes` prints the same list.\n\n\
             | pass | what it does |\n|---|---|\n",
        );
        for p in &self.passes {
            out.push_str(&format!(
                "| [`{}`](#{}) | {} |\n",
                p.name, p.name, p.summary
            ));
        }
        for p in &self.passes {
            out.push_str(&format!("\n## `{}`\n\n{}.\n", p.name, p.summary));
            if p.options.is_empty() {
                out.push_str("\nNo options.\n");
                continue;
            }
            out.push_str("\n| option | type | default | meaning |\n|---|---|---|---|\n");
            for o in p.options {
                let default = if o.default.is_empty() {
                    "(none)".to_string()
                } else {
                    format!("`{}`", o.default)
                };
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    o.name,
                    o.kind.type_name().replace('|', "\\|"),
                    default,
                    o.help.replace('|', "\\|")
                ));
            }
        }
        out
    }
}
