//! spa-opt: the command-line driver. Reads a model (ONNX or `.spa`), runs a pass pipeline, writes
//! the result (ONNX or `.spa`). Thin by design: all logic lives in the library crates.

use anyhow::{anyhow, Context as _, Result};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use spa_backends::onnx::{write_onnx, WriteOptions};
use spa_frontends::onnx::{read_onnx, ReadOptions};
use spa_ir::text::{parse_model, print_model, PrintOptions};
use spa_ir::Model;
use spa_passes::{register_all_passes, PassManager, RunConfig, RunOutput};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// ONNX protobuf (the default for a `.onnx` output).
    Onnx,
    /// spa-opt's text IR (the default for stdout and any other extension).
    Spa,
    /// MLIR text: TOSA and upstream dialects (the default for a `.mlir` output).
    Mlir,
}

/// Structured pruning compiler: reads an ONNX or .spa model, runs a pipeline of passes over its
/// channel-aware IR, and writes ONNX or .spa.
#[derive(Parser, Debug)]
#[command(name = "spa-opt", version, max_term_width = 110)]
#[command(after_help = "")]
struct Cli {
    /// Input model: .onnx, .spa, or '-' for .spa text on stdin.
    input: Option<String>,

    /// Output file; '-' (the default) prints .spa text to stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "-")]
    output: String,

    /// Pass pipeline, e.g. 'shape-infer,dce' or 'prune{ratio=0.5}'. Repeatable; runs in order.
    #[arg(long = "pass", value_name = "PIPELINE")]
    pass: Vec<String>,

    /// Output format (default: from the output extension: .onnx -> onnx, .mlir -> mlir,
    /// otherwise spa).
    #[arg(long, value_enum)]
    emit: Option<Emit>,

    /// Print every constant in full in .spa output (by default large ones are elided to a digest).
    #[arg(long)]
    print_constants: bool,

    /// Do not run the verifier after each pass (it still runs on the input).
    #[arg(long)]
    no_verify_each: bool,

    /// Print the IR to stderr after every pass.
    #[arg(long)]
    print_ir_after_all: bool,

    /// Print the IR to stderr after each run of the named pass (repeatable).
    #[arg(long, value_name = "PASS")]
    print_ir_after: Vec<String>,

    /// Print time spent reading, in each pass, and writing.
    #[arg(long)]
    timing: bool,

    /// Print the statistics each pass reports.
    #[arg(long)]
    pass_statistics: bool,

    /// Print the parsed pipeline with every option explicit, then continue.
    #[arg(long)]
    dump_pass_pipeline: bool,

    /// List the passes with their options and exit.
    #[arg(long)]
    list_passes: bool,

    /// Allow the output to be the input file.
    #[arg(long)]
    in_place: bool,

    /// Store tensors of at least this many bytes as external data (required above 2 GB).
    #[arg(long, value_name = "BYTES")]
    external_data_threshold: Option<u64>,

    /// Name of the external data file, next to the output (default: <output name>.data).
    #[arg(long, value_name = "NAME")]
    external_data_file: Option<String>,

    /// Write every tensor inside the ONNX file, even those read from external data.
    #[arg(long)]
    internalize: bool,

    /// Write the pruning report (params and FLOPs before/after, channels kept per group, pinned
    /// groups and why) as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,

    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

/// A failure and its exit code: 2 for usage errors (bad flags, unknown pass or option), 1 otherwise.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

fn failure(error: anyhow::Error) -> Failure {
    Failure { code: 1, error }
}

fn main() -> ExitCode {
    let registry = register_all_passes();
    let help = format!(
        "Passes (use as --pass='name{{option=value,...}}'):\n{}",
        registry.describe()
    );
    let matches = Cli::command().after_help(help).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // One line: the error and its causes.
            let mut msg = format!("{}", f.error);
            for cause in f.error.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("spa-opt: error: {msg}");
            ExitCode::from(f.code)
        }
    }
}

struct Progress {
    enabled: bool,
}

