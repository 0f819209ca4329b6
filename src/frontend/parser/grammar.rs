//! The pest grammar (`grammar/dockerfile.pest`) and typed helpers over its rules: instruction
//! head (keyword, flags, rest), JSON string arrays, quote-aware words, whitespace words and
//! heredoc openers. Offsets returned here are byte offsets into the string the caller passed.

use pest::iterators::Pair;
use pest::Parser;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/dockerfile.pest"]
pub(crate) struct DockerfileGrammar;

/// A syntax error inside one logical line: byte offset into the parsed text and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    pub offset: usize,
    pub message: String,
}

/// `KEYWORD [--flags] rest` split out of a trimmed instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstructionHead<'a> {
    pub keyword: &'a str,
    pub flags: Vec<String>,
    pub rest: &'a str,
    pub rest_offset: usize,
}

/// Splits a trimmed instruction line into keyword, leading `--flags` and the rest.
pub(crate) fn split_instruction(line: &str) -> Result<InstructionHead<'_>, LineError> {
    let mut pairs = DockerfileGrammar::parse(Rule::instruction, line)
        .map_err(|err| LineError { offset: error_offset(&err), message: "malformed instruction line".to_string() })?;
    let mut head = InstructionHead { keyword: "", flags: Vec::new(), rest: "", rest_offset: line.len() };
    let Some(instruction) = pairs.next() else {
        return Ok(head);
    };
    for pair in instruction.into_inner() {
        match pair.as_rule() {
            Rule::keyword => head.keyword = pair.as_str(),
            Rule::flag_section => {
                for flag in pair.into_inner() {
                    if flag.as_rule() == Rule::flag_word {
                        head.flags.push(flag_value(flag)?);
                    }
                }
            }
            Rule::rest => {
                head.rest = pair.as_str();
                head.rest_offset = pair.as_span().start();
            }
            _ => {}
        }
    }
    Ok(head)
}

/// The value of one `--flag` word: quotes removed, `\` escapes resolved.
fn flag_value(flag: Pair<'_, Rule>) -> Result<String, LineError> {
    let flag_start = flag.as_span().start();
    let raw = flag.as_str();
    let mut value = String::from("--");
    for piece in flag.into_inner() {
        match piece.as_rule() {
            Rule::flag_char => value.push_str(piece.as_str()),
            Rule::flag_escape => value.extend(piece.into_inner().map(|p| p.as_str().to_string())),
            Rule::flag_double_quoted | Rule::flag_single_quoted => {
                for part in piece.into_inner() {
                    match part.as_rule() {
                        Rule::flag_quoted_escape => value.extend(part.into_inner().map(|p| p.as_str().to_string())),
                        _ => value.push_str(part.as_str()),
                    }
                }
            }
            Rule::flag_unterminated_quote => {
                return Err(LineError {
                    offset: piece.as_span().start(),
                    message: format!("flag syntax error: unterminated quote in flag {value}{}", piece.as_str()),
                });
            }
            _ => {}
        }
    }
    if value.starts_with("--=") {
        return Err(LineError {
            offset: flag_start,
            message: format!("flag syntax error: missing flag name in {raw}"),
        });
    }
    Ok(value)
}

/// Parses `text` as a JSON array of strings. `None` when it is not exactly that.
pub(crate) fn json_string_array(text: &str) -> Option<Vec<String>> {
    let array = DockerfileGrammar::parse(Rule::json_string_array, text).ok()?.next()?;
    Some(array.into_inner().filter(|p| p.as_rule() == Rule::json_string).map(decode_json_string).collect())
}

