//! Reads of the small cgroup and /proc files a resource read is made of,
//! each opened relative to a kept descriptor of its grandparent directory
//! (a unit's slice, or /proc) and read into a reused buffer.
//!
//! Why: at 2,000 units a sweep opens some 12,000 of these files, and a
//! profile of it showed the kernel's walk of each full path
//! (/sys/fs/cgroup/memory/system.slice/system-x.slice/x.service/...) and
//! `read_to_string`'s statx and allocation as half the reader's CPU. An
//! `openat` from the slice walks two components instead of seven.
//!
//! A kept directory that was removed (a slice gone, then made again) makes
//! every lookup under it fail with ENOENT: such a miss is asked once more
//! through a fresh descriptor, so a stale one never hides a file.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

/// At most this many directories are kept; past it they are all closed
/// and opened again as needed (a host has a few slices, not hundreds).
const MAX_DIRS: usize = 64;

/// The kept directories. The lock is held only to find or open one, not
/// for a read under it: a read that hangs holds up no other.
static DIRS: Mutex<Vec<(PathBuf, Arc<OwnedFd>)>> = Mutex::new(Vec::new());

thread_local! {
    /// The buffer files are read into, one per thread of the blocking pool.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `path` split into the directory kept for it and the rest.
fn split(path: &Path) -> Option<(&Path, &Path)> {
    let base = path.parent()?.parent()?;
    let rest = path.strip_prefix(base).ok()?;
    (!rest.as_os_str().is_empty()).then_some((base, rest))
}

/// The kept descriptor of `dir`, opened now if it is not kept, or if
/// `fresh` (the kept one may be stale).
fn dir(dir: &Path, fresh: bool) -> io::Result<Arc<OwnedFd>> {
    let mut dirs = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    let at = dirs.iter().position(|(d, _)| d == dir);
    if let (Some(i), false) = (at, fresh) {
        return Ok(dirs[i].1.clone());
    }
    let fd = Arc::new(nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    match at {
        Some(i) => dirs[i].1 = fd.clone(),
        None => {
            if dirs.len() >= MAX_DIRS {
                dirs.clear();
            }
            dirs.push((dir.to_path_buf(), fd.clone()));
        }
    }
    Ok(fd)
}

/// `f(kept descriptor of path's grandparent, the rest of path)`, once
/// more through a fresh descriptor when it fails with ENOENT; a path too
/// short to split goes through the root directory.
fn with<T>(path: &Path, mut f: impl FnMut(&OwnedFd, &Path) -> io::Result<T>) -> io::Result<T> {
    let (base, rest) = split(path).unwrap_or((Path::new("/"), path));
    match f(&*dir(base, false)?, rest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => f(&*dir(base, true)?, rest),
        r => r,
    }
}

/// Reads all of `rest` (relative to `dir`) into `buf` with one read from
/// its start, as systemd reads such files (`read_virtual_file`): the
/// kernel gives a sysfs or procfs file whole to one read with room
/// enough, and a second read to look for the end would be one more
/// syscall per file per unit per sweep. A read that fills the buffer is
/// made again, from the start, with twice the room. Its length.
fn read_all(dir: &OwnedFd, rest: &Path, buf: &mut Vec<u8>) -> io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::from(openat(
        dir,
        rest,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    loop {
        match file.read_at(buf, 0) {
            Ok(n) if n < buf.len() => return Ok(n),
            Ok(_) => buf.resize(buf.len() * 2, 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `parse(the text of path)`: the file read whole, through a kept
/// descriptor of its grandparent. Text that is not UTF-8 is an
/// InvalidData error, as `read_to_string` gives.
pub(super) fn read_with<T>(path: &Path, parse: impl FnOnce(&str) -> T) -> io::Result<T> {
    BUF.with_borrow_mut(|buf| {
        let n = with(path, |dir, rest| read_all(dir, rest, buf))?;
        let text = std::str::from_utf8(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(parse(text))
    })
}

/// The size `stat` gives of `path` (a /proc/PID/fd's size is its count).
pub(super) fn size(path: &Path) -> io::Result<u64> {
    with(path, |dir, rest| {
        Ok(nix::sys::stat::fstatat(dir, rest, nix::fcntl::AtFlags::empty())?.st_size as u64)
    })
}

/// The names of the directories in `path` (a cgroup's children). A
/// directory's link count is 2 plus its subdirectories on cgroupfs (and
/// on tmpfs and ext4), so a count of 2 answers with one stat instead of
/// an open, two reads of its entries and a close: almost every unit's
/// cgroup has no children. A filesystem that counts otherwise is listed.
pub(super) fn subdirs(path: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt as _;
    with(path, |dir, rest| {
        let st = nix::sys::stat::fstatat(dir, rest, nix::fcntl::AtFlags::empty())?;
        if st.st_nlink == 2 {
            return Ok(Vec::new());
        }
        let mut d = nix::dir::Dir::openat(
            dir,
            rest,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for e in d.iter() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if e.file_type() == Some(nix::dir::Type::Directory) && name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(names)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_a_kept_directory_and_survives_its_replacement() {
        let root = tempfile::tempdir().unwrap();
        let slice = root.path().join("a.slice");
        let unit = slice.join("x.service");
        std::fs::create_dir_all(unit.join("child")).unwrap();
        std::fs::write(unit.join("memory.current"), "4096\n").unwrap();
        let file = unit.join("memory.current");
        let parse = |t: &str| t.trim().parse::<u64>().ok();
        assert_eq!(read_with(&file, parse).unwrap(), Some(4096));
        assert_eq!(subdirs(&unit).unwrap(), vec![std::ffi::OsString::from("child")]);
        std::fs::create_dir(unit.join("other")).unwrap();
        let mut both = subdirs(&unit).unwrap();
        both.sort();
        assert_eq!(both, ["child", "other"]);
        assert_eq!(size(&file).unwrap(), 5);
        // The slice removed and made again: the kept descriptor is stale.
        std::fs::remove_dir_all(&slice).unwrap();
        assert_eq!(
            read_with(&file, parse).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(&file, "8192\n").unwrap();
        assert_eq!(read_with(&file, parse).unwrap(), Some(8192));
        assert!(subdirs(&unit).unwrap().is_empty());
    }

    #[test]
    fn reads_a_file_larger_than_the_buffer_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cg/y.service");
        std::fs::create_dir_all(&dir).unwrap();
        let pids: String = (1..=5000).map(|p| format!("{p}\n")).collect();
        std::fs::write(dir.join("cgroup.procs"), &pids).unwrap();
        let lines = read_with(&dir.join("cgroup.procs"), |t| t.lines().count()).unwrap();
        assert_eq!(lines, 5000);
        std::fs::write(dir.join("bad"), [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_with(&dir.join("bad"), |_| ()).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
