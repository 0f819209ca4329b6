//! User-facing front-end errors: every parse, expansion or lowering error names the file,
//! line and column, and renders the offending line with a caret under the column.

use std::fmt;

/// An error (or warning) located in a Dockerfile.
///
/// `line` and `column` are 1-based; `column` counts characters, not bytes. `line_text` is the
/// physical source line shown under the message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub line_text: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `line:column` of `file`, quoting that line of `source` when it exists.
    pub fn at(file: &str, source: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        let line_text =
            line.checked_sub(1).and_then(|i| source.split('\n').nth(i)).map(|l| l.trim_end_matches('\r').to_string());
        Diagnostic {
            file: file.to_string(),
            line: line.max(1),
            column: column.max(1),
            message: message.into(),
            line_text,
        }
    }

    /// The one-line form: `Dockerfile:3:5: message`.
    pub fn headline(&self) -> String {
        format!("{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }

    /// The full form, BuildKit style: the headline, then the line marked with `>>>` and a caret
    /// under the column.
    ///
    /// ```text
    /// Dockerfile:3:1: unknown instruction: FOO
    ///    3 | >>> FOO bar
    ///      |     ^
    /// ```
    pub fn render(&self) -> String {
        let mut out = self.headline();
        if let Some(text) = &self.line_text {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            // Tabs are kept so the caret lines up under them in a terminal.
            let lead: String =
                text.chars().take(self.column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            out.push_str(&format!("\n {number} | >>> {text}\n {pad} |     {lead}^"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_and_caret() {
        let d = Diagnostic::at("Dockerfile", "FROM a\nFOO bar\n", 2, 5, "unknown instruction: FOO");
        assert_eq!(d.render(), "Dockerfile:2:5: unknown instruction: FOO\n 2 | >>> FOO bar\n   |         ^");
    }

    #[test]
    fn line_past_the_end_has_no_quote() {
        let d = Diagnostic::at("Dockerfile", "", 3, 1, "unexpected end of file");
        assert_eq!(d.render(), "Dockerfile:3:1: unexpected end of file");
    }
}