fn decode_json_string(string: Pair<'_, Rule>) -> String {
    let mut out = String::new();
    let mut pending_high: Option<u16> = None;
    for piece in string.into_inner() {
        let escape = piece.clone().into_inner().next();
        let unit = match (&piece.as_rule(), &escape) {
            (Rule::json_escape, Some(e)) if e.as_rule() == Rule::json_unicode_escape => {
                e.as_str().get(1..).and_then(|hex| u16::from_str_radix(hex, 16).ok())
            }
            _ => None,
        };
        if let Some(unit) = unit {
            if let Some(high) = pending_high.take() {
                if (0xDC00..0xE000).contains(&unit) {
                    let code = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                    out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                    continue;
                }
                out.push('\u{FFFD}');
            }
            if (0xD800..0xDC00).contains(&unit) {
                pending_high = Some(unit);
            } else {
                out.push(char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'));
            }
            continue;
        }
        if pending_high.take().is_some() {
            out.push('\u{FFFD}');
        }
        match (piece.as_rule(), escape) {
            (Rule::json_escape, Some(e)) => out.push(match e.as_str() {
                "b" => '\u{8}',
                "f" => '\u{C}',
                "n" => '\n',
                "r" => '\r',
                "t" => '\t',
                other => other.chars().next().unwrap_or('\u{FFFD}'),
            }),
            _ => out.push_str(piece.as_str()),
        }
    }
    if pending_high.is_some() {
        out.push('\u{FFFD}');
    }
    out
}

/// BuildKit `parseWords`: whitespace-separated words where quotes and `escape` pairs keep
/// whitespace inside a word; quotes and escapes stay in the word. Returns `(word, offset)`.
pub(crate) fn escaped_words(text: &str, escape: char) -> Vec<(String, usize)> {
    let prefixed = format!("{escape}{text}");
    let shift = escape.len_utf8();
    let Ok(mut pairs) = DockerfileGrammar::parse(Rule::escaped_words, &prefixed) else {
        return Vec::new();
    };
    let Some(root) = pairs.next() else {
        return Vec::new();
    };
    root.into_inner()
        .filter(|p| p.as_rule() == Rule::escaped_word)
        .map(|word| {
            let offset = word.as_span().start().saturating_sub(shift);
            let mut value = word.as_str().to_string();
            if word.into_inner().any(|p| p.as_rule() == Rule::trailing_escape) {
                value.pop();
            }
            (value, offset)
        })
        .collect()
}

/// Words separated by `[\t\v\f\r ]+` (BuildKit `parseStringsWhitespaceDelimited`).
pub(crate) fn spaced_words(text: &str) -> Vec<String> {
    let Ok(mut pairs) = DockerfileGrammar::parse(Rule::spaced_words, text) else {
        return Vec::new();
    };
    let Some(root) = pairs.next() else {
        return Vec::new();
    };
    root.into_inner().filter(|p| p.as_rule() == Rule::spaced_word).map(|p| p.as_str().to_string()).collect()
}

/// Shell words of an instruction line with quotes and escapes kept raw, `<<` glued to the
/// word after it. `None` when a quote is left open.
pub(crate) fn raw_shell_words(line: &str, escape: char) -> Option<Vec<(String, usize)>> {
    let prefixed = format!("{escape}{line}");
    let shift = escape.len_utf8();
    let root = DockerfileGrammar::parse(Rule::shell_line, &prefixed).ok()?.next()?;
    Some(
        root.into_inner()
            .filter(|p| p.as_rule() == Rule::shell_word)
            .map(|p| (p.as_str().to_string(), p.as_span().start().saturating_sub(shift)))
            .collect(),
    )
}

/// The parts of a heredoc opener word `[fd]<<[-]name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocOpener<'a> {
    pub fd: &'a str,
    pub chomp: bool,
    pub raw_name: &'a str,
}

pub(crate) fn heredoc_opener(word: &str) -> Option<HeredocOpener<'_>> {
    let root = DockerfileGrammar::parse(Rule::heredoc_word, word).ok()?.next()?;
    let mut opener = HeredocOpener { fd: "", chomp: false, raw_name: "" };
    for part in root.into_inner() {
        match part.as_rule() {
            Rule::heredoc_fd => opener.fd = part.as_str(),
            Rule::heredoc_chomp => opener.chomp = true,
            Rule::heredoc_name => opener.raw_name = part.as_str(),
            _ => {}
        }
    }
    Some(opener)
}

