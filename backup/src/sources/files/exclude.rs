//! What a file backup leaves out: `--exclude` patterns (restic's and rsync's habits) and
//! `--one-file-system`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// An `--exclude` pattern that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "exclude pattern {pattern:?} {problem} (syntax: * and ? within a name, [abc], {{a,b}}, ** for any depth; a leading / anchors at the root, a trailing / matches directories only)"
)]
pub struct InvalidExclude {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Paths a walk leaves out, and whether it stays on each root's filesystem.
///
/// A pattern is matched against the absolute path of each entry, component by component:
/// `*`, `?` and `[…]` never match `/`, `**` matches any number of components; `?` and
/// `[…]` match one byte, so a character outside ASCII (`é`, two bytes) needs `*` or itself
/// (restic matches one character); `{a,b}` is either, and `[!x]` is "not x". A pattern
/// that starts with `/` matches from the root (`/var/cache` is that directory only); any
/// other matches at any depth (`*.tmp` and `.cache` match in every directory, `build/out`
/// wherever those two names follow each other), as restic's `--exclude` does. A trailing `/`
/// matches directories only (`cache/`), as in rsync and `.gitignore`. An excluded directory
/// is left out with everything in it; a root inside an excluded directory is left out too.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    /// Patterns for any entry, and those for directories only (empty sets match nothing).
    any: GlobSet,
    dirs: GlobSet,
    patterns: Vec<String>,
    /// Do not enter directories on another filesystem than their root's (restic's and tar's
    /// `--one-file-system`): a mount point is saved as an empty directory.
    pub one_file_system: bool,
    /// Leave out what cache directories hold ([`is_cache_directory`]) but the directory and
    /// its `CACHEDIR.TAG`, as tar's `--exclude-caches` does and the specification asks (a
    /// restored cache stays marked).
    pub caches: bool,
}

impl Exclusions {
    /// Compiles `patterns` (`one_file_system` and `caches` off: set them after), each first
    /// cleaned lexically as restic cleans them (`./a`, `a//b`, `a/./b` and `x/../a` are `a`).
    /// Errors: an empty pattern (an unset variable, not "nothing"), one with a newline, one
    /// starting with `!` (restic's negation, which this does not have: write `\!` for a name
    /// that starts with `!`), or one that is not a glob.
    pub fn new(patterns: &[String]) -> Result<Self, InvalidExclude> {
        let mut any = GlobSetBuilder::new();
        let mut dirs = GlobSetBuilder::new();
        for pattern in patterns {
            let invalid = |problem: &str| InvalidExclude {
                pattern: pattern.clone(),
                problem: problem.to_string(),
            };
            let is_anchored = pattern.starts_with('/');
            let body = clean(pattern, is_anchored);
            if body.is_empty() {
                return Err(invalid("is empty: it would match nothing, or everything"));
            }
            if pattern.contains(['\n', '\r']) {
                return Err(invalid("holds a line break"));
            }
            if pattern.starts_with('!') {
                return Err(invalid(
                    "starts with ! (negation is not supported: name what to keep instead, as paths to back up or a restore's --include; write \\! for a name that starts with !)",
                ));
            }
            let dirs_only = pattern.ends_with('/');
            let anchored = match is_anchored {
                true => format!("/{body}"),
                false => format!("**/{body}"),
            };
            let glob = glob(&anchored).map_err(|e| invalid(&format!("is not a glob: {}", e.kind())))?;
            match dirs_only {
                true => dirs.add(glob),
                false => any.add(glob),
            };
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| InvalidExclude {
                pattern: patterns.join(" "),
                problem: format!("cannot be compiled: {}", e.kind()),
            })
        };
        Ok(Self {
            any: build(any)?,
            dirs: build(dirs)?,
            patterns: patterns.to_vec(),
            one_file_system: false,
            caches: false,
        })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// True when an absolute `path` matches a pattern (`is_dir`: it is a directory).
    pub fn excludes(&self, path: &Path, is_dir: bool) -> bool {
        self.any.is_match(path) || (is_dir && self.dirs.is_match(path))
    }

    /// True when an absolute `path` or a directory above it matches (for roots: the walk
    /// checks each entry it lists, so it never enters an excluded directory).
    pub fn excludes_root(&self, path: &Path, is_dir: bool) -> bool {
        let bytes = path.as_os_str().as_bytes();
        let above = bytes
            .iter()
            .enumerate()
            .filter(|&(i, b)| *b == b'/' && i > 0)
            .any(|(i, _)| self.excludes(Path::new(OsStr::from_bytes(&bytes[..i])), true));
        above || self.excludes(path, is_dir)
    }
}

/// The name of the file that marks a cache directory (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// True when directory `dir` holds a regular file `CACHEDIR.TAG` that starts with the
/// specification's 43-byte signature `Signature: 8a477f597d28d172789f06886806bc55` (a tag
/// without it marks nothing). Read without following a symlink.
pub fn is_cache_directory(dir: &Path) -> bool {
    use std::io::Read;
    const SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
    let tag = dir.join(CACHEDIR_TAG);
    let is_file = std::fs::symlink_metadata(&tag).is_ok_and(|m| m.file_type().is_file());
    let mut head = [0u8; SIGNATURE.len()];
    is_file
        && std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tag)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && head == SIGNATURE
}

