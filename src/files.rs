//! Files bagboy reads and writes in a checkout anyone may have written: never through a
//! symlink, never a device or FIFO, never more than a bound, and temporary files created
//! exclusively under unpredictable names.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("is {0}, not a regular file (bagboy reads no symlinks, devices or FIFOs)")]
    NotRegular(&'static str),
    #[error("is larger than {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

fn kind_of(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "a symlink"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading only if it is a regular file reached without following a symlink.
/// `O_NONBLOCK` keeps a planted FIFO from blocking the open itself.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                ReadError::NotRegular("a symlink")
            } else {
                ReadError::Io(e)
            }
        })?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotRegular(kind_of(ft)));
    }
    Ok(f)
}

/// Read a regular file (see [`open_regular`]) of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let f = open_regular(path)?;
    let size = f.metadata()?.len();
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // The file may grow between stat and read: never take more than the limit.
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Refuse a directory bagboy keeps state in when it is a symlink (a checkout could point
/// `.bagboy` anywhere on the runner).
pub fn check_dir_not_symlink(dir: &Path) -> Result<(), ReadError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(ReadError::NotRegular("a symlink")),
        _ => Ok(()),
    }
}

/// Create `path`, failing if anything (a file, a symlink, dangling or not) is already there.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// 16 hex characters no other process can predict.
pub fn unpredictable() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

/// Replace `path` with `bytes` atomically: an exclusively created temp file with an
/// unpredictable name, fsynced, renamed over `path` (which replaces a symlink rather than
/// writing through it), then the directory fsynced. A crash leaves the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut attempt = 0;
    let (tmp, mut f) = loop {
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            unpredictable()
        ));
        match create_new(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_fifos_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            read_regular(&link, 10),
            Err(ReadError::NotRegular("a symlink"))
        ));
        let dev = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &dev).unwrap();
        assert!(read_regular(&dev, 10).is_err());
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("a device"))
        ));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(ReadError::NotRegular("a FIFO"))
        ));
        assert_eq!(read_regular(&real, 10).unwrap(), b"x");
        assert!(matches!(
            read_regular(&real, 0),
            Err(ReadError::TooLarge { .. })
        ));
    }

    #[test]
    fn atomic_writes_never_write_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let target = dir.path().join("history.yml");
        // A link at the destination is replaced, not written through.
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert!(!fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
