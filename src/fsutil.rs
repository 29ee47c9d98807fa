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

/// A corrupt state file found at load and moved aside.
#[derive(Debug, Clone, PartialEq)]
pub struct Corrupt {
    pub moved_to: PathBuf,
    pub reason: String,
}

/// A state file that could not be loaded or moved aside.
#[derive(Debug)]
pub enum LoadError {
    Read(std::io::Error),
    MoveAside { to: PathBuf, source: std::io::Error },
}

/// Loads a state file with `parse`. Missing: `None`, a fresh start.
/// Corrupt: moved aside to `<path>.corrupt-<unix time>` and reported, so a
/// bad file never stops the daemon and is kept for a post-mortem.
/// Unreadable (permissions): an error, since writing over it could lose
/// good state.
pub fn load_or_move_aside<T>(
    path: &Path,
    now: std::time::SystemTime,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<(Option<T>, Option<Corrupt>), LoadError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(LoadError::Read(e)),
    };
    let reason = match parse(&bytes) {
        Ok(v) => return Ok((Some(v), None)),
        Err(reason) => reason,
    };
    let secs = now
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut to = path.as_os_str().to_owned();
    to.push(format!(".corrupt-{secs}"));
    let to = PathBuf::from(to);
    fs::rename(path, &to).map_err(|source| LoadError::MoveAside {
        to: to.clone(),
        source,
    })?;
    Ok((
        None,
        Some(Corrupt {
            moved_to: to,
            reason,
        }),
    ))
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
