//! The Dockerfile syntax tree produced by [`crate::frontend::parser::parse`]: one [`Node`] per
//! instruction with BuildKit's argument splitting, heredoc bodies, source lines, and the
//! BuildKit AST dump format used by the conformance tests.

use crate::frontend::diagnostic::Diagnostic;
use crate::frontend::parser::dump::go_quote;

/// A parsed Dockerfile: parser directives plus the instructions in file order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dockerfile {
    /// Display name used in diagnostics, e.g. `Dockerfile`.
    pub file: String,
    pub directives: Directives,
    pub instructions: Vec<Node>,
    /// First line of the first instruction (1-based).
    pub start_line: usize,
    /// Last line of the last instruction (including heredoc bodies).
    pub end_line: usize,
    /// Non-fatal findings, e.g. empty continuation lines.
    pub warnings: Vec<Diagnostic>,
}

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directives {
    /// `\` (default) or `` ` ``.
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { escape: '\\', syntax: None, check: None }
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Copy`); may be an unknown word.
    pub keyword: String,
    /// Leading `--flag` words, quotes removed; a terminating `--` is consumed.
    pub flags: Vec<String>,
    /// The argument nodes exactly as BuildKit's dump prints them (unquoted form).
    pub args: Vec<String>,
    /// The arguments came from a valid JSON string array.
    pub json: bool,
    /// Heredoc bodies (RUN/COPY/ADD, and ONBUILD wrapping one of those).
    pub heredocs: Vec<Heredoc>,
    /// The logical line: continuations joined, escape+newline removed, comment lines dropped.
    pub original: String,
    pub start_line: usize,
    /// Includes heredoc bodies and their terminators.
    pub end_line: usize,
    /// ONBUILD's inner instruction.
    pub child: Option<Box<Node>>,
}

pub use crate::plan::instruction::Heredoc;

impl Node {
    /// The keyword lower-cased, as instructions are dispatched.
    pub fn keyword_lower(&self) -> String {
        self.keyword.to_lowercase()
    }

    /// The BuildKit s-expression body of this node, without the surrounding parentheses.
    pub fn dump_sexp(&self) -> String {
        let mut out = self.keyword_lower();
        if !self.flags.is_empty() {
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            out.push_str(" [");
            out.push_str(&quoted.join(" "));
            out.push(']');
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        if let Some(child) = &self.child {
            out.push_str(" (");
            out.push_str(&child.dump_sexp());
            out.push(')');
        }
        out.trim().to_string()
    }
}

impl Dockerfile {
    /// BuildKit's AST dump: one `(keyword ["--flag"] "arg" ...)` line per instruction, each
    /// line ending in `\n`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.instructions {
            out.push('(');
            out.push_str(&node.dump_sexp());
            out.push_str(")\n");
        }
        out
    }
}
