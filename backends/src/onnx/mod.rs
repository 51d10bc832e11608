//! IR -> ONNX. The conversion is the exact inverse of the ONNX frontend, so a model that no pass
//! touched comes back with the same fields in the same order and every tensor in its original
//! storage form.
//!
//! Writing streams the protobuf into a temp file next to the destination (no model-sized buffer;
//! tensor bytes go from the input's memory map straight to the file), writes external data the
//! same way, then renames the data file and the model into place. A failure leaves the
//! destination untouched and removes the temp files. The input is never overwritten unless asked.

mod convert;
mod sink;

use bytes::BufMut as _;
use convert::{ExternalPlan, Writer};
use prost::Message;
use sink::FileSink;
use spa_ir::Model;
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// protobuf cannot encode or parse a message of 2 GiB or more; keep a margin for safety.
pub const MAX_PROTO_SIZE: u64 = (1 << 31) - (16 << 20);

/// Tensors at least this large go to external data when a model must be split automatically
/// (the default of onnx's `convert_model_to_external_data`).
const AUTO_THRESHOLD: u64 = 1024;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error(
        "refusing to overwrite the input '{input}' with the output '{output}' (use --in-place)"
    )]
    WouldOverwriteInput { output: String, input: String },
    #[error("cannot write '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad output path '{path}': {reason}")]
    BadPath { path: String, reason: String },
    #[error("graph '{graph}': {reason}")]
    InvalidGraph { graph: String, reason: String },
    #[error("{0}")]
    BadTensor(String),
    #[error("'{path}' would be {size} bytes, over the 2 GiB protobuf limit; {hint}")]
    TooLarge {
        path: String,
        size: u64,
        hint: &'static str,
    },
    #[error("failed to encode the model: {0}")]
    Encode(#[from] prost::EncodeError),
}

/// Options for writing an ONNX model.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Initializers of at least this many bytes are written to external data.
    pub external_threshold: Option<u64>,
    /// The external data file, relative to the output's folder (default `<output file name>.data`).
    pub external_file: Option<String>,
    /// Write tensors read from external data inside the model instead of into the data file.
    pub internalize: bool,
    /// Allow the output (or its data file) to replace the input or the input's external data.
    pub allow_overwrite_input: bool,
    /// The model file the IR was read from, protected from being overwritten.
    pub input_path: Option<PathBuf>,
    /// Above this encoded size the model is split into external data automatically (a knob for
    /// tests; the default is the protobuf limit minus a margin).
    pub max_proto_size: u64,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions {
            external_threshold: None,
            external_file: None,
            internalize: false,
            allow_overwrite_input: false,
            input_path: None,
            max_proto_size: MAX_PROTO_SIZE,
        }
    }
}

/// What [`write_onnx`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Size of the model file.
    pub bytes_written: u64,
    /// Size of the external data file (0 when none was written).
    pub external_bytes_written: u64,
    /// Number of tensors stored in the external data file.
    pub tensors_external: usize,
    /// The external data file, when one was written.
    pub external_file: Option<PathBuf>,
    /// Decisions the user should know about (automatic externalization).
    pub notes: Vec<String>,
}

/// Serialize a model to memory. External tensors keep their entries as read (the data is not
/// written); used by tests and small models.
pub fn encode_onnx(model: &Model) -> Result<Vec<u8>, BackendError> {
    let mut writer = Writer {
        plan: None,
        sources: Vec::new(),
    };
    let proto = writer.model(model)?;
    let size = proto.encoded_len() as u64;
    if size > MAX_PROTO_SIZE {
        return Err(BackendError::TooLarge {
            path: "<memory>".into(),
            size,
            hint: "write it to a file with external data",
        });
    }
    Ok(proto.encode_to_vec())
}

