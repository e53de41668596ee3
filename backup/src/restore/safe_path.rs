//! Keeping restores inside their target directory, whatever a snapshot's tree says.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// Turns a tree path into a relative path, refusing anything that could leave the target:
/// absolute paths, `..`, `.`, empty components, NUL bytes.
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("empty path".to_string());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?}: absolute path refused"));
    }
    if path.contains('\0') {
        return Err(format!("{path:?}: NUL byte refused"));
    }
    let mut out = PathBuf::new();
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("{path:?}: component {part:?} refused"));
        }
        out.push(part);
    }
    // Belt and braces: the std parser must agree that only normal components remain.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?}: refused"));
    }
    Ok(out)
}

/// Creates directories under a target, refusing to pass through any symlink, so a symlink
/// already in the target (or restored earlier) can never redirect a write outside it.
pub struct DirMaker {
    target: PathBuf,
    known: HashSet<PathBuf>,
}

impl DirMaker {
    /// For restores into `target` (which must exist).
    pub fn new(target: &Path) -> Self {
        Self {
            target: target.to_path_buf(),
            known: HashSet::new(),
        }
    }

    /// Ensures every directory of `rel` (a safe relative path) exists as a real directory;
    /// with `include_last`, `rel` itself too. Returns the absolute path.
    pub fn ensure(&mut self, rel: &Path, include_last: bool) -> Result<PathBuf, String> {
        let mut cur = self.target.clone();
        let parts: Vec<_> = rel.components().collect();
        let dirs = if include_last {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        for part in &parts[..dirs] {
            cur.push(part);
            if self.known.contains(&cur) {
                continue;
            }
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "{}: is a symlink; refusing to restore through it",
                        cur.display()
                    ));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(format!("{}: exists and is not a directory", cur.display())),
                Err(_) => std::fs::create_dir(&cur).map_err(|e| format!("{}: {e}", cur.display()))?,
            }
            self.known.insert(cur.clone());
        }
        for part in &parts[dirs..] {
            cur.push(part);
        }
        Ok(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "",
            "a\0b",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(safe_relative("a/b c/d").unwrap(), PathBuf::from("a/b c/d"));
    }

    #[test]
    fn never_walks_through_symlinks() {
        let target = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), target.path().join("link")).unwrap();
        let mut maker = DirMaker::new(target.path());
        let err = maker.ensure(Path::new("link/evil"), false).unwrap_err();
        assert!(err.contains("symlink"), "{err}");
        assert!(maker.ensure(Path::new("ok/dir/file"), false).is_ok());
        assert!(target.path().join("ok/dir").is_dir());
    }
}
