//! Crash-safe file replacement for the state and status files.
//!
//! A reader (unitwatch-http, the CLI, the daemon after a power cut) must see
//! either the old file or the new one, never a torn write, so every write is
//! temp file + fsync + rename + fsync of the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file that could not be written, with the action that failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot {action}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Atomically replaces `path` with `data`, with file mode `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    let err = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| WriteError {
            path: p,
            action,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // The pid keeps a concurrent CLI and daemon from sharing a temp file.
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("create temporary file", &tmp))?;
        f.write_all(data)
            .map_err(err("write temporary file", &tmp))?;
        f.sync_all().map_err(err("fsync temporary file", &tmp))?;
        fs::rename(&tmp, path).map_err(err("rename temporary file over", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and parents) if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), WriteError> {
    fs::create_dir_all(dir).map_err(|source| WriteError {
        path: dir.to_path_buf(),
        action: "create directory",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s.json")]);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let e = write_atomic(Path::new("/nonexistent-dir/x.json"), b"x", 0o644).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent-dir/.x.json.tmp-"),
            "{e}"
        );
        assert!(
            e.to_string().contains("cannot create temporary file"),
            "{e}"
        );
    }
}
