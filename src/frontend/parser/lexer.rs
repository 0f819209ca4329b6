//! Physical-line work before the grammar sees anything: BOM, parser directives at the top,
//! comment and blank lines, escape-character line continuations (BuildKit rules), heredoc
//! bodies, and the map from logical-line offsets back to file line/column.

use crate::frontend::ast::Directives;
use crate::frontend::diagnostic::Diagnostic;

/// The Dockerfile text and its display name, for building diagnostics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceText<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

impl SourceText<'_> {
    pub fn error(&self, line: usize, column: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.file, self.text, line, column, message)
    }
}

/// Iterates the physical lines of the source, each with its line ending.
#[derive(Debug)]
pub(crate) struct LineCursor<'a> {
    lines: Vec<&'a str>,
    next: usize,
}

impl<'a> LineCursor<'a> {
    pub fn new(text: &'a str) -> Self {
        LineCursor { lines: text.split_inclusive('\n').collect(), next: 0 }
    }

    /// The next line and its 1-based number.
    fn next_line(&mut self) -> Option<(usize, &'a str)> {
        let line = self.lines.get(self.next).copied()?;
        self.next += 1;
        Some((self.next, line))
    }

    pub fn line_count(&self) -> usize {
        self.lines.len()
    }
}

/// Where a piece of a logical line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    text_offset: usize,
    line: usize,
    column: usize,
}

/// One instruction's text: physical lines joined by continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    pub text: String,
    pub start_line: usize,
    pub end_line: usize,
    /// First empty line met inside the continuation (BuildKit warns about these).
    pub empty_continuation_line: Option<usize>,
    segments: Vec<Segment>,
}

impl LogicalLine {
    /// 1-based file line and character column of byte `offset` of `text`.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let segment = self.segments.iter().rev().find(|s| s.text_offset <= offset);
        match segment {
            Some(seg) => {
                let within = self.text.get(seg.text_offset..offset).map_or(0, |s| s.chars().count());
                (seg.line, seg.column + within)
            }
            None => (self.start_line, 1),
        }
    }

    fn push_piece(&mut self, piece: &str, line: usize, column: usize) {
        self.segments.push(Segment { text_offset: self.text.len(), line, column });
        self.text.push_str(piece);
    }
}

/// Recognises parser directives until the first line that is not one.
#[derive(Debug)]
pub(crate) struct DirectiveScanner {
    done: bool,
    seen: Vec<String>,
    pub directives: Directives,
}

const DIRECTIVE_BLANKS: [char; 5] = ['\t', '\n', '\u{0C}', '\r', ' '];

impl DirectiveScanner {
    pub fn new() -> Self {
        DirectiveScanner { done: false, seen: Vec::new(), directives: Directives::default() }
    }

    /// Looks at one physical line (newline removed). Errors on a repeated directive or an
    /// invalid escape character.
    pub fn observe(&mut self, line: &str, line_number: usize, src: &SourceText<'_>) -> Result<(), Diagnostic> {
        if self.done {
            return Ok(());
        }
        let Some((name, value, value_column)) = split_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(src.error(line_number, 1, format!("only one {key} parser directive can be used")));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                other => {
                    return Err(src.error(
                        line_number,
                        value_column,
                        format!("invalid escape token '{other}' does not match ` or \\"),
                    ))
                }
            },
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => self.directives.check = Some(value.to_string()),
        }
        Ok(())
    }
}

