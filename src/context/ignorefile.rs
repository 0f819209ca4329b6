//! Reading a `.dockerignore` file into an ordered pattern list (moby/patternmatcher
//! `ignorefile.ReadAll` rules) and choosing which ignore file applies to a build.

use std::path::{Path, PathBuf};

use super::pattern::clean_path;

/// The patterns of an ignore file with their 1-based line numbers.
///
/// Rules: a UTF-8 BOM at the start is dropped; CRLF line ends are accepted; a line starting
/// with `#` in column 0 is a comment; lines are whitespace-trimmed and blank ones dropped; a
/// leading `!` is kept and the whitespace after it dropped; the rest is path-cleaned and one
/// leading `/` removed (a bare `/` stays); a lone `!` is returned as `!`.
pub fn read_ignore_file_lines(content: &str) -> Vec<(usize, String)> {
    let content = content.strip_prefix('\u{FEFF}').unwrap_or(content);
    let mut patterns = Vec::new();
    for (idx, raw_line) in content.split('\n').enumerate() {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if line.starts_with('#') {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let (exception, body) = match trimmed.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        let mut pattern = String::new();
        if exception {
            pattern.push('!');
        }
        if !body.is_empty() {
            let cleaned = clean_path(body);
            let relative = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest,
                _ => cleaned.as_str(),
            };
            pattern.push_str(relative);
        }
        patterns.push((idx + 1, pattern));
    }
    patterns
}

/// The ordered pattern list an ignore file yields.
pub fn read_ignore_file(content: &str) -> Vec<String> {
    read_ignore_file_lines(content).into_iter().map(|(_, pattern)| pattern).collect()
}

/// The ignore file for a build: `<dockerfile-name>.dockerignore` beside the Dockerfile takes
/// precedence over `<context>/.dockerignore`. Without `-f` the Dockerfile is
/// `<context>/Dockerfile`, so `<context>/Dockerfile.dockerignore` is tried first.
pub fn find_ignore_file(context_dir: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    let dockerfile = dockerfile.map(Path::to_path_buf).unwrap_or_else(|| context_dir.join("Dockerfile"));
    if let Some(name) = dockerfile.file_name() {
        let mut ignore_name = name.to_os_string();
        ignore_name.push(".dockerignore");
        let beside = dockerfile.with_file_name(ignore_name);
        if beside.is_file() {
            return Some(beside);
        }
    }
    let in_context = context_dir.join(".dockerignore");
    in_context.is_file().then_some(in_context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_upstream() {
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
        assert_eq!(
            read_ignore_file(content),
            ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]
        );
    }

    #[test]
    fn bom_crlf_comments_and_cleaning() {
        assert_eq!(read_ignore_file("\u{FEFF}#c\r\nfoo\r\n"), ["foo"]);
        assert_eq!(read_ignore_file(" # not a comment\n"), ["# not a comment"]);
        assert_eq!(read_ignore_file("!./a/../b/\n/\na//b"), ["!b", "/", "a/b"]);
        assert_eq!(read_ignore_file_lines("\n\nx\n"), vec![(3usize, "x".to_string())]);
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(find_ignore_file(root, None), None);
        std::fs::write(root.join(".dockerignore"), "a").unwrap();
        assert_eq!(find_ignore_file(root, None), Some(root.join(".dockerignore")));
        std::fs::write(root.join("Dockerfile2.dockerignore"), "b").unwrap();
        let dockerfile = root.join("Dockerfile2");
        assert_eq!(find_ignore_file(root, Some(&dockerfile)), Some(root.join("Dockerfile2.dockerignore")));
    }
}
