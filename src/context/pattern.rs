//! `.dockerignore` pattern compilation and matching with moby/patternmatcher semantics:
//! Go `filepath.Clean` of patterns, Go `filepath.Match` syntax validation, the pattern -> regexp
//! translation (with its exact/prefix/suffix fast paths, which are part of the observable
//! behaviour), `!` exceptions, last-match-wins, and "a pattern matching a parent dir matches".
//! Also owns the single-component Go `filepath.Match` used by COPY source wildcards.

use regex::Regex;

use super::ContextError;

/// Go `path.Clean` on a `/`-separated path (lexical only).
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), Some(last) if *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go `filepath.Dir` on a `/`-separated path: everything before the last `/`, cleaned.
fn parent_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(idx) => clean_path(&path[..=idx]),
        None => ".".to_string(),
    }
}

/// Why a glob pattern is malformed (Go's `filepath.ErrBadPattern`).
const BAD_PATTERN: &str = "syntax error in pattern";

/// Decode one UTF-8 scalar from bytes the way Go does: invalid input yields U+FFFD of width 1.
fn decode_rune(bytes: &[u8]) -> (u32, usize) {
    let Some(&first) = bytes.first() else {
        return (0xFFFD, 0);
    };
    if first < 0x80 {
        return (u32::from(first), 1);
    }
    let width = match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (0xFFFD, 1),
    };
    match bytes.get(..width).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(text) => match text.chars().next() {
            Some(ch) => (u32::from(ch), width),
            None => (0xFFFD, 1),
        },
        None => (0xFFFD, 1),
    }
}

/// Split off the next `*`-prefixed chunk of a glob (Go `scanChunk`, Unix escapes).
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut rest = pattern;
    let mut star = false;
    while let Some((b'*', tail)) = rest.split_first() {
        rest = tail;
        star = true;
    }
    let mut in_class = false;
    let mut idx = 0;
    while idx < rest.len() {
        match rest[idx] {
            b'\\' if idx + 1 < rest.len() => idx += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        idx += 1;
    }
    (star, &rest[..idx], &rest[idx..])
}

/// One (possibly escaped) character of a character class (Go `getEsc`).
fn class_char(chunk: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    let mut rest = chunk;
    match rest.first() {
        None | Some(b'-') | Some(b']') => return Err(BAD_PATTERN),
        Some(b'\\') => {
            rest = &rest[1..];
            if rest.is_empty() {
                return Err(BAD_PATTERN);
            }
        }
        Some(_) => {}
    }
    let (rune, width) = decode_rune(rest);
    if rune == 0xFFFD && width == 1 {
        return Err(BAD_PATTERN);
    }
    let rest = &rest[width..];
    if rest.is_empty() {
        return Err(BAD_PATTERN);
    }
    Ok((rune, rest))
}

