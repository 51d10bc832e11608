//! ONNX external data: tensors whose bytes live in a file next to the model. Each file is
//! memory-mapped once and tensors are zero-copy slices of it. Locations are confined to the
//! model's folder: absolute paths, `..` and symlinks that lead outside are refused.

use super::error::FrontendError;
use bytes::Bytes;
use spa_ir::DType;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Memory maps of the external data files of one model, by canonical path.
pub(crate) struct ExternalFiles {
    file: String,
    base_dir: Option<PathBuf>,
    canonical_base: Option<PathBuf>,
    maps: HashMap<PathBuf, Bytes>,
    prefault: bool,
}

/// What a tensor's `external_data` entries say.
struct Location<'a> {
    location: &'a str,
    offset: u64,
    length: Option<u64>,
}

impl ExternalFiles {
    pub(crate) fn new(file: &str, base_dir: Option<&Path>, prefault: bool) -> ExternalFiles {
        ExternalFiles {
            file: file.to_string(),
            base_dir: base_dir.map(Path::to_path_buf),
            canonical_base: None,
            maps: HashMap::new(),
            prefault,
        }
    }

    fn err(&self, tensor: &str, reason: String) -> FrontendError {
        FrontendError::ExternalData {
            file: self.file.clone(),
            tensor: tensor.to_string(),
            reason,
        }
    }

    /// The bytes of one tensor. `dtype` and `num_elements` give the size when `length` is absent.
    pub(crate) fn load(
        &mut self,
        tensor: &str,
        entries: &[(String, String)],
        dtype: DType,
        num_elements: Option<u64>,
    ) -> Result<Bytes, FrontendError> {
        let loc = self.parse(tensor, entries)?;
        let length = match loc.length {
            Some(n) => n,
            None => num_elements.and_then(|n| dtype.raw_len(n)).ok_or_else(|| {
                self.err(
                    tensor,
                    format!("has no 'length' and its size cannot be computed for {dtype}"),
                )
            })?,
        };
        let data = self.map(tensor, loc.location)?;
        let end = loc.offset.checked_add(length);
        match end {
            Some(end) if end <= data.len() as u64 => {
                // Both bounds fit in the mapped length, which is a usize.
                Ok(data.slice(loc.offset as usize..end as usize))
            }
            _ => Err(self.err(
                tensor,
                format!(
                    "(offset {}, length {}) runs past the end of '{}' ({} bytes)",
                    loc.offset,
                    length,
                    loc.location,
                    data.len()
                ),
            )),
        }
    }

    fn parse<'e>(
        &self,
        tensor: &str,
        entries: &'e [(String, String)],
    ) -> Result<Location<'e>, FrontendError> {
        let mut location = None;
        let mut offset = 0;
        let mut length = None;
        for (key, value) in entries {
            let number = || {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| self.err(tensor, format!("has a bad '{key}' value '{value}'")))
            };
            match key.as_str() {
                "location" => location = Some(value.as_str()),
                "offset" => offset = number()?,
                "length" => length = Some(number()?),
                _ => {}
            }
        }
        let location = location
            .filter(|l| !l.is_empty())
            .ok_or_else(|| self.err(tensor, "has no 'location'".to_string()))?;
        Ok(Location {
            location,
            offset,
            length,
        })
    }

    /// Map (once) the file at `location`, relative to the model's folder.
    fn map(&mut self, tensor: &str, location: &str) -> Result<Bytes, FrontendError> {
        let rel = Path::new(location);
        let outside = |this: &Self| {
            this.err(
                tensor,
                format!("location '{location}' is outside the model's folder"),
            )
        };
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(outside(self));
        }
        let Some(base) = self.base_dir.clone() else {
            return Err(self.err(
                tensor,
                format!("file '{location}' cannot be found: the model's folder is not known"),
            ));
        };
        let canonical_base = match &self.canonical_base {
            Some(b) => b.clone(),
            None => {
                let b = base.canonicalize().map_err(|e| {
                    self.err(
                        tensor,
                        format!("folder '{}' cannot be opened: {e}", base.display()),
                    )
                })?;
                self.canonical_base = Some(b.clone());
                b
            }
        };
        let path = match base.join(rel).canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.err(tensor, format!("file '{location}' does not exist")));
            }
            Err(e) => {
                return Err(self.err(tensor, format!("file '{location}' cannot be opened: {e}")))
            }
        };
        // A symlink inside the folder may still point outside it.
        if !path.starts_with(&canonical_base) {
            return Err(outside(self));
        }
        if let Some(bytes) = self.maps.get(&path) {
            return Ok(bytes.clone());
        }
        let bytes = map_file(&path, self.prefault)
            .map_err(|e| self.err(tensor, format!("file '{location}' cannot be read: {e}")))?;
        self.maps.insert(path, bytes.clone());
        Ok(bytes)
    }
}

/// Memory-map a whole file as `Bytes` (empty files are not mappable on every platform).
/// `prefault` populates the page tables up front: one pass in the kernel instead of a page fault
/// per 4 KiB later, when the tensors are read or written.
pub(crate) fn map_file(path: &Path, prefault: bool) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::other("it is a folder"));
    }
    let len = meta.len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    let mut options = memmap2::MmapOptions::new();
    if prefault {
        options.populate();
    }
    // SAFETY: the map is read-only. Like every tool that maps model files, this assumes nobody
    // truncates the file while it is in use; the backend never writes in place (temp + rename).
    let map = unsafe { options.map(&file)? };
    Ok(Bytes::from_owner(map))
}
