//! Shell patterns inside `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}` and
//! `${VAR//p/r}`, with BuildKit's rules: `*` is any run of characters, `?` one character, a
//! backslash escapes `*`, `?` or itself (and is silently dropped before `}` or `/`), any other
//! backslash is an error, and everything else (including `[`) is literal: BuildKit has no
//! bracket expressions. Like BuildKit, wildcards do not match a newline.
//!
//! A pattern is turned into a regular expression with leftmost-first semantics. With every
//! wildcard lazy the first match found from a fixed start is the shortest one; with every
//! wildcard greedy it is the longest one. That gives `#` / `##` directly; `%` / `%%` run the
//! same search on the reversed value with the reversed pattern.

use regex::Regex;

/// Why a substitution with a pattern failed; the text is the whole user-facing message.
#[derive(Debug, thiserror::Error)]
pub(super) enum PatternError {
    /// The pattern itself is unusable.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    Invalid { pattern: String, reason: PatternSyntaxError },
    /// A replace-all result grew past the expansion limit.
    #[error("{}", super::too_long(*.len))]
    TooLong { len: usize },
}

/// What is wrong in a pattern's text.
#[derive(Debug, thiserror::Error)]
pub(super) enum PatternSyntaxError {
    #[error("invalid escape '\\{0}'")]
    InvalidEscape(char),
    #[error("invalid escape '\\' at the end of the pattern")]
    TrailingBackslash,
    #[error("{0}")]
    Regex(#[from] regex::Error),
}

/// Translates a shell pattern into a regular expression. `greedy` picks the longest match for
/// `*`, otherwise the shortest; `anchored` pins the match to the start of the haystack.
fn pattern_to_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, PatternSyntaxError> {
    let mut chars = pattern.chars().peekable();
    // BuildKit reads patterns with Go's text/scanner, which skips a byte-order mark at the start.
    if chars.peek() == Some(&'\u{FEFF}') {
        chars.next();
    }
    let wildcard_run = if greedy { ".*" } else { ".*?" };
    let mut regex_text = String::with_capacity(pattern.len() + 4);
    if anchored {
        regex_text.push('^');
    }
    while let Some(current) = chars.next() {
        match current {
            '*' => regex_text.push_str(wildcard_run),
            '?' => regex_text.push('.'),
            '\\' => match chars.peek().copied() {
                // `}` and `/` are escaped only so they do not end the `${...}` part; the
                // escape itself is not part of the pattern.
                Some('}') | Some('/') => {}
                Some(escaped @ ('*' | '?' | '\\')) => {
                    chars.next();
                    regex_text.push_str(&regex::escape(escaped.encode_utf8(&mut [0; 4])));
                }
                Some(other) => return Err(PatternSyntaxError::InvalidEscape(other)),
                None => return Err(PatternSyntaxError::TrailingBackslash),
            },
            literal => regex_text.push_str(&regex::escape(literal.encode_utf8(&mut [0; 4]))),
        }
    }
    Ok(Regex::new(&regex_text)?)
}

fn invalid_pattern(pattern: &str, reason: PatternSyntaxError) -> PatternError {
    PatternError::Invalid { pattern: pattern.to_string(), reason }
}

/// `${VAR#pattern}` (shortest) / `${VAR##pattern}` (`greedy`, longest): removes the matching
/// prefix of `value`, or returns `value` unchanged when the pattern does not match.
pub(super) fn remove_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternError> {
    let regex = pattern_to_regex(pattern, greedy, true).map_err(|reason| invalid_pattern(pattern, reason))?;
    Ok(without_anchored_match(&regex, value).to_owned())
}

/// `${VAR%pattern}` (shortest) / `${VAR%%pattern}` (`greedy`, longest): removes the matching
/// suffix of `value`. Like BuildKit, this searches the reversed value for a prefix matching the
/// reversed pattern (so a lone trailing backslash in the pattern escapes its last character).
pub(super) fn remove_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, PatternError> {
    let regex =
        pattern_to_regex(&reverse_pattern(pattern), greedy, true).map_err(|reason| invalid_pattern(pattern, reason))?;
    let reversed_value: String = value.chars().rev().collect();
    Ok(without_anchored_match(&regex, &reversed_value).chars().rev().collect())
}

/// What is left of `value` after the match of the start-anchored `regex`, if any.
fn without_anchored_match<'v>(regex: &Regex, value: &'v str) -> &'v str {
    match regex.find(value) {
        Some(found) => value.get(found.end()..).unwrap_or(value),
        None => value,
    }
}