/// Write a model to `path` atomically, with external data as `opts` asks.
pub fn write_onnx(
    model: &Model,
    path: &Path,
    opts: &WriteOptions,
) -> Result<WriteStats, BackendError> {
    let shown = path.display().to_string();
    let bad_path = |reason: &str| BackendError::BadPath {
        path: shown.clone(),
        reason: reason.to_string(),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| bad_path("it does not name a file"))?
        .to_string_lossy()
        .into_owned();
    if path.is_dir() {
        return Err(bad_path("it is a folder"));
    }
    let dir = parent_dir(path);
    let location = opts
        .external_file
        .clone()
        .unwrap_or_else(|| format!("{file_name}.data"));
    let rel = Path::new(&location);
    if location.is_empty()
        || rel.is_absolute()
        || !rel.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(bad_path(&format!(
            "the external data file '{location}' must be a relative path inside the output's folder"
        )));
    }
    let data_path = dir.join(rel);
    if same_file(path, &data_path) {
        return Err(bad_path(&format!(
            "the external data file '{location}' is the model file itself"
        )));
    }

    let mut plan = ExternalPlan::new(location.clone(), opts.external_threshold, opts.internalize);
    let mut writer = Writer {
        plan: Some(&mut plan),
        sources: Vec::new(),
    };
    let mut proto = writer.model(model)?;
    let sources = std::mem::take(&mut writer.sources);
    let mut notes = Vec::new();
    if proto.encoded_len() as u64 > opts.max_proto_size && opts.external_threshold.is_none() {
        plan = ExternalPlan::new(location.clone(), Some(AUTO_THRESHOLD), opts.internalize);
        proto = Writer {
            plan: Some(&mut plan),
            sources: Vec::new(),
        }
        .model(model)?;
        notes.push(format!(
            "the model is over 2 GiB: initializers of at least {AUTO_THRESHOLD} bytes were \
             written to the external data file '{location}'"
        ));
    }
    let size = proto.encoded_len() as u64;
    if size > opts.max_proto_size {
        return Err(BackendError::TooLarge {
            path: shown,
            size,
            hint: "lower --external-data-threshold",
        });
    }
    let writes_data = !plan.chunks.is_empty();

    if !opts.allow_overwrite_input {
        if let Some(input) = &opts.input_path {
            let input_dir = parent_dir(input);
            let protected =
                std::iter::once(input.clone()).chain(sources.iter().map(|loc| input_dir.join(loc)));
            for p in protected {
                let clash = same_file(path, &p) || (writes_data && same_file(&data_path, &p));
                if clash {
                    return Err(BackendError::WouldOverwriteInput {
                        output: shown,
                        input: p.display().to_string(),
                    });
                }
            }
        }
    }

    let special = crate::text::is_special_file(path);
    if special && writes_data {
        return Err(bad_path(
            "it is a device or pipe, and the model needs an external data file beside it",
        ));
    }
    let mut stats = WriteStats {
        notes,
        ..WriteStats::default()
    };
    let data_tmp = if writes_data {
        let data_shown = data_path.display().to_string();
        let io = |source| BackendError::Io {
            path: data_shown.clone(),
            source,
        };
        let tmp = crate::text::temp_file(&parent_dir(&data_path)).map_err(io)?;
        let mut sink = FileSink::new(tmp.as_file());
        for (pad, bytes) in &plan.chunks {
            sink.put_zeros(*pad);
            sink.put_slice(bytes);
        }
        let (n, _) = sink.finish().map_err(io)?;
        stats.external_bytes_written = n;
        stats.tensors_external = plan.chunks.len();
        stats.external_file = Some(data_path.clone());
        Some(tmp)
    } else {
        None
    };
    // The chunks hold references into the input's memory map; release them early.
    drop(plan);

    let io = |source| BackendError::Io {
        path: shown.clone(),
        source,
    };
    if special {
        // A device or pipe (/dev/null, a FIFO) is written in place: renaming a temp file over it
        // would replace the device node itself.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut sink = FileSink::new(&file);
        proto.encode(&mut sink)?;
        let (n, _) = sink.finish().map_err(io)?;
        stats.bytes_written = n;
        return Ok(stats);
    }
    let tmp = crate::text::temp_file(&dir).map_err(io)?;
    let mut sink = FileSink::new(tmp.as_file());
    proto.encode(&mut sink)?;
    let (n, _) = sink.finish().map_err(io)?;
    drop(proto);
    stats.bytes_written = n;

    if let Some(data_tmp) = data_tmp {
        data_tmp.persist(&data_path).map_err(|e| BackendError::Io {
            path: data_path.display().to_string(),
            source: e.error,
        })?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(stats)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The path a (possibly not yet existing) file would have once symlinks are resolved.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    Some(
        parent_dir(path)
            .canonicalize()
            .ok()?
            .join(path.file_name()?),
    )
}

/// Whether two paths name the same file (canonical paths, or the same inode for hard links).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            if x.dev() == y.dev() && x.ino() == y.ino() {
                return true;
            }
        }
    }
    match (resolved(a), resolved(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}