/// `# name = value` → (name, value, 1-based column of value). Mirrors BuildKit's
/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` with ASCII `\s`.
fn split_directive(line: &str) -> Option<(&str, &str, usize)> {
    let after_hash = line.strip_prefix('#')?;
    let body = after_hash.trim_start();
    let name_len = body
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(body.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, after_name) = body.split_at(name_len);
    let after_eq = after_name.trim_start_matches(DIRECTIVE_BLANKS).strip_prefix('=')?;
    let trimmed = after_eq.trim_start_matches(DIRECTIVE_BLANKS);
    let value = if trimmed.is_empty() {
        // `.+?` must take one character: the last blank.
        let last = after_eq.char_indices().last()?.0;
        after_eq.get(last..)?
    } else {
        trimmed.trim_end_matches(DIRECTIVE_BLANKS)
    };
    let value_start = (value.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
    let value_column = line.get(..value_start).map_or(1, |p| p.chars().count() + 1);
    Some((name, value, value_column))
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// BuildKit's continuation rule: the escape char as last non-blank (space/tab) character,
/// not itself preceded by the escape char, or alone on the line. Returns the line without it
/// and whether the instruction continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, true);
        }
    }
    (line, false)
}

/// Reads the next instruction's logical line, skipping blank and comment lines. `None` at EOF.
pub(crate) fn next_logical_line(
    cursor: &mut LineCursor<'_>,
    scanner: &mut DirectiveScanner,
    src: &SourceText<'_>,
) -> Result<Option<LogicalLine>, Diagnostic> {
    while let Some((number, raw)) = cursor.next_line() {
        let mut line = trim_newline(raw);
        let mut bom_columns = 0;
        if number == 1 {
            if let Some(stripped) = line.strip_prefix('\u{FEFF}') {
                line = stripped;
                bom_columns = 1;
            }
        }
        let content = line.trim_start();
        scanner.observe(content, number, src)?;
        let content = if is_comment(content) { "" } else { content };
        let lead_columns = line[..line.len() - line.trim_start().len()].chars().count() + bom_columns;
        let escape = scanner.directives.escape;
        let (first, mut continues) = trim_continuation(content, escape);
        if !continues && first.is_empty() {
            continue;
        }
        let mut logical = LogicalLine {
            text: String::new(),
            start_line: number,
            end_line: number,
            empty_continuation_line: None,
            segments: Vec::new(),
        };
        logical.push_piece(first, number, lead_columns + 1);
        while continues {
            let Some((next_number, next_raw)) = cursor.next_line() else {
                break;
            };
            logical.end_line = next_number;
            let next_line = trim_newline(next_raw);
            scanner.observe(next_line, next_number, src)?;
            if is_comment(next_raw) {
                continue;
            }
            if next_line.trim_start().is_empty() {
                logical.empty_continuation_line.get_or_insert(next_number);
                continue;
            }
            let (piece, more) = trim_continuation(next_line, scanner.directives.escape);
            continues = more;
            logical.push_piece(piece, next_number, 1);
        }
        return Ok(Some(logical));
    }
    Ok(None)
}

/// Reads heredoc body lines up to the terminator `name` (for `chomp`, compared after
/// stripping leading tabs). Returns the raw body and the terminator's line, or `None` at EOF.
pub(crate) fn read_heredoc_body(cursor: &mut LineCursor<'_>, name: &str, chomp: bool) -> Option<(String, usize)> {
    let mut content = String::new();
    while let Some((number, raw)) = cursor.next_line() {
        let mut candidate = trim_newline(raw);
        if chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == name {
            return Some((content, number));
        }
        content.push_str(raw);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_lines() {
        assert_eq!(split_directive("#escape=`"), Some(("escape", "`", 9)));
        assert_eq!(split_directive("# Syntax = docker/dockerfile:1  "), Some(("Syntax", "docker/dockerfile:1", 12)));
        assert_eq!(split_directive("# escape = "), Some(("escape", " ", 11)));
        assert_eq!(split_directive("# escape"), None);
        assert_eq!(split_directive("# 1x=y"), None);
        assert_eq!(split_directive("FROM x"), None);
    }

    #[test]
    fn directives_stop_at_first_other_line() {
        let src = SourceText { text: "", file: "Dockerfile" };
        let mut scanner = DirectiveScanner::new();
        scanner.observe("# escape=`", 1, &src).unwrap();
        assert!(scanner.observe("# ESCAPE=\\", 2, &src).is_err());
        let mut scanner = DirectiveScanner::new();
        scanner.observe("# hello", 1, &src).unwrap();
        scanner.observe("# escape=`", 2, &src).unwrap();
        assert_eq!(scanner.directives.escape, '\\');
        let mut scanner = DirectiveScanner::new();
        let err = scanner.observe("# escape=x", 1, &src).unwrap_err();
        assert!(err.message.contains("invalid escape"));
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("echo \\  ", '\\'), ("echo ", true));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", false));
        assert_eq!(trim_continuation("\\ ", '\\'), ("", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", true));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", false));
    }
}