/// Reverses a pattern character by character, but keeps each backslash in front of the
/// character it escapes (`a\*c` becomes `c\*a`). A trailing lone backslash is kept as is.
fn reverse_pattern(pattern: &str) -> String {
    let mut pieces: Vec<(char, Option<char>)> = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(current) = chars.next() {
        if current == '\\' {
            match chars.next() {
                Some(escaped) => pieces.push((current, Some(escaped))),
                None => pieces.push((current, None)),
            }
        } else {
            pieces.push((current, None));
        }
    }
    let mut reversed = String::with_capacity(pattern.len());
    for (first, second) in pieces.into_iter().rev() {
        reversed.push(first);
        if let Some(second) = second {
            reversed.push(second);
        }
    }
    reversed
}

/// `${VAR/pattern/replacement}` (first match) and `${VAR//pattern/replacement}` (`all`).
/// Wildcards are greedy. The single replacement is inserted literally; replace-all follows Go's
/// `Regexp.ReplaceAllString`, so `$0` / `${0}` in the replacement stand for the matched text,
/// `$$` for `$`, other `$name` references for nothing, and empty matches right after a match
/// are skipped. A result longer than `limit` bytes is an error.
pub(super) fn replace(
    pattern: &str,
    replacement: &str,
    value: &str,
    all: bool,
    limit: usize,
) -> Result<String, PatternError> {
    let regex = pattern_to_regex(pattern, true, false).map_err(|reason| invalid_pattern(pattern, reason))?;
    if !all {
        let Some(found) = regex.find(value) else {
            return Ok(value.to_owned());
        };
        let mut replaced = String::with_capacity(value.len() + replacement.len());
        replaced.push_str(value.get(..found.start()).unwrap_or_default());
        replaced.push_str(replacement);
        replaced.push_str(value.get(found.end()..).unwrap_or_default());
        return Ok(replaced);
    }

    let mut replaced = String::with_capacity(value.len());
    let mut last_match_end = 0;
    let mut search_from = 0;
    while search_from <= value.len() {
        let Some(found) = regex.find_at(value, search_from) else {
            break;
        };
        replaced.push_str(value.get(last_match_end..found.start()).unwrap_or_default());
        if found.end() > last_match_end || found.start() == 0 {
            expand_replacement_template(&mut replaced, replacement, found.as_str());
            if replaced.len() > limit {
                return Err(PatternError::TooLong { len: replaced.len() });
            }
        }
        last_match_end = found.end();
        let next_char_width = value.get(search_from..).and_then(|rest| rest.chars().next()).map_or(0, char::len_utf8);
        if search_from + next_char_width > found.end() {
            search_from += next_char_width;
        } else if search_from + 1 > found.end() {
            // Only at the very end of the value, where there is no next character.
            search_from += 1;
        } else {
            search_from = found.end();
        }
    }
    replaced.push_str(value.get(last_match_end..).unwrap_or_default());
    Ok(replaced)
}

/// Appends `template` to `out` the way Go's `Regexp.Expand` does for a regular expression whose
/// only group is the whole match (group 0).
fn expand_replacement_template(out: &mut String, template: &str, whole_match: &str) {
    let mut rest = template;
    while let Some(dollar_at) = rest.find('$') {
        out.push_str(rest.get(..dollar_at).unwrap_or_default());
        let after_dollar = rest.get(dollar_at + 1..).unwrap_or_default();
        if let Some(after_double) = after_dollar.strip_prefix('$') {
            out.push('$');
            rest = after_double;
            continue;
        }
        match split_template_reference(after_dollar) {
            Some((name, after_reference)) => {
                if name == "0" {
                    out.push_str(whole_match);
                }
                rest = after_reference;
            }
            None => {
                // Not a well-formed reference: the `$` stays as it is.
                out.push('$');
                rest = after_dollar;
            }
        }
    }
    out.push_str(rest);
}