impl Progress {
    fn start(&self, what: &str) {
        if self.enabled {
            eprint!("spa-opt: {what}...");
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self, time: Duration) {
        if self.enabled {
            eprintln!(" done in {:.2}s", time.as_secs_f64());
        }
    }
}

fn file_size(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{:.1} MB", m.len() as f64 / 1e6),
        Err(_) => "?".into(),
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let registry = register_all_passes();
    if cli.list_passes {
        print!("{}", registry.describe());
        return Ok(());
    }
    let text = cli.pass.join(",");
    let pipeline = registry.parse(&text).map_err(|e| usage(e.into()))?;
    if cli.dump_pass_pipeline {
        println!("{pipeline}");
    }
    let input = cli
        .input
        .as_deref()
        .ok_or_else(|| usage(anyhow!("no input model given (see --help)")))?;
    let emit = match cli.emit {
        Some(e) => e,
        None if cli.output.ends_with(".onnx") => Emit::Onnx,
        None if cli.output.ends_with(".mlir") => Emit::Mlir,
        None => Emit::Spa,
    };
    if emit == Emit::Onnx && cli.output == "-" {
        return Err(usage(anyhow!(
            "refusing to write binary ONNX to stdout; give -o FILE.onnx or --emit=spa"
        )));
    }
    let progress = Progress {
        enabled: !cli.quiet && std::io::stderr().is_terminal(),
    };

    let t_read = Instant::now();
    let mut model = read_input(input, &progress)?;
    let read_time = t_read.elapsed();

    let t_verify = Instant::now();
    spa_ir::verify::verify_model(&model)
        .with_context(|| format!("invalid input '{input}'"))
        .map_err(failure)?;
    let verify_time = t_verify.elapsed();

    let config = RunConfig {
        verify_each: !cli.no_verify_each,
        print_ir_after_all: cli.print_ir_after_all,
        print_ir_after: cli.print_ir_after.clone(),
        print_options: PrintOptions {
            print_constants: cli.print_constants,
            ..PrintOptions::default()
        },
    };
    for name in &cli.print_ir_after {
        if registry.get(name).is_none() {
            return Err(usage(anyhow!("--print-ir-after: unknown pass '{name}'")));
        }
    }
    let manager = PassManager::new(pipeline, config.clone());
    let mut out = RunOutput::default();
    let result = manager.run(&mut model, &mut out);
    // Whatever the passes printed comes out even when a later pass fails.
    if !out.ir_dumps.is_empty() {
        eprint!("{}", out.ir_dumps);
    }
    for w in &out.warnings {
        eprintln!("spa-opt: warning: {w}");
    }
    if !cli.quiet {
        for n in &out.notes {
            eprintln!("{n}");
        }
    }
    if !out.out.is_empty() {
        print!("{}", out.out);
        let _ = std::io::stdout().flush();
    }
    result.map_err(|e| failure(e.into()))?;

    if let Some(path) = &cli.report {
        let json = match out.reports.len() {
            0 => {
                return Err(usage(anyhow!(
                    "--report: the pipeline has no pass that reports (add prune)"
                )))
            }
            1 => out.reports[0].clone(),
            _ => format!("[\n{}]\n", out.reports.join(",\n")),
        };
        spa_backends::text::write_text_atomic(path, json.as_bytes(), None)
            .map_err(|e| failure(e.into()))?;
    }

    let t_write = Instant::now();
    write_output(cli, emit, input, &model, &config.print_options, &progress)?;
    let write_time = t_write.elapsed();

    if cli.pass_statistics {
        eprint!("{}", out.stats.render());
    }
    if cli.timing {
        let mut rows: Vec<(String, Duration)> = vec![
            ("read".into(), read_time),
            ("verify input".into(), verify_time),
        ];
        for t in &out.timings {
            rows.push((t.pass.clone(), t.time));
            if !cli.no_verify_each {
                rows.push((format!("  (verify after {})", t.pass), t.verify));
            }
        }
        rows.push(("write".into(), write_time));
        let total: Duration = rows.iter().map(|(_, d)| *d).sum();
        eprintln!("===-------------------------------------------------------------===");
        eprintln!("                      ... Execution time report ...");
        eprintln!("===-------------------------------------------------------------===");
        eprintln!(
            "  Total Execution Time: {:.4} seconds\n",
            total.as_secs_f64()
        );
        eprintln!("  ----Wall Time----  ----Name----");
        for (name, d) in rows {
            let pct = if total.is_zero() {
                0.0
            } else {
                100.0 * d.as_secs_f64() / total.as_secs_f64()
            };
            eprintln!("  {:>8.4} ({:>5.1}%)  {}", d.as_secs_f64(), pct, name);
        }
    }
    Ok(())
}

fn read_input(input: &str, progress: &Progress) -> Result<Model, Failure> {
    if input == "-" {
        let mut src = String::new();
        std::io::stdin()
            .read_to_string(&mut src)
            .context("cannot read stdin")
            .map_err(failure)?;
        return parse_model(&src).map_err(|e| failure(anyhow!("<stdin>:{e}")));
    }
    let path = Path::new(input);
    if !path.exists() {
        return Err(failure(anyhow!("cannot read '{input}': no such file")));
    }
    if input.ends_with(".spa") {
        let src = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read '{input}'"))
            .map_err(failure)?;
        return parse_model(&src).map_err(|e| failure(anyhow!("{input}:{e}")));
    }
    progress.start(&format!("reading {input} ({})", file_size(path)));
    let t = Instant::now();
    let model = read_onnx(path, &ReadOptions::default()).map_err(|e| failure(e.into()))?;
    progress.done(t.elapsed());
    Ok(model)
}

fn write_output(
    cli: &Cli,
    emit: Emit,
    input: &str,
    model: &Model,
    print: &PrintOptions,
    progress: &Progress,
) -> Result<(), Failure> {
    match emit {
        Emit::Spa => {
            let text = print_model(model, print);
            if cli.output == "-" {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(text.as_bytes())
                    .and_then(|_| stdout.flush())
                    .context("cannot write to stdout")
                    .map_err(failure)?;
                return Ok(());
            }
            spa_backends::text::write_text_atomic(
                Path::new(&cli.output),
                text.as_bytes(),
                Some(Path::new(input)).filter(|_| !cli.in_place),
            )
            .map_err(|e| failure(e.into()))
        }
        Emit::Mlir => {
            let opts = spa_backends::mlir::MlirOptions::default();
            if cli.output == "-" {
                let text =
                    spa_backends::mlir::emit_mlir(model, &opts).map_err(|e| failure(e.into()))?;
                #[cfg(feature = "mlir")]
                spa_backends::mlir::verify::verify_module(&text).map_err(|e| failure(e.into()))?;
                let mut stdout = std::io::stdout().lock();
                return stdout
                    .write_all(text.as_bytes())
                    .and_then(|_| stdout.flush())
                    .context("cannot write to stdout")
                    .map_err(failure);
            }
            progress.start(&format!("writing {}", cli.output));
            let t = Instant::now();
            spa_backends::mlir::write_mlir(
                model,
                Path::new(&cli.output),
                Some(Path::new(input)).filter(|_| !cli.in_place),
                &opts,
            )
            .map_err(|e| failure(e.into()))?;
            progress.done(t.elapsed());
            Ok(())
        }
        Emit::Onnx => {
            let out = PathBuf::from(&cli.output);
            let opts = WriteOptions {
                external_threshold: cli.external_data_threshold,
                external_file: cli.external_data_file.clone(),
                internalize: cli.internalize,
                allow_overwrite_input: cli.in_place,
                input_path: (input != "-").then(|| PathBuf::from(input)),
                ..WriteOptions::default()
            };
            progress.start(&format!("writing {}", cli.output));
            let t = Instant::now();
            let stats = write_onnx(model, &out, &opts).map_err(|e| failure(e.into()))?;
            progress.done(t.elapsed());
            if !cli.quiet {
                for n in &stats.notes {
                    eprintln!("spa-opt: note: {n}");
                }
            }
            Ok(())
        }
    }
}
