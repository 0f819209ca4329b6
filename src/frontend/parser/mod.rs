//! Dockerfile text to [`Dockerfile`] AST with BuildKit's parser semantics. The line lexer
//! (`lexer`) handles directives, comments, continuations and heredoc bodies; the pest grammar
//! (`grammar`, `grammar/dockerfile.pest`) parses each logical instruction line; `instruction`
//! dispatches arguments per keyword; `heredoc` and `dump` hold the public helpers.

pub mod dump;
mod grammar;
mod heredoc;
mod instruction;
mod lexer;

pub use heredoc::{chomp_heredoc, heredoc_names_in_line, parse_heredoc_word};

use crate::frontend::ast::{Dockerfile, Node};
use crate::frontend::diagnostic::Diagnostic;
use instruction::LineContext;
use lexer::{DirectiveScanner, LineCursor, SourceText};

/// Parses a Dockerfile. `file` is the display name used in diagnostics.
///
/// Syntax only: keywords are not validated and variables are not expanded. Errors: invalid or
/// repeated parser directives, flag syntax, ENV/LABEL without a value, a JSON array that is not
/// all strings, an unterminated heredoc, and a file with no instructions.
pub fn parse(source: &str, file: &str) -> Result<Dockerfile, Diagnostic> {
    let src = SourceText { text: source, file };
    let mut cursor = LineCursor::new(source);
    let mut scanner = DirectiveScanner::new();
    let mut instructions: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();

    while let Some(logical) = lexer::next_logical_line(&mut cursor, &mut scanner, &src)? {
        if let Some(line) = logical.empty_continuation_line {
            warnings.push(src.error(
                line,
                1,
                format!("Empty continuation line found in: {} (empty continuation lines will become errors in a future release)", logical.text),
            ));
        }
        let ctx = LineContext { logical: &logical, src: &src, escape: scanner.directives.escape };
        let mut node = instruction::build_node(&logical.text, 0, &ctx)?;
        if can_contain_heredoc(&node) && logical.text.contains("<<") {
            // BuildKit lexes heredoc openers with `\` whatever the escape directive says.
            let openers = heredoc::heredocs_in_line(&logical.text, '\\').map_err(|(offset, message)| {
                let (line, column) = logical.position(offset);
                src.error(line, column, message)
            })?;
            for (mut doc, offset) in openers {
                let Some((content, terminator_line)) = lexer::read_heredoc_body(&mut cursor, &doc.name, doc.chomp)
                else {
                    let (line, column) = logical.position(offset);
                    return Err(src.error(
                        line,
                        column,
                        format!(
                            "unterminated heredoc <<{}: no line equal to {:?} before the end of the file",
                            doc.name, doc.name
                        ),
                    ));
                };
                doc.content = content;
                node.end_line = terminator_line;
                node.heredocs.push(doc);
            }
        }
        instructions.push(node);
    }

    let (Some(first), Some(last)) = (instructions.first(), instructions.last()) else {
        let line = cursor.line_count().max(1);
        return Err(src.error(line, 1, "file with no instructions"));
    };
    Ok(Dockerfile {
        file: file.to_string(),
        start_line: first.start_line,
        end_line: last.end_line,
        directives: scanner.directives,
        instructions,
        warnings,
    })
}

