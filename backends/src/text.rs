//! Atomic writes of text output (`.spa`): a temp file in the destination folder, then a rename, so
//! a failure never leaves a partial or clobbered file.

use std::io::Write;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TextWriteError {
    #[error("refusing to overwrite the input '{0}' (use --in-place)")]
    WouldOverwriteInput(String),
    #[error("cannot write '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Write `bytes` to `path` atomically. With `input`, refuse when `path` is that same file.
pub fn write_text_atomic(
    path: &Path,
    bytes: &[u8],
    input: Option<&Path>,
) -> Result<(), TextWriteError> {
    if let Some(input) = input {
        if same_file(path, input) {
            return Err(TextWriteError::WouldOverwriteInput(
                path.display().to_string(),
            ));
        }
    }
    let io = |source| TextWriteError::Io {
        path: path.display().to_string(),
        source,
    };
    if is_special_file(path) {
        // A device or pipe (/dev/null, a FIFO) is written in place: renaming a temp file over it
        // would replace the device node itself.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io)?;
        return f.write_all(bytes).map_err(io);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".spa-opt-tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Whether `path` exists and is neither a regular file nor a folder (a device, FIFO or socket).
pub fn is_special_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Whether two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
