//! Reads of the small cgroup and /proc files a resource read is made of,
//! each opened relative to a kept descriptor of the directory above the
//! one it is in (a unit's slice, or /proc itself) and read into a reused
//! buffer.
//!
//! Why: at 2,000 units a sweep opens some 12,000 of these files, and a
//! profile of it showed the kernel's walk of each full path
//! (/sys/fs/cgroup/memory/system.slice/system-x.slice/x.service/...) and
//! `read_to_string`'s statx and allocation as half the reader's CPU. An
//! `openat` from the slice walks two components instead of seven. A
//! [`Place`] finds the kept descriptor once for all of a unit's files on
//! one hierarchy, and names them in a buffer of its own: building a
//! `PathBuf` per file, and splitting it again to find the descriptor, was
//! a tenth of the daemon's CPU at 2,000 units.
//!
//! A kept directory that was removed (a slice gone, then made again) makes
//! every lookup under it fail with ENOENT: such a miss is asked once more
//! through a fresh descriptor, so a stale one never hides a file.

use std::cell::RefCell;
use std::ffi::CStr;
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

/// A directory whose files are read: a kept descriptor of the directory
/// above it, and its name there. The names of the files opened are made
/// in a buffer of its own, NUL-terminated, so an open allocates nothing.
pub(super) struct Place {
    /// The kept directory's path (to open it afresh when it is stale).
    base: PathBuf,
    dir: Arc<OwnedFd>,
    /// `name/` (empty where the kept directory is the place itself), and
    /// after it the name of the file being opened (`.` for the directory
    /// itself).
    buf: Vec<u8>,
    prefix: usize,
}

impl Place {
    /// `path`, reached through a kept descriptor of its parent (a unit's
    /// cgroup, through its slice's).
    pub(super) fn under_parent(path: &Path) -> io::Result<Place> {
        use std::os::unix::ffi::OsStrExt as _;
        match (path.parent(), path.file_name()) {
            (Some(base), Some(name)) => Place::new(base, name.as_bytes()),
            _ => Place::new(path, b""),
        }
    }

    /// `path` itself kept (/proc, whose PID/fd and PID/limits are read).
    pub(super) fn kept(path: &Path) -> io::Result<Place> {
        Place::new(path, b"")
    }

    fn new(base: &Path, name: &[u8]) -> io::Result<Place> {
        let mut buf = Vec::with_capacity(name.len() + 32);
        buf.extend_from_slice(name);
        if !name.is_empty() {
            buf.push(b'/');
        }
        Ok(Place {
            dir: dir(base, false)?,
            base: base.to_path_buf(),
            prefix: buf.len(),
            buf,
        })
    }

    /// This directory's child `name` (a sub-cgroup), through the same
    /// kept descriptor.
    pub(super) fn child(&self, name: &[u8]) -> Place {
        let mut buf = self.buf[..self.prefix].to_vec();
        buf.extend_from_slice(name);
        buf.push(b'/');
        Place {
            base: self.base.clone(),
            dir: self.dir.clone(),
            prefix: buf.len(),
            buf,
        }
    }

    /// `f(kept descriptor, the name of file here)`, once more through a
    /// fresh descriptor when it fails with ENOENT. An empty `file` is this
    /// directory itself.
    fn with<T>(
        &mut self,
        file: &[u8],
        mut f: impl FnMut(&OwnedFd, &CStr) -> io::Result<T>,
    ) -> io::Result<T> {
        self.buf.truncate(self.prefix);
        self.buf
            .extend_from_slice(if file.is_empty() { b"." } else { file });
        self.buf.push(0);
        let name = CStr::from_bytes_with_nul(&self.buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        match f(&self.dir, name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let fresh = dir(&self.base, true)?;
                let r = f(&fresh, name);
                self.dir = fresh;
                r
            }
            r => r,
        }
    }