/// Match one star-free chunk at the start of `text` (Go `matchChunk`): `Ok(Some(rest))` on a
/// match; keeps validating the chunk after a mismatch so syntax errors are always reported.
fn match_chunk<'t>(chunk: &[u8], text: &'t [u8]) -> Result<Option<&'t [u8]>, &'static str> {
    let mut chunk = chunk;
    let mut text = text;
    let mut failed = false;
    while let Some(&head) = chunk.first() {
        if !failed && text.is_empty() {
            failed = true;
        }
        match head {
            b'[' => {
                let mut rune = 0;
                if !failed {
                    let (r, width) = decode_rune(text);
                    rune = r;
                    text = &text[width..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut in_class = false;
                let mut ranges = 0;
                loop {
                    if ranges > 0 && chunk.first() == Some(&b']') {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (upper, rest) = class_char(&chunk[1..])?;
                        hi = upper;
                        chunk = rest;
                    }
                    if lo <= rune && rune <= hi {
                        in_class = true;
                    }
                    ranges += 1;
                }
                if in_class == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if text.first() == Some(&b'/') {
                        failed = true;
                    }
                    let (_, width) = decode_rune(text);
                    text = &text[width..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if head == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BAD_PATTERN);
                    }
                }
                if !failed {
                    if chunk.first() != text.first() {
                        failed = true;
                    }
                    text = &text[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(text) })
}

/// Go `filepath.Match` on Unix: does the whole `name` match the shell `pattern`?
/// `Err` is Go's `ErrBadPattern`.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, &'static str> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        if let Some(tail) = match_chunk(chunk, name)? {
            if tail.is_empty() || !pattern.is_empty() {
                name = tail;
                continue;
            }
        }
        if star {
            let mut idx = 0;
            while idx < name.len() && name[idx] != b'/' {
                if let Some(tail) = match_chunk(chunk, &name[idx + 1..])? {
                    if !pattern.is_empty() || tail.is_empty() {
                        name = tail;
                        continue 'chunks;
                    }
                }
                idx += 1;
            }
        }
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Does the string contain Go `filepath.Match` metacharacters?
pub fn has_glob_meta(text: &str) -> bool {
    text.contains(['*', '?', '[', '\\'])
}

/// How a compiled pattern is matched (patternmatcher's `matchType`).
#[derive(Debug, Clone)]
enum Matcher {
    /// The whole path equals the pattern.
    Exact,
    /// Pattern is `<literal>**`: the path starts with the literal.
    Prefix(String),
    /// Pattern is `**<literal>`: the path ends with the literal (or equals it without a leading `/`).
    Suffix(String),
    Regex(Regex),
    /// The translated regexp does not compile: every match attempt fails with a bad-pattern error.
    Invalid(RegexError),
}

/// Why a pattern's regexp cannot be used (the `reason` of [`ContextError::PatternMatch`]).
#[derive(Debug, Clone, thiserror::Error)]
enum RegexError {
    #[error("trailing backslash at end of expression")]
    TrailingBackslash,
    #[error("invalid or unsupported escape sequence: \\{0}")]
    UnsupportedEscape(char),
    #[error("missing closing ]")]
    MissingBracket,
    #[error("invalid character class range: [:{0}:]")]
    UnknownClass(String),
    #[error("invalid character class range")]
    SetInRange,
    #[error("invalid character class range: {0}-{1}")]
    ReversedRange(char, char),
    #[error("invalid regexp: {0}")]
    Compile(#[from] regex::Error),
}

/// One cleaned `.dockerignore` pattern.
#[derive(Debug, Clone)]
pub struct IgnorePattern {
    /// The cleaned pattern, without its leading `!`.
    pub text: String,
    /// A `!` exception: re-includes what it matches.
    pub exception: bool,
    /// 1-based line in the ignore file it came from.
    pub line: Option<usize>,
    /// Where the pattern came from, for errors: `<file>:<line>` or `pattern #<n>`.
    origin: String,
    matcher: Matcher,
}

const REGEX_SPECIALS_TO_ESCAPE: &str = ".+()|{}$";

/// Translate a cleaned pattern like patternmatcher does: returns the Go-syntax regexp source
/// and the detected match type.
fn translate(pattern: &str) -> (Matcher, String) {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut regex_source = String::from("^");
    let mut kind = Kind::Exact;
    let mut idx = 0;
    let mut iteration = 0;
    while let Some(&ch) = chars.get(idx) {
        idx += 1;
        if ch == '*' {
            if chars.get(idx) == Some(&'*') {
                idx += 1;
                if chars.get(idx) == Some(&'/') {
                    idx += 1;
                }
                if idx >= chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        regex_source.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    regex_source.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if iteration == 0 {
                    kind = Kind::Suffix;
                }
            } else {
                regex_source.push_str("[^/]*");
                kind = Kind::Regex;
            }
        } else if ch == '?' {
            regex_source.push_str("[^/]");
            kind = Kind::Regex;
        } else if REGEX_SPECIALS_TO_ESCAPE.contains(ch) {
            regex_source.push('\\');
            regex_source.push(ch);
        } else if ch == '\\' {
            if let Some(&next) = chars.get(idx) {
                idx += 1;
                regex_source.push('\\');
                regex_source.push(next);
                kind = Kind::Regex;
            } else {
                regex_source.push('\\');
            }
        } else if ch == '[' || ch == ']' {
            regex_source.push(ch);
            kind = Kind::Regex;
        } else {
            regex_source.push(ch);
        }
        iteration += 1;
    }
    let matcher = match kind {
        Kind::Exact => Matcher::Exact,
        Kind::Prefix => {
            let literal: String = chars[..chars.len().saturating_sub(2)].iter().collect();
            Matcher::Prefix(literal)
        }
        Kind::Suffix => Matcher::Suffix(chars.iter().skip(2).collect()),
        Kind::Regex => {
            regex_source.push('$');
            match go_regex_to_rust(&regex_source).and_then(|source| Ok(Regex::new(&source)?)) {
                Ok(regex) => Matcher::Regex(regex),
                Err(reason) => Matcher::Invalid(reason),
            }
        }
    };
    (matcher, regex_source)
}

fn push_literal(out: &mut String, ch: char) {
    if ch.is_ascii_alphanumeric() || ch == '/' || ch == '_' {
        out.push(ch);
    } else {
        out.push_str(&format!("\\x{{{:X}}}", u32::from(ch)));
    }
}

/// Perl-style escapes Go's regexp knows (ASCII classes), as Rust class bodies.
fn perl_class_body(letter: char) -> Option<(&'static str, bool)> {
    match letter {
        'd' => Some(("0-9", false)),
        'D' => Some(("0-9", true)),
        'w' => Some(("0-9A-Za-z_", false)),
        'W' => Some(("0-9A-Za-z_", true)),
        's' => Some(("\\t\\n\\x0C\\r ", false)),
        'S' => Some(("\\t\\n\\x0C\\r ", true)),
        _ => None,
    }
}

fn control_escape(letter: char) -> Option<char> {
    match letter {
        'a' => Some('\u{7}'),
        'f' => Some('\u{C}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{B}'),
        _ => None,
    }
}

const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space", "upper", "word",
    "xdigit",
];

/// Re-express the Go-syntax regexp produced by [`translate`] for the `regex` crate, keeping Go's
/// parse: inside a class `[` is literal and there are no set operators. Escapes Go would accept
/// but that have no use in file names (`\x`, `\p`, `\Q`, octal) are reported as unsupported.
fn go_regex_to_rust(go: &str) -> Result<String, RegexError> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() * 2);
    let mut idx = 0;
    while let Some(&ch) = chars.get(idx) {
        idx += 1;
        match ch {
            '\\' => {
                let Some(&next) = chars.get(idx) else {
                    return Err(RegexError::TrailingBackslash);
                };
                idx += 1;
                if next.is_ascii() && !next.is_ascii_alphanumeric() {
                    push_literal(&mut out, next);
                } else if let Some(control) = control_escape(next) {
                    push_literal(&mut out, control);
                } else if let Some((body, negated)) = perl_class_body(next) {
                    out.push_str(if negated { "[^" } else { "[" });
                    out.push_str(body);
                    out.push(']');
                } else if matches!(next, 'b' | 'B' | 'A' | 'z') {
                    out.push('\\');
                    out.push(next);
                } else {
                    return Err(RegexError::UnsupportedEscape(next));
                }
            }
            '[' => {
                idx = translate_class(&chars, idx, &mut out)?;
            }
            '^' | '$' | '(' | ')' | '*' | '?' | '+' | '|' | '.' => out.push(ch),
            _ => push_literal(&mut out, ch),
        }
    }
    Ok(out)
}

