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
    let mut tmp = temp_file(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// A temp file in `dir`, created with the usual permissions (tempfile's default is 0600).
pub(crate) fn temp_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".spa-opt-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    // tempfile's errors end with the random temp path; drop it so messages are stable and name
    // the destination instead.
    builder.tempfile_in(dir).map_err(|e| {
        let text = e.to_string();
        match text.find(" at path \"") {
            Some(i) => std::io::Error::new(e.kind(), &text[..i]),
            None => e,
        }
    })
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_get_the_permissions_of_a_plain_create() {
        // tempfile creates 0600 files; the output must look like any file the user creates
        // (0666 less the umask), like the ONNX writer's.
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, b"x").unwrap();
        let out = dir.path().join("out.mlir");
        write_text_atomic(&out, b"module {}\n", None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&plain));
        assert_eq!(std::fs::read(&out).unwrap(), b"module {}\n");
    }
}
