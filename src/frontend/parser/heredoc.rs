//! Heredoc openers and bodies: recognising `[fd]<<[-]NAME` words on an instruction line,
//! quote removal on the name (quoting disables expansion), and `<<-` tab chomping.

use super::grammar;
use crate::frontend::ast::Heredoc;

/// Strips the leading tabs of every line of `content` (what `<<-` means).
pub fn chomp_heredoc(content: &str) -> String {
    content.split_inclusive('\n').map(|line| line.trim_start_matches('\t')).collect()
}

/// Is the single word `word` a heredoc opener? `Ok(Some(name))` with quotes removed,
/// `Ok(None)` when it is not one, `Err` when it is malformed (e.g. an unbalanced quote).
pub fn parse_heredoc_word(word: &str) -> Result<Option<String>, String> {
    heredoc_from_word(word).map(|doc| doc.map(|d| d.name))
}

/// Names of the heredocs opened on the instruction line `line`, in order.
pub fn heredoc_names_in_line(line: &str, escape: char) -> Vec<String> {
    heredocs_in_line(line, escape).map(|docs| docs.into_iter().map(|(doc, _)| doc.name).collect()).unwrap_or_default()
}

/// The heredoc described by one opener word, with empty content.
pub(crate) fn heredoc_from_word(word: &str) -> Result<Option<Heredoc>, String> {
    let Some(opener) = grammar::heredoc_opener(word) else {
        return Ok(None);
    };
    if opener.raw_name.is_empty() {
        return Ok(None);
    }
    let words = grammar::heredoc_name_words(opener.raw_name)?;
    let [(name, quoted)] = words.as_slice() else {
        return Ok(None);
    };
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: !quoted,
        chomp: opener.chomp,
        fd: opener.fd.parse().unwrap_or(0),
    }))
}

/// Every heredoc opened on `line` with the byte offset of its opener word. A line whose
/// quotes do not balance opens none (BuildKit ignores that lexing error); a malformed opener
/// word is an error `(offset, message)`.
pub(crate) fn heredocs_in_line(line: &str, escape: char) -> Result<Vec<(Heredoc, usize)>, (usize, String)> {
    let Some(words) = grammar::raw_shell_words(line, escape) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for (word, offset) in words {
        match heredoc_from_word(&word) {
            Ok(Some(doc)) => docs.push((doc, offset)),
            Ok(None) => {}
            Err(message) => return Err((offset, format!("invalid heredoc {word}: {message}"))),
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_words() {
        assert_eq!(parse_heredoc_word("<<EOF"), Ok(Some("EOF".into())));
        assert_eq!(parse_heredoc_word("<<-'EOF'"), Ok(Some("EOF".into())));
        assert_eq!(parse_heredoc_word("<<EO\"F\""), Ok(Some("EOF".into())));
        assert_eq!(parse_heredoc_word("<<- EOF"), Ok(Some("EOF".into())));
        assert!(parse_heredoc_word("<<\"EOF").is_err());
        for not_heredoc in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_heredoc_word(not_heredoc), Ok(None), "{not_heredoc}");
        }
    }

    #[test]
    fn expansion_and_fd() {
        let doc = heredoc_from_word("3<<-'e'o\\'f").unwrap().unwrap();
        assert_eq!((doc.name.as_str(), doc.expand, doc.chomp, doc.fd), ("eo'f", false, true, 3));
        let doc = heredoc_from_word("<<eo\\'f").unwrap().unwrap();
        assert_eq!((doc.name.as_str(), doc.expand), ("eo'f", true));
        let doc = heredoc_from_word("<<$EOF").unwrap().unwrap();
        assert_eq!(doc.name, "$EOF");
    }

    #[test]
    fn names_in_line() {
        assert_eq!(heredoc_names_in_line("RUN <<EOF <<EOF2", '\\'), vec!["EOF", "EOF2"]);
        assert_eq!(heredoc_names_in_line("RUN 4<<EOF", '\\'), vec!["EOF"]);
        assert_eq!(heredoc_names_in_line("RUN \"<<EOF\"", '\\'), Vec::<String>::new());
        assert_eq!(heredoc_names_in_line("RUN <<  EOF  > foo", '\\'), vec!["EOF"]);
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp_heredoc("\thello\n\t\tworld\n x\t\n"), "hello\nworld\n x\t\n");
    }
}