/// `pattern` without empty and `.` components, each `..` taking the component before it
/// away (at the root of an anchored pattern it is dropped, as `..` of `/` is `/`), as Go's
/// `filepath.Clean` (restic) makes it; joined with `/`, no leading or trailing one.
fn clean(pattern: &str, anchored: bool) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if anchored => {}
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// The patterns of an `--exclude-file` (restic's format): one per line; blank lines and lines
/// starting with `#` are skipped; spaces around a pattern and a leading byte-order mark are
/// trimmed.
pub fn patterns_in_file(text: &str) -> Vec<String> {
    // A byte-order mark (editors on Windows write one) is not part of the first pattern.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Exclusions {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Exclusions::new(&patterns).unwrap()
    }

    fn file(e: &Exclusions, path: &str) -> bool {
        e.excludes(Path::new(path), false)
    }

    #[test]
    fn unanchored_patterns_match_at_any_depth_and_stars_stay_in_one_name() {
        let e = ex(&["*.tmp", ".cache", "build/out"]);
        assert!(file(&e, "/a.tmp"));
        assert!(file(&e, "/home/u/src/x.tmp"));
        assert!(
            !file(&e, "/home/u/x.tmp/keep"),
            "the walk never lists below an excluded dir"
        );
        assert!(!file(&e, "/home/u/x.tmpl"));
        assert!(file(&e, "/home/u/.cache"));
        assert!(!file(&e, "/home/u/.cache2"));
        assert!(file(&e, "/srv/build/out"));
        assert!(!file(&e, "/srv/build/x/out"));
        let e = ex(&["src/*.o"]);
        assert!(file(&e, "/p/src/a.o"));
        assert!(!file(&e, "/p/src/sub/a.o"), "* does not cross /");
        let e = ex(&["src/**/*.o"]);
        assert!(file(&e, "/p/src/sub/deeper/a.o"));
    }

    #[test]
    fn a_leading_slash_anchors_and_a_trailing_one_means_directories() {
        let e = ex(&["/var/cache"]);
        assert!(file(&e, "/var/cache"));
        assert!(!file(&e, "/srv/var/cache"));
        let e = ex(&["cache/"]);
        assert!(!file(&e, "/srv/cache"), "a file named cache is kept");
        assert!(e.excludes(Path::new("/srv/cache"), true));
    }

    #[test]
    fn roots_inside_an_excluded_directory_are_excluded() {
        let e = ex(&["node_modules"]);
        assert!(e.excludes_root(Path::new("/p/node_modules/pkg/index.js"), false));
        assert!(!e.excludes_root(Path::new("/p/src/index.js"), false));
        let e = ex(&["cache/"]);
        assert!(e.excludes_root(Path::new("/srv/cache/f"), false));
    }

    #[test]
    fn names_that_are_not_utf8_are_matched_as_bytes() {
        let e = ex(&["caf?"]);
        assert!(e.excludes(Path::new(OsStr::from_bytes(b"/d/caf\xe9")), false));
    }

    #[test]
    fn unusable_patterns_are_named() {
        for (pattern, says) in [
            ("", "is empty"),
            ("/", "is empty"),
            ("!keep", "negation is not supported"),
            ("a\nb", "line break"),
            ("[z-a", "is not a glob"),
        ] {
            let err = Exclusions::new(&[pattern.to_string()]).unwrap_err().to_string();
            assert!(
                err.contains(says) && err.contains(&format!("{pattern:?}")),
                "{err}"
            );
        }
        assert!(file(&ex(&["\\!keep"]), "/d/!keep"));
    }

    #[test]
    fn exclude_files_skip_comments_and_blank_lines() {
        assert_eq!(
            patterns_in_file("# caches\n*.tmp\n\n  /var/cache  \r\n#x\n"),
            ["*.tmp", "/var/cache"]
        );
        assert_eq!(patterns_in_file("\u{feff}*.tmp\n"), ["*.tmp"]);
    }

    /// Patterns are cleaned as restic cleans them: `./node_modules` in an exclude file means
    /// `node_modules`.
    #[test]
    fn patterns_are_cleaned_lexically() {
        for (pattern, path) in [
            ("./cache", "/d/cache"),
            ("x/../cache", "/d/cache"),
            ("cache/.", "/d/cache"),
            ("a/./cache", "/d/a/cache"),
            ("a//cache", "/d/a/cache"),
            ("a/b/../cache", "/d/a/cache"),
        ] {
            assert!(file(&ex(&[pattern]), path), "{pattern}");
        }
        let e = ex(&["/tmp//d/../d/./a"]);
        assert!(file(&e, "/tmp/d/a") && !file(&e, "/x/tmp/d/a"));
        assert!(file(&ex(&["/../a"]), "/a"));
        assert!(Exclusions::new(&["./".to_string()]).is_err());
    }
}
