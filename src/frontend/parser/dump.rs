//! Go `strconv.Quote` for the BuildKit AST dump: `"` and `\` escaped, the C escapes
//! `\a \b \f \n \r \t \v`, `\xHH` for other ASCII controls, `\uHHHH` / `\UHHHHHHHH` for
//! non-printable Unicode, printable Unicode kept as UTF-8.

use std::fmt::Write;

/// Quotes `text` the way Go's `strconv.Quote` does.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_go_printable(c) => out.push(c),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7F}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
///
/// Without Unicode category tables this excludes what Go excludes in practice: controls,
/// every space separator except U+0020, line/paragraph separators, format characters,
/// private-use code points and noncharacters. Unassigned code points are treated as printable.
pub fn is_go_printable(ch: char) -> bool {
    let code = ch as u32;
    if code < 0x80 {
        return (0x20..0x7F).contains(&code);
    }
    if ch.is_control() || ch.is_whitespace() {
        return false;
    }
    let format_or_private = matches!(code,
        0x00AD
        | 0x0600..=0x0605
        | 0x061C
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x206F
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F
        | 0xE000..=0xF8FF
        | 0xF0000..=0x10FFFF
        | 0xFDD0..=0xFDEF
    );
    let noncharacter = code & 0xFFFE == 0xFFFE;
    !(format_or_private || noncharacter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\t\n\r\u{7}\u{8}\u{b}\u{c}"), r#""\t\n\r\a\b\v\f""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("\u{a0}\u{ad}\u{feff}"), r#""\u00a0\u00ad\ufeff""#);
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
        assert_eq!(go_quote("héllo 世界 🎉"), "\"héllo 世界 🎉\"");
    }
}
