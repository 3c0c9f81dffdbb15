//! Files whose calls are offloaded to the hypercore (see [`crate::sys`]).
//!
//! Regular files ignore non-blocking mode: a read that misses the page cache keeps
//! the hypercore waiting for the disk. For large or cold I/O, run `std::fs` inside
//! [`crate::blocking`] instead.
//!
//! ```
//! use std::io::{Read, Seek, SeekFrom, Write};
//! let path = std::env::temp_dir().join(format!("spindle-fs-doc-{}", std::process::id()));
//! spindle::run(|| {
//!     let mut f = spindle::fs::File::create(&path).unwrap();
//!     f.write_all(b"offloaded").unwrap();
//!     f.seek(SeekFrom::Start(0)).unwrap();
//!     let mut s = String::new();
//!     spindle::fs::File::open(&path).unwrap().read_to_string(&mut s).unwrap();
//!     assert_eq!(s, "offloaded");
//!     assert_eq!(f.metadata().unwrap().len(), 9);
//! });
//! std::fs::remove_file(&path).unwrap();
//! ```

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::sys;

/// How to open a file, as `std::fs::OpenOptions`.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: Option<u32>,
}

impl OpenOptions {
    /// Nothing set.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }
    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut OpenOptions {
        self.read = on;
        self
    }
    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut OpenOptions {
        self.write = on;
        self
    }
    /// Every write goes to the end.
    pub fn append(&mut self, on: bool) -> &mut OpenOptions {
        self.append = on;
        self
    }
    /// Truncate to length 0 (needs `write`).
    pub fn truncate(&mut self, on: bool) -> &mut OpenOptions {
        self.truncate = on;
        self
    }
    /// Create the file if it does not exist (needs `write` or `append`).
    pub fn create(&mut self, on: bool) -> &mut OpenOptions {
        self.create = on;
        self
    }
    /// Create the file, failing if it exists (needs `write` or `append`).
    pub fn create_new(&mut self, on: bool) -> &mut OpenOptions {
        self.create_new = on;
        self
    }
    /// Permission bits of a created file (default `0o666`, less the umask).
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.mode = Some(mode);
        self
    }

    /// Opens `path`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a contradictory set of options (with what to change),
    /// otherwise the kernel's error.
    pub fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let writes = self.write || self.append;
        let bad = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned()));
        if !self.read && !writes {
            return bad(
                "spindle::fs::OpenOptions: neither read nor write is set: set read(true) and/or write(true)",
            );
        }
        if (self.truncate || self.create || self.create_new) && !writes {
            return bad(
                "spindle::fs::OpenOptions: create/truncate need write(true) or append(true)",
            );
        }
        if self.truncate && self.append {
            return bad(
                "spindle::fs::OpenOptions: truncate and append together make no sense: pick one",
            );
        }
        let mut flags = match (self.read, writes) {
            (true, true) => libc::O_RDWR,
            (false, true) => libc::O_WRONLY,
            _ => libc::O_RDONLY,
        };
        if self.append {
            flags |= libc::O_APPEND;
        }
        if self.truncate {
            flags |= libc::O_TRUNC;
        }
        if self.create_new {
            flags |= libc::O_CREAT | libc::O_EXCL;
        } else if self.create {
            flags |= libc::O_CREAT;
        }
        let fd = sys::open(path.as_ref(), flags, self.mode.unwrap_or(0o666))?;
        Ok(File { fd })
    }
}

/// An open file.
#[derive(Debug)]
pub struct File {
    fd: OwnedFd,
}

impl File {
    /// Opens `path` for reading.
    pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens `path` for writing, creating it or truncating it.
    pub fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// The options to open a file with.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Size, type, permissions and times (`fstat`).
    pub fn metadata(&self) -> io::Result<Metadata> {
        sys::fstat(&self.fd).map(|st| Metadata { st })
    }

    /// Flushes data and metadata to the device (`fsync`).
    pub fn sync_all(&self) -> io::Result<()> {
        sys::fsync(&self.fd)
    }

    /// Truncates or extends to `len` bytes.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        sys::ftruncate(&self.fd, len)
    }

    /// Reads at `offset` without moving the position.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        sys::pread(&self.fd, buf, offset)
    }

    /// Writes at `offset` without moving the position.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        sys::pwrite(&self.fd, buf, offset)
    }
}

impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(&self.fd, buf)
    }
}

impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write(&self.fd, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        sys::lseek(&self.fd, pos)
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&*self).seek(pos)
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl FromRawFd for File {
    /// Takes the open file `fd`.
    ///
    /// # Safety
    ///
    /// `fd` is an open descriptor owned by nothing else.
    unsafe fn from_raw_fd(fd: RawFd) -> File {
        File {
            // SAFETY: the caller vouches for `fd` (this function's contract).
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }
}

impl IntoRawFd for File {
    fn into_raw_fd(self) -> RawFd {
        self.fd.into_raw_fd()
    }
}

impl From<File> for OwnedFd {
    fn from(f: File) -> OwnedFd {
        f.fd
    }
}

impl From<OwnedFd> for File {
    fn from(fd: OwnedFd) -> File {
        File { fd }
    }
}

impl From<std::fs::File> for File {
    /// Takes a `std` file; its calls are offloaded from now on.
    fn from(f: std::fs::File) -> File {
        File { fd: f.into() }
    }
}

/// What `fstat` says about a file.
#[derive(Clone, Copy)]
pub struct Metadata {
    st: libc::stat,
}

impl Metadata {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.st.st_size as u64
    }
    /// Whether the size is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.st.st_mode & libc::S_IFMT == libc::S_IFREG
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
    /// Permission bits and type (`st_mode`).
    pub fn mode(&self) -> u32 {
        self.st.st_mode
    }
    /// Last modification time.
    pub fn modified(&self) -> SystemTime {
        let (s, ns) = (self.st.st_mtime, self.st.st_mtime_nsec);
        if s >= 0 {
            SystemTime::UNIX_EPOCH + Duration::new(s as u64, ns as u32)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
        }
    }
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("len", &self.len())
            .field("mode", &format_args!("{:o}", self.mode()))
            .finish()
    }
}
