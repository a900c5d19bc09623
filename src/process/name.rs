//! Bus names: their rule, the per-user directory they live in, and holding one - a lock file
//! that only one live hub can hold (a crashed hub's lock goes with its process) and the socket
//! that attaching processes connect to.

use crate::status::{Error, Status};
use crate::sys::ipc::{self, DirError, FileLock};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// Longest name, in bytes.
pub const MAX_NAME: usize = 64;

/// Refuses a name that breaks the rule (`JSONBUS_ERR_TOPIC`, as for a topic).
pub fn check(name: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::new(
            Status::Topic,
            format!(
                "the bus name \"{}\" {why}; {}",
                name.escape_debug(),
                crate::topic::BUS_NAME_RULE
            ),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_NAME {
        return bad(&format!("is {} bytes long", name.len()));
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!("holds '{}'", c.escape_debug()));
    }
    Ok(())
}

/// The socket and lock paths of `name` in the user's name directory.
pub fn paths(name: &str) -> Result<(PathBuf, PathBuf), Error> {
    check(name)?;
    let dir = ipc::name_directory().map_err(|e| match e {
        DirError::Permission(m) => Error::new(Status::Permission, m),
        // Another user's directory (say, an XDG_RUNTIME_DIR inherited across a user change).
        DirError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Error::new(
            Status::Permission,
            format!("the directory for bus names is not this user's: {e}"),
        ),
        DirError::Io(e) => Error::new(
            Status::Internal,
            format!("cannot use the directory for bus names: {e}"),
        ),
    })?;
    Ok((
        dir.join(format!("{name}.sock")),
        dir.join(format!("{name}.lock")),
    ))
}

/// A name held by this process's hub; given back (its files removed) when dropped.
pub struct Name {
    pub name: String,
    pub socket: PathBuf,
    lock_path: PathBuf,
    lock: Mutex<Option<FileLock>>,
}

impl Name {
    /// Takes `name` for a hub: its lock, then a socket path cleared of a dead hub's leftover.
    pub fn take(name: &str) -> Result<Name, Error> {
        let (socket, lock_path) = paths(name)?;
        let lock = hold(&lock_path)?.ok_or_else(|| {
            Error::new(
                Status::NameInUse,
                format!(
                    "another live bus already serves \"{name}\" ({} is locked)",
                    lock_path.display()
                ),
            )
        })?;
        // Only a hub holding the lock binds the socket: one there now is a dead hub's.
        let _ = std::fs::remove_file(&socket);
        Ok(Name {
            name: name.to_string(),
            socket,
            lock_path,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Removes the socket and the lock file, then lets the lock go.
    pub fn release(&self) {
        let mut lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lock.take() {
            let _ = std::fs::remove_file(&self.socket);
            let _ = std::fs::remove_file(&self.lock_path);
            drop(l);
        }
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        self.release();
    }
}

/// The lock of `path` if no live process holds it (one that holds it for 10 ms is taken to be
/// a live hub). A lock taken on a file that another process has meanwhile removed (while
/// giving the name back) is worthless: then it tries again.
fn hold(path: &std::path::Path) -> Result<Option<FileLock>, Error> {
    let io = |e: std::io::Error| {
        Error::new(
            Status::Internal,
            format!("cannot lock {}: {e}", path.display()),
        )
    };
    let mut held_elsewhere = 0;
    for _ in 0..100 {
        let Some(lock) = FileLock::try_lock(path).map_err(io)? else {
            // A peer cleaning up after a dead hub holds it for a moment: look again briefly.
            held_elsewhere += 1;
            if held_elsewhere > 10 {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        };
        let held = lock.metadata().map_err(io)?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(Some(lock)),
            _ => continue,
        }
    }
    Ok(None)
}

/// After the hub serving `name` died: removes what it left behind, unless a live hub holds the
/// name again.
pub fn clean_up(name: &str) {
    let Ok((socket, lock_path)) = paths(name) else {
        return;
    };
    if let Ok(Some(lock)) = hold(&lock_path) {
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(&lock_path);
        drop(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_rule() {
        for ok in ["a", "prices", "A.b_c-9", &"x".repeat(64)] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(65), "a\0b"] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.status, Status::Topic, "{bad}");
            assert!(e.message.contains("1-64 bytes"), "{}", e.message);
        }
    }
}