    /// `parse(the text of file)`: the file read whole. Text that is not
    /// UTF-8 is an InvalidData error, as `read_to_string` gives.
    pub(super) fn read_with<T>(
        &mut self,
        file: impl AsRef<[u8]>,
        parse: impl FnOnce(&str) -> T,
    ) -> io::Result<T> {
        BUF.with_borrow_mut(|buf| {
            let n = self.with(file.as_ref(), |dir, name| read_all(dir, name, buf))?;
            let text = std::str::from_utf8(&buf[..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Ok(parse(text))
        })
    }

    /// The size `stat` gives of `file` (a /proc/PID/fd's size is its count).
    pub(super) fn size(&mut self, file: &[u8]) -> io::Result<u64> {
        self.with(file, |dir, name| {
            Ok(nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::empty())?.st_size as u64)
        })
    }

    /// The names of the directories in this one (a cgroup's children). A
    /// directory's link count is 2 plus its subdirectories on cgroupfs
    /// (and on tmpfs and ext4), so a count of 2 answers with one stat
    /// instead of an open, two reads of its entries and a close: almost
    /// every unit's cgroup has no children. A filesystem that counts
    /// otherwise is listed.
    pub(super) fn subdirs(&mut self) -> io::Result<Vec<Vec<u8>>> {
        self.with(b"", |dir, name| {
            let st = nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::empty())?;
            if st.st_nlink == 2 {
                return Ok(Vec::new());
            }
            let mut d = nix::dir::Dir::openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut names = Vec::new();
            for e in d.iter() {
                let e = e?;
                let n = e.file_name().to_bytes();
                if e.file_type() == Some(nix::dir::Type::Directory) && n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
            Ok(names)
        })
    }
}

/// Reads all of `name` (relative to `dir`) into `buf` with one read from
/// its start, as systemd reads such files (`read_virtual_file`): the
/// kernel gives a sysfs or procfs file whole to one read with room
/// enough, and a second read to look for the end would be one more
/// syscall per file per unit per sweep. A read that fills the buffer is
/// made again, from the start, with twice the room. Its length.
fn read_all(dir: &OwnedFd, name: &CStr, buf: &mut Vec<u8>) -> io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::from(openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?);
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
        std::fs::write(unit.join("child/cgroup.procs"), "7\n").unwrap();
        let parse = |t: &str| t.trim().parse::<u64>().ok();
        let mut p = Place::under_parent(&unit).unwrap();
        assert_eq!(p.read_with("memory.current", parse).unwrap(), Some(4096));
        assert_eq!(p.subdirs().unwrap(), vec![b"child".to_vec()]);
        assert_eq!(p.child(b"child").read_with("cgroup.procs", parse).unwrap(), Some(7));
        std::fs::create_dir(unit.join("other")).unwrap();
        let mut both = p.subdirs().unwrap();
        both.sort();
        assert_eq!(both, [b"child".to_vec(), b"other".to_vec()]);
        assert_eq!(p.size(b"memory.current").unwrap(), 5);
        // The slice removed and made again: the kept descriptor is stale,
        // in this place and in the cache a new place starts from.
        std::fs::remove_dir_all(&slice).unwrap();
        assert_eq!(
            p.read_with("memory.current", parse).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(unit.join("memory.current"), "8192\n").unwrap();
        let mut again = Place::under_parent(&unit).unwrap();
        assert_eq!(again.read_with("memory.current", parse).unwrap(), Some(8192));
        assert_eq!(p.read_with("memory.current", parse).unwrap(), Some(8192));
        assert!(p.subdirs().unwrap().is_empty());
    }

    #[test]
    fn reads_a_file_larger_than_the_buffer_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cg/y.service");
        std::fs::create_dir_all(&dir).unwrap();
        let pids: String = (1..=5000).map(|p| format!("{p}\n")).collect();
        std::fs::write(dir.join("cgroup.procs"), &pids).unwrap();
        let mut p = Place::under_parent(&dir).unwrap();
        let lines = p.read_with("cgroup.procs", |t| t.lines().count()).unwrap();
        assert_eq!(lines, 5000);
        std::fs::write(dir.join("bad"), [0xff, 0xfe]).unwrap();
        assert_eq!(
            p.read_with("bad", |_| ()).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // A place kept itself (as /proc is): names below it as given.
        std::fs::write(root.path().join("cg/top"), "1\n").unwrap();
        let mut top = Place::kept(&root.path().join("cg")).unwrap();
        assert_eq!(top.read_with("top", |t| t.trim().to_string()).unwrap(), "1");
        assert_eq!(top.size(b"y.service/cgroup.procs").unwrap(), pids.len() as u64);
    }
}