/// RUN/COPY/ADD in shell form, directly or as ONBUILD's child (BuildKit `canContainHeredoc`).
fn can_contain_heredoc(node: &Node) -> bool {
    let target = match (&node.child, node.keyword_lower().as_str()) {
        (Some(child), "onbuild") => child.as_ref(),
        _ => node,
    };
    matches!(target.keyword_lower().as_str(), "run" | "copy" | "add") && !target.json
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dump(source: &str) -> String {
        parse(source, "Dockerfile").map(|d| d.dump()).unwrap_or_else(|e| format!("ERR {}", e.headline()))
    }

    #[test]
    fn basic_dump() {
        assert_eq!(
            dump("FROM a\nrun --mount=type=cache,target=/x echo hi\nENV a=1 b=\"c d\"\nONBUILD copy . /\n"),
            "(from \"a\")\n(run [\"--mount=type=cache,target=/x\"] \"echo hi\")\n(env \"a\" \"1\" \"=\" \"b\" \"\\\"c d\\\"\" \"=\")\n(onbuild (copy \".\" \"/\"))\n"
        );
    }

    #[test]
    fn json_escapes_and_eof_continuation() {
        assert_eq!(
            dump("CMD [\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000 ♥\"]\nRUN something \\"),
            "(cmd \"\\\" \\\\ / \\b \\f \\n \\r \\t \\x00 ♥\")\n(run \"something\")\n"
        );
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(
            dump("HEALTHCHECK NONE\nHEALTHCHECK --interval=5s CMD [\"a\", \"b\"]\nHEALTHCHECK CMD curl x\nHEALTHCHECK\n"),
            "(healthcheck \"NONE\")\n(healthcheck [\"--interval=5s\"] \"CMD\" \"a\" \"b\")\n(healthcheck \"CMD\" \"curl x\")\n(healthcheck)\n"
        );
    }

    #[test]
    fn errors_have_locations_and_messages() {
        let err = parse("FROM a\nRUN <<EOF\necho\n", "Dockerfile").unwrap_err();
        assert_eq!((err.line, err.column), (2, 5));
        assert!(err.message.contains("unterminated heredoc <<EOF"), "{}", err.message);
        let err = parse("FROM a\n  CMD [1]\n", "Dockerfile").unwrap_err();
        assert_eq!((err.line, err.column), (2, 7));
        assert!(err.message.contains("bad JSON form"));
        let err = parse("FROM a\nENV PATH\n", "Dockerfile").unwrap_err();
        assert!(err.message.contains("ENV must have two arguments"));
        let err = parse("", "Dockerfile").unwrap_err();
        assert_eq!(err.message, "file with no instructions");
        let err = parse("# only a comment\n\n", "Dockerfile").unwrap_err();
        assert_eq!(err.message, "file with no instructions");
        let err = parse("# escape=x\nFROM a\n", "Dockerfile").unwrap_err();
        assert!(err.message.contains("invalid escape"));
        assert_eq!((err.line, err.column), (1, 10));
        let err = parse("FROM a\nRUN --mount='x \\\n  echo\n", "Dockerfile").unwrap_err();
        assert!(err.message.contains("flag syntax error"));
        assert_eq!((err.line, err.column), (2, 13));
        let err = parse("FROM a\nLABEL a=b c\n", "Dockerfile").unwrap_err();
        assert!(err.message.contains("can't find ="));
    }

    #[test]
    fn onbuild_nesting_is_bounded() {
        assert_eq!(dump("ONBUILD ONBUILD RUN x\n"), "(onbuild (onbuild (run \"x\")))\n");
        let deep = format!("{}RUN x\n", "ONBUILD ".repeat(100_000));
        assert!(parse(&deep, "Dockerfile").is_err());
    }

    #[test]
    fn directives_and_escape() {
        let df =
            parse("# syntax=docker/dockerfile:1\n#check=skip=all\n# escape=`\nFROM a\nRUN a `\n b\n", "Df").unwrap();
        assert_eq!(df.directives.escape, '`');
        assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
        assert_eq!(df.instructions[1].args, vec!["a  b"]);
        assert!(parse("# escape=`\n# escape=`\nFROM a\n", "Df").is_err());
    }

    #[test]
    fn heredocs_and_lines() {
        let df = parse("FROM a\nRUN <<-EOF bash\n\techo\n\tEOF\nONBUILD RUN <<X\nx\nX\nCOPY [\"<<Y\", \"/\"]\n", "Df")
            .unwrap();
        assert_eq!(df.instructions[1].heredocs[0].content, "\techo\n");
        assert_eq!((df.instructions[1].start_line, df.instructions[1].end_line), (2, 4));
        assert_eq!(df.instructions[2].heredocs[0].name, "X");
        assert!(df.instructions[3].heredocs.is_empty());
        assert_eq!(df.end_line, 8);
    }

    #[test]
    fn empty_continuation_warns() {
        let df = parse("FROM a\nRUN a \\\n\n b\n", "Df").unwrap();
        assert_eq!(df.warnings.len(), 1);
        assert_eq!(df.instructions[1].args, vec!["a  b"]);
        assert_eq!(df.instructions[1].end_line, 4);
    }

    fn dockerfile_text() -> impl Strategy<Value = String> {
        let fragments = prop::sample::select(vec![
            "FROM ",
            "RUN ",
            "COPY ",
            "ENV ",
            "LABEL ",
            "ARG ",
            "ONBUILD ",
            "HEALTHCHECK ",
            "CMD ",
            "ADD ",
            "--",
            "--mount=",
            "\"",
            "'",
            "`",
            "\\",
            "\n",
            "\r\n",
            "\t",
            " ",
            "<<",
            "<<-",
            "EOF",
            "3<<",
            "[",
            "]",
            ",",
            "=",
            "#",
            "# escape=`\n",
            "# syntax=x\n",
            "é",
            "\u{feff}",
            "\u{a0}",
            "\u{0}",
            "[\"a\"]",
            "[1]",
            "{",
            "\\u12",
            "a",
            "b=c",
        ]);
        prop::collection::vec(fragments, 0..40).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        #[test]
        fn never_panics_on_fragment_soup(text in dockerfile_text()) {
            if let Ok(df) = parse(&text, "Dockerfile") {
                let _ = df.dump();
            }
        }

        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*|[\\x00-\\x7f]{0,200}") {
            let _ = parse(&text, "Dockerfile");
        }
    }
}