/// A heredoc name split into shell words after quote removal: `(word, any part quoted)`.
/// `Err` when a quote is left open.
pub(crate) fn heredoc_name_words(raw_name: &str) -> Result<Vec<(String, bool)>, String> {
    let root = DockerfileGrammar::parse(Rule::heredoc_name_words, raw_name)
        .map_err(|_| format!("unterminated quote in heredoc name {raw_name:?}"))?
        .next();
    let Some(root) = root else {
        return Ok(Vec::new());
    };
    let mut words = Vec::new();
    for word in root.into_inner().filter(|p| p.as_rule() == Rule::name_word) {
        let mut value = String::new();
        let mut quoted = false;
        for piece in word.into_inner() {
            match piece.as_rule() {
                Rule::name_char => value.push_str(piece.as_str()),
                Rule::name_escape => value.extend(piece.into_inner().map(|p| p.as_str().to_string())),
                Rule::name_double_quoted | Rule::name_single_quoted => {
                    quoted = true;
                    for part in piece.into_inner() {
                        match part.as_rule() {
                            Rule::name_dq_escape => value.extend(part.into_inner().map(|p| p.as_str().to_string())),
                            _ => value.push_str(part.as_str()),
                        }
                    }
                }
                _ => {}
            }
        }
        words.push((value, quoted));
    }
    Ok(words)
}

fn error_offset(err: &pest::error::Error<Rule>) -> usize {
    match err.location {
        pest::error::InputLocation::Pos(pos) => pos,
        pest::error::InputLocation::Span((start, _)) => start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_keyword_flags_and_rest() {
        let head = split_instruction(r#"COPY --from=a --chmod="7 55" -- foo /tmp/"#).unwrap();
        assert_eq!(head.keyword, "COPY");
        assert_eq!(head.flags, vec!["--from=a", "--chmod=7 55"]);
        assert_eq!(head.rest, "foo /tmp/");
        let head = split_instruction("CMD --doit [ \"a\" ]").unwrap();
        assert_eq!(head.flags, vec!["--doit"]);
        assert_eq!(head.rest, "[ \"a\" ]");
        let head = split_instruction("RUN -x --y").unwrap();
        assert!(head.flags.is_empty());
        assert_eq!(head.rest, "-x --y");
        let head = split_instruction("RUN --a\\ b c").unwrap();
        assert_eq!(head.flags, vec!["--a b"]);
        let head = split_instruction("HEALTHCHECK").unwrap();
        assert_eq!((head.keyword, head.rest), ("HEALTHCHECK", ""));
    }

    #[test]
    fn unterminated_flag_quote_is_an_error() {
        let err = split_instruction("RUN --mount=\"type=cache echo").unwrap_err();
        assert_eq!(err.offset, 12);
        assert!(err.message.contains("unterminated quote"));
    }

    #[test]
    fn flag_without_name_is_an_error() {
        let err = split_instruction("COPY --chown=1 --=x a b").unwrap_err();
        assert_eq!(err.offset, 15);
        assert!(err.message.contains("missing flag name"));
    }

    #[test]
    fn json_arrays_of_strings_only() {
        assert_eq!(json_string_array(r#"[ "a", "b c" ]"#), Some(vec!["a".into(), "b c".into()]));
        assert_eq!(json_string_array("[]"), Some(vec![]));
        assert_eq!(json_string_array(r#"["\u00e9\n\ud83c\udf89\ud800"]"#), Some(vec!["é\n🎉\u{FFFD}".into()]));
        assert_eq!(json_string_array("['a']"), None);
        assert_eq!(json_string_array(r#"["a", ["b"]]"#), None);
        assert_eq!(json_string_array(r#"["a""#), None);
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let words: Vec<String> =
            escaped_words(r#"abc="123 456" def g\ h 'i j'"#, '\\').into_iter().map(|w| w.0).collect();
        assert_eq!(words, vec![r#"abc="123 456""#, "def", r"g\ h", "'i j'"]);
        let words: Vec<String> = escaped_words("a`  b c`", '`').into_iter().map(|w| w.0).collect();
        assert_eq!(words, vec!["a` ", "b", "c"]);
        assert_eq!(escaped_words("  x  y", '\\'), vec![("x".to_string(), 2), ("y".to_string(), 5)]);
    }

    #[test]
    fn spaced_words_split_on_ascii_blanks() {
        assert_eq!(spaced_words("a \t b\u{a0}c"), vec!["a", "b\u{a0}c"]);
    }

    #[test]
    fn shell_words_glue_heredoc_arrows() {
        let words: Vec<String> =
            raw_shell_words("RUN <<  EOF  > foo", '\\').unwrap().into_iter().map(|w| w.0).collect();
        assert_eq!(words, vec!["RUN", "<<  EOF", ">", "foo"]);
        assert_eq!(raw_shell_words("RUN \"x", '\\'), None);
    }
}