/// Splits `name rest` or `{name} rest` off the text after a `$`; `None` when malformed.
fn split_template_reference(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(inside) => (true, inside),
        None => (false, text),
    };
    let name_len: usize = body
        .chars()
        .take_while(|&c| super::is_go_letter(c) || super::is_go_digit(c) || c == '_')
        .map(char::len_utf8)
        .sum();
    if name_len == 0 {
        return None;
    }
    let name = body.get(..name_len)?;
    let after_name = body.get(name_len..)?;
    if braced {
        let after_brace = after_name.strip_prefix('}')?;
        return Some((name, after_brace));
    }
    Some((name, after_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_translation_escapes_regex_metacharacters() {
        let regex = pattern_to_regex("(()[]{\\}^$.\\*\\?|\\\\", true, true);
        assert!(regex.is_ok_and(|r| r.is_match("(()[]{}^$.*?|\\")));
    }

    #[test]
    fn invalid_escapes_are_rejected() {
        for pattern in ["\\", "\\x", "\\\\\\"] {
            assert!(pattern_to_regex(pattern, true, true).is_err(), "{pattern}");
        }
    }

    #[test]
    fn reversing_keeps_escape_pairs() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("👽\\🚀🖖"), "🖖\\🚀👽");
    }

    #[test]
    fn prefix_and_suffix_removal() -> Result<(), PatternError> {
        assert_eq!(remove_prefix("*x", "xxyy", false)?, "xyy");
        assert_eq!(remove_prefix("*x", "xxyy", true)?, "yy");
        assert_eq!(remove_suffix("y*", "xxyy", false)?, "xxy");
        assert_eq!(remove_suffix("y*", "xxyy", true)?, "xx");
        assert_eq!(remove_prefix("[a]", "[a]b", false)?, "b");
        assert_eq!(remove_suffix("국?", "한국어", false)?, "한");
        Ok(())
    }

    #[test]
    fn wildcards_do_not_cross_newlines() -> Result<(), PatternError> {
        assert_eq!(remove_prefix("*b", "a\nb", true)?, "a\nb");
        Ok(())
    }

    #[test]
    fn replace_all_follows_go_empty_match_rules() -> Result<(), PatternError> {
        assert_eq!(replace("", "-", "ab", true, usize::MAX)?, "-a-b-");
        assert_eq!(replace("*", "-", "ab", true, usize::MAX)?, "-");
        assert_eq!(replace("", "", "xxyy", true, usize::MAX)?, "xxyy");
        assert_eq!(replace("", "ww", "xxyy", false, usize::MAX)?, "wwxxyy");
        Ok(())
    }

    #[test]
    fn replace_all_expands_go_templates() -> Result<(), PatternError> {
        assert_eq!(replace("b", "[$0]", "abc", true, usize::MAX)?, "a[b]c");
        assert_eq!(replace("b", "[${0}]", "abc", true, usize::MAX)?, "a[b]c");
        assert_eq!(replace("b", "$$", "abc", true, usize::MAX)?, "a$c");
        assert_eq!(replace("b", "$1x", "abc", true, usize::MAX)?, "ac");
        assert_eq!(replace("b", "${1}x", "abc", true, usize::MAX)?, "axc");
        assert_eq!(replace("b", "$.", "abc", true, usize::MAX)?, "a$.c");
        assert_eq!(replace("b", "${x", "abc", true, usize::MAX)?, "a${xc");
        // The single replacement is literal.
        assert_eq!(replace("b", "$0", "abc", false, usize::MAX)?, "a$0c");
        Ok(())
    }
}
