//! The store's directory: `file:///path` URLs, creation, and the checks that make a bad directory
//! a clear error at open rather than a puzzling one at the first acquire.

use std::io;
use std::path::{Path, PathBuf};

use leader_core::{Error, Result};

/// The directory a `file:///absolute/path` URL names.
pub(crate) fn path_from_url(url: &str) -> Result<PathBuf> {
    let rule = "a leader-fs URL is file:///absolute/path/of/a/local/directory";
    let parsed =
        url::Url::parse(url).map_err(|e| Error::invalid_argument(format!("invalid URL {url:?} ({e}); {rule}")))?;
    if parsed.scheme() != "file" {
        return Err(Error::invalid_argument(format!("URL {url:?} is not a file:// URL; {rule}")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::invalid_argument(format!(
            "URL {url:?} has a query or fragment; leader-fs takes none; {rule}"
        )));
    }
    match parsed.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(host) => {
            return Err(Error::invalid_argument(format!(
                "URL {url:?} names host {host:?}; leader-fs works on this machine only; {rule}"
            )))
        }
    }
    let path = parsed
        .to_file_path()
        .map_err(|()| Error::invalid_argument(format!("URL {url:?} does not name a local path; {rule}")))?;
    if path.parent().is_none() {
        return Err(Error::invalid_argument(format!("URL {url:?} names the root directory; {rule}")));
    }
    Ok(path)
}

/// File-system magic numbers of network file systems, where another host's processes could share
/// the directory but not this host's clock.
const NETWORK_FS: &[(u64, &str)] = &[
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x0102_1997, "9P"),
    (0x0BD0_0BD0, "Lustre"),
    (0x0047_504C, "GPFS"),
];

/// Makes sure `dir` is a writable local directory, creating it if its parent exists.
pub(crate) fn prepare(dir: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(dir)
        .map_err(|e| Error::invalid_argument(format!("directory {:?} cannot be made absolute: {e}", dir.display())))?;
    let shown = dir.display().to_string();
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid_argument(format!(
                "{shown:?} exists but is not a directory; leader-fs needs a directory for its lease files"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(&dir, &shown)?,
        Err(e) => return Err(unavailable(&shown, "cannot be read", e)),
    }
    if let Err(e) = rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK) {
        let e = io::Error::from(e);
        return Err(unavailable(&shown, "is not writable (read-only file system or permissions)", e));
    }
    if let Ok(fs) = rustix::fs::statfs(&dir) {
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between platforms
        let magic = fs.f_type as u64;
        if let Some((_, name)) = NETWORK_FS.iter().find(|(m, _)| *m == magic) {
            return Err(Error::invalid_argument(format!(
                "{shown:?} is on {name}, a network file system; leader-fs judges leases by this host's \
                 clock and is for one machine only: use a local directory, or a server-backed store"
            )));
        }
    }
    check_hard_links(&dir, &shown)?;
    Ok(dir)
}

/// Claims are created with `link(2)`: refuse a file system without hard links at open, with a
/// clear message, rather than at the first acquire.
fn check_hard_links(dir: &Path, shown: &str) -> Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".leader-fs-probe.{}.{seq}", std::process::id()));
    let link = dir.join(format!(".leader-fs-probe.{}.{seq}.link", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| unavailable(shown, "is not writable", e))?;
    let linked = std::fs::hard_link(&probe, &link);
    let _ = std::fs::remove_file(&probe);
    let _ = std::fs::remove_file(&link);
    linked.map_err(|e| {
        Error::invalid_argument(format!(
            "{shown:?} is on a file system without hard links ({e}); leader-fs creates its claims with link(2): \
             use a local POSIX file system (ext4, XFS, Btrfs, ZFS, tmpfs, APFS, UFS)"
        ))
    })
}

fn create(dir: &Path, shown: &str) -> Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    if !parent.is_dir() {
        return Err(Error::invalid_argument(format!(
            "directory {shown:?} does not exist and neither does its parent {:?}; leader-fs creates only the \
             last component",
            parent.display()
        )));
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        // Another process created it first.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::invalid_argument(format!(
            "{shown:?} exists but is not a directory; leader-fs needs a directory for its lease files"
        ))),
        Err(e) => Err(unavailable(shown, "cannot be created", e)),
    }
}

fn unavailable(shown: &str, what: &str, e: io::Error) -> Error {
    Error::unavailable(format!("leader-fs directory {shown:?} {what}: {e}")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    fn kind(url: &str) -> Option<ErrorKind> {
        path_from_url(url).err().map(|e| e.kind())
    }

    #[test]
    fn urls() {
        assert_eq!(path_from_url("file:///var/lib/app/leases").ok(), Some(PathBuf::from("/var/lib/app/leases")));
        assert_eq!(path_from_url("file://localhost/tmp/x").ok(), Some(PathBuf::from("/tmp/x")));
        assert_eq!(path_from_url("file:///tmp/with%20space").ok(), Some(PathBuf::from("/tmp/with space")));
        for bad in
            ["file://otherhost/tmp/x", "file:///tmp/x?mode=1", "file:///", "http://x/y", "not a url", "file:///tmp#x"]
        {
            assert_eq!(kind(bad), Some(ErrorKind::InvalidArgument), "{bad}");
        }
        let msg = path_from_url("file://db1/x").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("db1") && msg.contains("file:///"), "{msg}");
    }
}