/// Translate one Go character class starting just after its `[`; returns the index after `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, RegexError> {
    let mut idx = start;
    out.push('[');
    if chars.get(idx) == Some(&'^') {
        out.push('^');
        idx += 1;
    }
    let mut first = true;
    loop {
        let Some(&ch) = chars.get(idx) else {
            return Err(RegexError::MissingBracket);
        };
        if ch == ']' && !first {
            out.push(']');
            return Ok(idx + 1);
        }
        first = false;
        if ch == '[' && chars.get(idx + 1) == Some(&':') {
            let rest: String = chars[idx + 2..].iter().collect();
            if let Some(end) = rest.find(":]") {
                let name = &rest[..end];
                let bare = name.strip_prefix('^').unwrap_or(name);
                if !POSIX_CLASSES.contains(&bare) {
                    return Err(RegexError::UnknownClass(name.to_string()));
                }
                out.push_str(&format!("[:{name}:]"));
                idx += 2 + name.chars().count() + 2;
                continue;
            }
        }
        let (lo, next) = class_item(chars, idx)?;
        idx = next;
        let lo = match lo {
            ClassItem::Set(body, negated) => {
                out.push_str(if negated { "[^" } else { "[" });
                out.push_str(body);
                out.push(']');
                continue;
            }
            ClassItem::Char(lo) => lo,
        };
        if chars.get(idx) == Some(&'-') && chars.get(idx + 1).is_some_and(|c| *c != ']') {
            let (hi, next) = class_item(chars, idx + 1)?;
            idx = next;
            let ClassItem::Char(hi) = hi else {
                return Err(RegexError::SetInRange);
            };
            if hi < lo {
                return Err(RegexError::ReversedRange(lo, hi));
            }
            out.push_str(&format!("\\x{{{:X}}}-\\x{{{:X}}}", u32::from(lo), u32::from(hi)));
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(lo)));
        }
    }
}

