//! Every `tests/passes/<pass>/*.spa` file is a test: its first line is `// RUN: --pass='PIPELINE'`
//! (optionally followed by `--print-constants` or `--no-verify-each`); the harness parses the
//! rest, runs the pipeline in process, and snapshots what the passes printed followed by the IR.
//! `cargo insta review` accepts changes.

use spa_ir::text::{parse_model, print_model, PrintOptions};
use spa_passes::{register_all_passes, PassManager, RunConfig, RunOutput};

/// The pipeline and flags from a `// RUN:` header.
fn run_line(src: &str) -> Result<(String, bool, bool), String> {
    let first = src.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("// RUN:")
        .ok_or("first line must be `// RUN: --pass='...'`")?;
    let mut pipeline = String::new();
    let mut print_constants = false;
    let mut verify_each = true;
    let mut words = rest.trim();
    while !words.is_empty() {
        if let Some(r) = words.strip_prefix("--pass='") {
            let end = r.find('\'').ok_or("unterminated --pass='")?;
            if !pipeline.is_empty() {
                pipeline.push(',');
            }
            pipeline.push_str(&r[..end]);
            words = r[end + 1..].trim_start();
        } else if let Some(r) = words.strip_prefix("--print-constants") {
            print_constants = true;
            words = r.trim_start();
        } else if let Some(r) = words.strip_prefix("--no-verify-each") {
            verify_each = false;
            words = r.trim_start();
        } else {
            return Err(format!("unknown flag in RUN line: {words}"));
        }
    }
    Ok((pipeline, print_constants, verify_each))
}

/// Run a test file; the result (success or the error) is what gets snapshotted.
fn run_file(src: &str) -> String {
    let (pipeline, print_constants, verify_each) = match run_line(src) {
        Ok(x) => x,
        Err(e) => return format!("bad test file: {e}"),
    };
    let mut model = match parse_model(src) {
        Ok(m) => m,
        Err(e) => return format!("error: {e}"),
    };
    if let Err(e) = spa_ir::verify::verify_model(&model) {
        return format!("error: invalid input: {e}");
    }
    let registry = register_all_passes();
    let pipeline = match registry.parse(&pipeline) {
        Ok(p) => p,
        Err(e) => return format!("error: {e}"),
    };
    let print = PrintOptions {
        print_constants,
        ..PrintOptions::default()
    };
    let config = RunConfig {
        verify_each,
        print_options: print.clone(),
        ..RunConfig::default()
    };
    let mut out = RunOutput::default();
    let result = PassManager::new(pipeline, config).run(&mut model, &mut out);
    let mut text = String::new();
    if !out.out.is_empty() {
        text.push_str(&out.out);
        text.push_str("// -----\n");
    }
    for w in &out.warnings {
        text.push_str(&format!("warning: {w}\n"));
    }
    match result {
        Ok(()) => text.push_str(&print_model(&model, &print)),
        Err(e) => text.push_str(&format!("error: {e}\n")),
    }
    text
}

#[test]
fn pass_snapshots() {
    insta::glob!("../passes", "**/*.spa", |path| {
        let src = std::fs::read_to_string(path).unwrap_or_default();
        insta::assert_snapshot!(run_file(&src));
    });
}

#[test]
fn invalid_spa_files() {
    insta::glob!("../invalid", "*.spa", |path| {
        let src = std::fs::read_to_string(path).unwrap_or_default();
        let result = run_file(&src);
        assert!(
            result.starts_with("error: ") || result.contains("\nerror: "),
            "{} was accepted:\n{result}",
            path.display()
        );
        insta::assert_snapshot!(result);
    });
}