enum ClassItem {
    Char(char),
    Set(&'static str, bool),
}

fn class_item(chars: &[char], idx: usize) -> Result<(ClassItem, usize), RegexError> {
    let Some(&ch) = chars.get(idx) else {
        return Err(RegexError::MissingBracket);
    };
    if ch != '\\' {
        return Ok((ClassItem::Char(ch), idx + 1));
    }
    let Some(&next) = chars.get(idx + 1) else {
        return Err(RegexError::TrailingBackslash);
    };
    if next.is_ascii() && !next.is_ascii_alphanumeric() {
        Ok((ClassItem::Char(next), idx + 2))
    } else if let Some(control) = control_escape(next) {
        Ok((ClassItem::Char(control), idx + 2))
    } else if let Some((body, negated)) = perl_class_body(next) {
        Ok((ClassItem::Set(body, negated), idx + 2))
    } else {
        Err(RegexError::UnsupportedEscape(next))
    }
}

impl IgnorePattern {
    /// Prepare one raw pattern: `None` for a blank one. `origin` names where it came from.
    fn compile(raw: &str, line: Option<usize>, origin: String) -> Result<Option<Self>, ContextError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let (exception, body) = match trimmed.strip_prefix('!') {
            Some("") => {
                return Err(ContextError::BadPattern {
                    origin,
                    pattern: raw.to_string(),
                    reason: "illegal exclusion pattern: \"!\"".into(),
                })
            }
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let text = clean_path(body);
        if let Err(reason) = glob_match(&text, ".") {
            return Err(ContextError::BadPattern { origin, pattern: raw.to_string(), reason: reason.to_string() });
        }
        let (matcher, _) = translate(&text);
        Ok(Some(IgnorePattern { text, exception, line, origin, matcher }))
    }

    /// Does this pattern match exactly `path` (no parent matching)?
    fn matches_path(&self, path: &str) -> Result<bool, ContextError> {
        match &self.matcher {
            Matcher::Exact => Ok(path == self.text),
            Matcher::Prefix(prefix) => Ok(path.starts_with(prefix.as_str())),
            Matcher::Suffix(suffix) => {
                Ok(path.ends_with(suffix.as_str()) || suffix.strip_prefix('/').is_some_and(|bare| path == bare))
            }
            Matcher::Regex(regex) => Ok(regex.is_match(path)),
            Matcher::Invalid(reason) => Err(ContextError::PatternMatch {
                origin: self.origin.clone(),
                pattern: self.display_text(),
                path: path.to_string(),
                reason: reason.to_string(),
            }),
        }
    }

    fn display_text(&self) -> String {
        if self.exception {
            format!("!{}", self.text)
        } else {
            self.text.clone()
        }
    }

    /// The pattern with a trailing `/**` or `/*` removed (fsutil's `patternWithoutTrailingGlob`).
    fn without_trailing_glob(&self) -> &str {
        let text = self.text.as_str();
        let text = text.strip_suffix("/**").unwrap_or(text);
        text.strip_suffix("/*").unwrap_or(text)
    }
}

/// The outcome of matching one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnoreMatch {
    /// The path is left out of the build context.
    pub excluded: bool,
    /// Index of the pattern that decided (the last one that matched), if any did.
    pub decided_by: Option<usize>,
}

/// An ordered list of `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<IgnorePattern>,
    has_exceptions: bool,
    /// No exception pattern has a wildcard (besides a trailing `/*` or `/**`): an excluded
    /// directory need only be walked when an exception names something below it.
    only_prefix_exceptions: bool,
}

impl PatternMatcher {
    /// Build a matcher from already-read patterns (each trimmed, cleaned, validated).
    pub fn new(patterns: &[String]) -> Result<Self, ContextError> {
        let prepared =
            patterns.iter().enumerate().map(|(idx, raw)| (raw.as_str(), None, format!("pattern #{}", idx + 1)));
        Self::build(prepared)
    }

    /// Build a matcher from the content of an ignore file; errors name the file and line.
    pub fn from_ignore_file(path: &std::path::Path, content: &str) -> Result<Self, ContextError> {
        let lines = super::ignorefile::read_ignore_file_lines(content);
        let prepared =
            lines.iter().map(|(line, raw)| (raw.as_str(), Some(*line), format!("{}:{}", path.display(), line)));
        Self::build(prepared)
    }

    fn build<'a>(prepared: impl Iterator<Item = (&'a str, Option<usize>, String)>) -> Result<Self, ContextError> {
        let mut patterns = Vec::new();
        for (raw, line, origin) in prepared {
            if let Some(pattern) = IgnorePattern::compile(raw, line, origin)? {
                patterns.push(pattern);
            }
        }
        let has_exceptions = patterns.iter().any(|p| p.exception);
        let only_prefix_exceptions = patterns
            .iter()
            .filter(|p| p.exception)
            .all(|p| !p.without_trailing_glob().contains(['*', '[', ']', '?', '^', '\\']));
        Ok(PatternMatcher { patterns, has_exceptions, only_prefix_exceptions })
    }

    /// The prepared patterns, in order.
    pub fn patterns(&self) -> &[IgnorePattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Is any pattern a `!` exception?
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Docker's `MatchesOrParentMatches` on a `/`-separated path relative to the context root.
    /// The path is cleaned first; the root `.` is never excluded.
    pub fn matches(&self, rel_path: &str) -> Result<IgnoreMatch, ContextError> {
        let path = clean_path(rel_path);
        let not_excluded = IgnoreMatch { excluded: false, decided_by: None };
        if path == "." || self.patterns.is_empty() {
            return Ok(not_excluded);
        }
        let parent = parent_dir(&path);
        let ancestors: Vec<String> = if parent == "." {
            Vec::new()
        } else {
            let parts: Vec<&str> = parent.split('/').collect();
            (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
        };
        let mut result = not_excluded;
        for (idx, pattern) in self.patterns.iter().enumerate() {
            if pattern.exception != result.excluded {
                continue;
            }
            let mut hit = pattern.matches_path(&path)?;
            if !hit {
                hit = ancestors.iter().any(|ancestor| pattern.matches_path(ancestor).unwrap_or(false));
            }
            if hit {
                result = IgnoreMatch { excluded: !pattern.exception, decided_by: Some(idx) };
            }
        }
        Ok(result)
    }

    /// Matching during a walk: `parent_hits[i]` says pattern `i` matched an ancestor directory.
    /// Returns the decision and, for directories, this path's own per-pattern hits.
    pub(crate) fn matches_in_walk(
        &self,
        path: &str,
        parent_hits: &[bool],
        want_hits: bool,
    ) -> Result<(IgnoreMatch, Vec<bool>), ContextError> {
        let mut result = IgnoreMatch { excluded: false, decided_by: None };
        let mut own_hits: Vec<Option<bool>> = vec![None; self.patterns.len()];
        for (idx, pattern) in self.patterns.iter().enumerate() {
            if pattern.exception != result.excluded {
                continue;
            }
            let self_hit = pattern.matches_path(path)?;
            own_hits[idx] = Some(self_hit);
            if self_hit || parent_hits.get(idx).copied().unwrap_or(false) {
                result = IgnoreMatch { excluded: !pattern.exception, decided_by: Some(idx) };
            }
        }
        let hits = if want_hits {
            self.patterns
                .iter()
                .zip(own_hits)
                .enumerate()
                .map(|(idx, (pattern, own))| {
                    parent_hits.get(idx).copied().unwrap_or(false)
                        || own.unwrap_or_else(|| pattern.matches_path(path).unwrap_or(false))
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok((result, hits))
    }

    /// Must an excluded directory still be walked because an exception may re-include
    /// something below it? (fsutil's rule.)
    pub(crate) fn may_reinclude_below(&self, dir: &str) -> bool {
        if !self.has_exceptions {
            return false;
        }
        if !self.only_prefix_exceptions {
            return true;
        }
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.without_trailing_glob()).starts_with(&dir_slash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str) -> bool {
        let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        PatternMatcher::new(&owned)
            .and_then(|m| m.matches(path))
            .map(|m| m.excluded)
            .unwrap_or_else(|err| panic!("{patterns:?} {path}: {err}"))
    }

    #[test]
    fn clean_path_matches_go() {
        for (input, want) in [
            ("", "."),
            ("docs/", "docs"),
            ("./a", "a"),
            ("a//b", "a/b"),
            ("a/../b/", "b"),
            ("/", "/"),
            ("/..", "/"),
            ("../x", "../x"),
            ("a/../..", ".."),
            ("//a/./b/..", "/a"),
        ] {
            assert_eq!(clean_path(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn glob_match_follows_go_filepath_match() {
        assert_eq!(glob_match("a*/b", "abc/b"), Ok(true));
        assert_eq!(glob_match("a*/b", "a/c/b"), Ok(false));
        assert_eq!(glob_match("[a-ζ]*", "α"), Ok(true));
        assert_eq!(glob_match("a?b", "a☺b"), Ok(true));
        assert_eq!(glob_match("[\\]a]", "]"), Ok(true));
        for bad in ["[]a]", "[-]", "[x-]", "[a-b-c]", "[", "[^", "a[", "\\", "*["] {
            assert!(glob_match(bad, ".").is_err(), "{bad} should be a bad pattern");
        }
    }

    #[test]
    fn double_star_and_parents() {
        assert!(excluded(&["**/file*.txt"], "dir/dir/file.txt"));
        assert!(excluded(&["a*"], "ab/c"));
        assert!(!excluded(&["abc/**"], "abc"));
        assert!(excluded(&["**/.foo"], ".foo"));
        assert!(!excluded(&["**/.foo"], "bar.foo"));
        assert!(excluded(&["docs/"], "docs/x"));
        assert!(!excluded(&["*.go"], "."));
    }

    #[test]
    fn last_match_wins_and_decided_by() {
        let patterns: Vec<String> = ["*.go", "!keep.go", "x"].map(String::from).to_vec();
        let matcher = PatternMatcher::new(&patterns).unwrap();
        let keep = matcher.matches("keep.go").unwrap();
        assert_eq!((keep.excluded, keep.decided_by), (false, Some(1)));
        let other = matcher.matches("a.go").unwrap();
        assert_eq!((other.excluded, other.decided_by), (true, Some(0)));
        assert!(matcher.has_exceptions());
    }

    #[test]
    fn class_brackets_follow_go_regexp_parse() {
        // `[*]` becomes `[[^/]*]` in Go's regexp: a class of `[`, `^`, `/` repeated, then `]`.
        assert!(excluded(&["[*]"], "[]"));
        assert!(!excluded(&["[*]"], "*"));
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_pattern() {
        let err = PatternMatcher::new(&["!".to_string()]).unwrap_err();
        assert!(err.to_string().contains("pattern #1"), "{err}");
        let lazy = PatternMatcher::new(&["[Local-Only]/".to_string()]).unwrap();
        let err = lazy.matches("x").unwrap_err();
        assert!(err.to_string().contains("[Local-Only]"), "{err}");
        let file = std::path::Path::new("/ctx/.dockerignore");
        let err = PatternMatcher::from_ignore_file(file, "ok\n\n[\n").unwrap_err();
        assert!(err.to_string().contains("/ctx/.dockerignore:3"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        #[test]
        fn random_patterns_never_panic(
            patterns in proptest::collection::vec("[a-c*?\\[\\]\\\\!^/.\\- é]{0,8}", 0..4),
            path in "[a-c*?\\[\\]\\\\/.\\- é]{0,12}",
        ) {
            if let Ok(matcher) = PatternMatcher::new(&patterns) {
                let _ = matcher.matches(&path);
                let _ = matcher.matches_in_walk(&path, &[true, false], true);
            }
            for pattern in &patterns {
                let _ = glob_match(pattern, &path);
            }
        }
    }
}

#[cfg(test)]
mod upstream_tables {
    //! The single-pattern tables of moby/patternmatcher's tests, re-expressed as data.
    use super::*;

    /// (pattern, path, excluded) — `None` means a bad-pattern error.
    const CASES: &[(&str, &str, Option<bool>)] = &[
        ("**", "file", Some(true)),
        ("**", "file/", Some(true)),
        ("**/", "file", Some(true)),
        ("**/", "file/", Some(true)),
        ("**", "/", Some(true)),
        ("**/", "/", Some(true)),
        ("**", "dir/file", Some(true)),
        ("**/", "dir/file", Some(true)),
        ("**", "dir/file/", Some(true)),
        ("**/", "dir/file/", Some(true)),
        ("**/**", "dir/file", Some(true)),
        ("**/**", "dir/file/", Some(true)),
        ("dir/**", "dir/file", Some(true)),
        ("dir/**", "dir/file/", Some(true)),
        ("dir/**", "dir/dir2/file", Some(true)),
        ("dir/**", "dir/dir2/file/", Some(true)),
        ("**/dir", "dir", Some(true)),
        ("**/dir", "dir/file", Some(true)),
        ("**/dir2/*", "dir/dir2/file", Some(true)),
        ("**/dir2/*", "dir/dir2/file/", Some(true)),
        ("**/dir2/**", "dir/dir2/dir3/file", Some(true)),
        ("**/dir2/**", "dir/dir2/dir3/file/", Some(true)),
        ("**file", "file", Some(true)),
        ("**file", "dir/file", Some(true)),
        ("**/file", "dir/file", Some(true)),
        ("**file", "dir/dir/file", Some(true)),
        ("**/file", "dir/dir/file", Some(true)),
        ("**/file*", "dir/dir/file", Some(true)),
        ("**/file*", "dir/dir/file.txt", Some(true)),
        ("**/file*txt", "dir/dir/file.txt", Some(true)),
        ("**/file*.txt", "dir/dir/file.txt", Some(true)),
        ("**/file*.txt*", "dir/dir/file.txt", Some(true)),
        ("**/**/*.txt", "dir/dir/file.txt", Some(true)),
        ("**/**/*.txt2", "dir/dir/file.txt", Some(false)),
        ("**/*.txt", "file.txt", Some(true)),
        ("**/**/*.txt", "file.txt", Some(true)),
        ("a**/*.txt", "a/file.txt", Some(true)),
        ("a**/*.txt", "a/dir/file.txt", Some(true)),
        ("a**/*.txt", "a/dir/dir/file.txt", Some(true)),
        ("a/*.txt", "a/dir/file.txt", Some(false)),
        ("a/*.txt", "a/file.txt", Some(true)),
        ("a/*.txt**", "a/file.txt", Some(true)),
        ("a[b-d]e", "ae", Some(false)),
        ("a[b-d]e", "ace", Some(true)),
        ("a[b-d]e", "aae", Some(false)),
        ("a[^b-d]e", "aze", Some(true)),
        (".*", ".foo", Some(true)),
        (".*", "foo", Some(false)),
        ("abc.def", "abcdef", Some(false)),
        ("abc.def", "abc.def", Some(true)),
        ("abc.def", "abcZdef", Some(false)),
        ("abc?def", "abcZdef", Some(true)),
        ("abc?def", "abcdef", Some(false)),
        ("**/foo/bar", "foo/bar", Some(true)),
        ("**/foo/bar", "dir/foo/bar", Some(true)),
        ("**/foo/bar", "dir/dir2/foo/bar", Some(true)),
        ("abc/**", "abc", Some(false)),
        ("abc/**", "abc/def", Some(true)),
        ("abc/**", "abc/def/ghi", Some(true)),
        ("**/.foo", ".foo", Some(true)),
        ("**/.foo", "bar.foo", Some(false)),
        ("a(b)c/def", "a(b)c/def", Some(true)),
        ("a(b)c/def", "a(b)c/xyz", Some(false)),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", Some(true)),
        ("a\\\\", "a\\", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(true)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("*x", "xxx", Some(true)),
        ("[Local-Only]/", "x", None),
    ];

    #[test]
    fn upstream_single_pattern_tables() {
        let mut failures = Vec::new();
        for (pattern, path, want) in CASES {
            let got =
                PatternMatcher::new(&[pattern.to_string()]).and_then(|m| m.matches(path)).ok().map(|m| m.excluded);
            if got != *want {
                failures.push(format!("{pattern:?} {path:?}: want {want:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn upstream_multi_pattern_tables() {
        let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true),
            (&["**", &format!("!{whl}")], whl, false),
            (&["**", "!dist/*.whl"], whl, false),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["  !docs/README.md  ", "docs"], "docs/README.md", true),
        ];
        for (patterns, path, want) in cases {
            let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let got = PatternMatcher::new(&owned).unwrap().matches(path).unwrap();
            assert_eq!(got.excluded, *want, "{patterns:?} {path}");
        }
    }
}
