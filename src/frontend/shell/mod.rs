//! Docker's shell-word and variable expansion, with the semantics of BuildKit's
//! `frontend/dockerfile/shell` package (its `Lex` type): quote removal, the Dockerfile escape
//! character, `$VAR` / `${VAR...}` substitution with the `-`, `+`, `?`, `#`, `%` and `/`
//! operators (with and without `:`), and splitting a word list on unquoted whitespace.
//!
//! This module owns only the text rules; it knows nothing about instructions. Callers hand it
//! one word (or a word list) and a [`VarLookup`] holding the variables in scope.
//!
//! Deliberate limits beyond BuildKit: `${...}` may nest at most [`MAX_NESTING`] deep (BuildKit
//! has no limit, but a Rust stack does), one expanded word may be at most
//! [`MAX_EXPANDED_BYTES`] long (BuildKit has no limit, so `ENV A=${A}${A}` repeated doubles
//! until memory runs out), and a `${` cut off right after the name reports
//! `syntax error: missing '}'` where BuildKit prints a replacement character as the modifier.

mod pattern;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::LazyLock;

use regex::Regex;

/// How deep `${...}` substitutions may nest inside one another.
pub const MAX_NESTING: usize = 200;

/// How long one expanded word may get, in bytes. Linux refuses a single environment string
/// over 128 KiB (`MAX_ARG_STRLEN`), so no RUN could use a longer value; the limit is well
/// above that to leave room for COPY heredoc bodies, and low enough that a doubling bomb stops
/// long before memory does.
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// Where expansion looks variables up. `None` means unset; `Some("")` is set but empty.
pub trait VarLookup {
    /// The value of the variable `name`, if it is set.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl VarLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: BuildHasher> VarLookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Dockerfile `ENV`/`ARG` order: the last entry with the name wins.
impl VarLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Dockerfile `ENV`/`ARG` order: the last entry with the name wins.
impl VarLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<T: VarLookup + ?Sized> VarLookup for &T {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// The expansion rules in force: the escape character plus BuildKit's `Lex` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellLex {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset_env: bool,
    skip_process_quotes: bool,
}

impl Default for ShellLex {
    fn default() -> Self {
        Self::new('\\')
    }
}

/// The result of expanding one word, with the variable names it looked up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The expanded word.
    pub value: String,
    /// Names that were looked up and set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Names that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// A word that cannot be expanded. `message` is BuildKit's wording without its
/// `failed to process "<word>": ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    /// What went wrong.
    pub message: String,
    /// Character (not byte) offset into the input word where the problem was detected.
    pub offset: usize,
}

impl ShellLex {
    /// Rules for a Dockerfile whose escape character is `escape` (`\` or `` ` ``).
    pub fn new(escape: char) -> Self {
        Self { escape, raw_quotes: false, raw_escapes: false, skip_unset_env: false, skip_process_quotes: false }
    }

    /// The escape character these rules use.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output (BuildKit `RawQuotes`).
    pub fn raw_quotes(self, on: bool) -> Self {
        Self { raw_quotes: on, ..self }
    }

    /// Keep escape characters in the output (BuildKit `RawEscapes`).
    pub fn raw_escapes(self, on: bool) -> Self {
        Self { raw_escapes: on, ..self }
    }

    /// Leave references to unset variables as written (BuildKit `SkipUnsetEnv`).
    pub fn skip_unset_env(self, on: bool) -> Self {
        Self { skip_unset_env: on, ..self }
    }

    /// Treat quote characters as ordinary characters (BuildKit `SkipProcessQuotes`).
    pub fn skip_process_quotes(self, on: bool) -> Self {
        Self { skip_process_quotes: on, ..self }
    }

    /// Expands `word` as one word: quotes removed, variables substituted, no splitting.
    pub fn process_word(&self, word: &str, env: &dyn VarLookup) -> Result<String, ShellError> {
        Ok(self.process_word_with_matches(word, env)?.value)
    }

    /// Like [`ShellLex::process_word`], also reporting which variables were looked up.
    pub fn process_word_with_matches(&self, word: &str, env: &dyn VarLookup) -> Result<Expansion, ShellError> {
        let mut expander = Expander::new(*self, word, env);
        let expanded = expander.expand_until(None, self.raw_escapes)?;
        Ok(Expansion { value: expanded.value, matched: expander.matched, unmatched: expander.unmatched })
    }

    /// Expands `input` and splits it into words on unquoted whitespace, including whitespace
    /// that comes from the value of an unquoted variable. Quoted text is never split. Like
    /// BuildKit, a word must have at least one character: `""` on its own yields no word.
    pub fn process_words(&self, input: &str, env: &dyn VarLookup) -> Result<Vec<String>, ShellError> {
        let mut expander = Expander::new(*self, input, env);
        Ok(expander.expand_until(None, self.raw_escapes)?.words)
    }
}

/// The message for a word longer than [`MAX_EXPANDED_BYTES`].
fn too_long(len: usize) -> String {
    format!(
        "variable expansion is too long: {len} bytes or more, over the limit of {} bytes (does a variable refer to itself, as in A=${{A}}${{A}}?)",
        MAX_EXPANDED_BYTES
    )
}

/// Shell special parameters (`$@`, `$*`, `$#`, ...): one character names. They are never set
/// by a Dockerfile but are looked up like any other name.
fn is_special_parameter(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

static UNICODE_LETTER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A\p{L}\z").ok());
static UNICODE_DECIMAL_DIGIT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A\p{Nd}\z").ok());

/// Go's `unicode.IsLetter`: general category L.
fn is_go_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    match UNICODE_LETTER.as_ref() {
        Some(letter) => letter.is_match(c.encode_utf8(&mut [0; 4])),
        None => c.is_alphabetic(),
    }
}

/// Go's `unicode.IsDigit`: general category Nd.
fn is_go_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    match UNICODE_DECIMAL_DIGIT.as_ref() {
        Some(digit) => digit.is_match(c.encode_utf8(&mut [0; 4])),
        None => c.is_numeric(),
    }
}

/// Collects words while text is expanded. Characters from unquoted text and unquoted variable
/// values split on whitespace; quoted text and escaped characters never split. A word is only
/// emitted when it has at least one character.
#[derive(Default)]
struct WordSplitter {
    current: String,
    words: Vec<String>,
    in_word: bool,
}

impl WordSplitter {
    fn push_splitting_char(&mut self, c: char) {
        if !c.is_whitespace() {
            self.push_literal_char(c);
        } else if self.in_word && !self.current.is_empty() {
            self.words.push(std::mem::take(&mut self.current));
            self.in_word = false;
        }
    }

    fn push_literal_char(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }

    fn push_splitting_str(&mut self, text: &str) {
        text.chars().for_each(|c| self.push_splitting_char(c));
    }

    fn push_literal_str(&mut self, text: &str) {
        self.current.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.words.push(self.current);
        }
        self.words
    }
}

/// Expanded text plus the words it splits into.
struct Expanded {
    value: String,
    words: Vec<String>,
}

/// One expansion run over one input, reading it character by character.
struct Expander<'env> {
    rules: ShellLex,
    input: Vec<char>,
    position: usize,
    env: &'env dyn VarLookup,
    nesting: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'env> Expander<'env> {
    fn new(rules: ShellLex, input: &str, env: &'env dyn VarLookup) -> Self {
        let input: Vec<char> = input.chars().collect();
        // BuildKit reads words with Go's text/scanner, which skips a leading byte-order mark.
        let position = usize::from(input.first() == Some(&'\u{FEFF}'));
        Self { rules, input, position, env, nesting: 0, matched: BTreeSet::new(), unmatched: BTreeSet::new() }
    }

    fn peek(&self) -> Option<char> {
        self.input.get(self.position).copied()
    }

    fn advance(&mut self) -> Option<char> {
        let current = self.peek();
        if current.is_some() {
            self.position += 1;
        }
        current
    }

    fn error(&self, message: impl Into<String>) -> ShellError {
        ShellError { message: message.into(), offset: self.position }
    }

    /// Refuses a word that would grow past [`MAX_EXPANDED_BYTES`].
    fn check_size(&self, len: usize) -> Result<(), ShellError> {
        if len > MAX_EXPANDED_BYTES {
            return Err(self.error(too_long(len)));
        }
        Ok(())
    }

    fn missing_closing_brace(&self) -> ShellError {
        self.error("syntax error: missing '}'")
    }

    /// Looks `name` up and records whether it was set.
    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(value) => {
                self.matched.insert(name.to_owned());
                Some(value.to_owned())
            }
            None => {
                self.unmatched.insert(name.to_owned());
                None
            }
        }
    }

    /// Expands until `stop` (consumed, not part of the result) or, with `stop == None`, the end
    /// of the input. `raw_escapes` keeps escape characters in the output.
    fn expand_until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<Expanded, ShellError> {
        let mut value = String::new();
        let mut words = WordSplitter::default();
        let process_quotes = !self.rules.skip_process_quotes;
        while let Some(current) = self.peek() {
            if stop == Some(current) {
                self.position += 1;
                return Ok(Expanded { value, words: words.finish() });
            }
            match current {
                '$' => {
                    let substituted = self.expand_dollar()?;
                    self.check_size(value.len() + substituted.len())?;
                    words.push_splitting_str(&substituted);
                    value.push_str(&substituted);
                }
                '\'' if process_quotes => {
                    let quoted = self.single_quoted()?;
                    words.push_literal_str(&quoted);
                    value.push_str(&quoted);
                }
                '"' if process_quotes => {
                    let quoted = self.double_quoted(raw_escapes)?;
                    words.push_literal_str(&quoted);
                    value.push_str(&quoted);
                }
                _ => {
                    self.position += 1;
                    if current == self.rules.escape {
                        if raw_escapes {
                            words.push_literal_char(current);
                            value.push(current);
                        }
                        // The escape makes the next character literal; at the end it is dropped.
                        let Some(escaped) = self.advance() else {
                            break;
                        };
                        words.push_literal_char(escaped);
                        value.push(escaped);
                    } else {
                        words.push_splitting_char(current);
                        value.push(current);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(self.error(format!("unexpected end of statement while looking for matching {stop}")));
        }
        Ok(Expanded { value, words: words.finish() })
    }

    /// `'...'`: everything up to the next `'` is literal; there is no way to escape `'`.
    fn single_quoted(&mut self) -> Result<String, ShellError> {
        let mut quoted = String::new();
        if let Some(open) = self.advance() {
            if self.rules.raw_quotes {
                quoted.push(open);
            }
        }
        loop {
            match self.advance() {
                None => return Err(self.error("unexpected end of statement while looking for matching single-quote")),
                Some('\'') => {
                    if self.rules.raw_quotes {
                        quoted.push('\'');
                    }
                    return Ok(quoted);
                }
                Some(c) => quoted.push(c),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character escapes only `"`, `$` and itself and is
    /// kept before any other character.
    fn double_quoted(&mut self, raw_escapes: bool) -> Result<String, ShellError> {
        let mut quoted = String::new();
        if let Some(open) = self.advance() {
            if self.rules.raw_quotes {
                quoted.push(open);
            }
        }
        loop {
            match self.peek() {
                None => return Err(self.error("unexpected end of statement while looking for matching double-quote")),
                Some('"') => {
                    self.position += 1;
                    if self.rules.raw_quotes {
                        quoted.push('"');
                    }
                    return Ok(quoted);
                }
                Some('$') => {
                    let substituted = self.expand_dollar()?;
                    self.check_size(quoted.len() + substituted.len())?;
                    quoted.push_str(&substituted);
                }
                Some(current) => {
                    self.position += 1;
                    let mut literal = current;
                    if current == self.rules.escape {
                        if raw_escapes {
                            quoted.push(current);
                        }
                        match self.peek() {
                            // A trailing escape is ignored; the missing `"` is reported next.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.rules.escape => {
                                self.position += 1;
                                literal = next;
                            }
                            Some(_) => {}
                        }
                    }
                    quoted.push(literal);
                }
            }
        }
    }

    /// Reads a parameter name: a run of decimal digits (positional), one special-parameter
    /// character, or letters, digits and `_`. Empty when none of those follows.
    fn read_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(current) = self.peek() {
            if name.is_empty() && is_go_digit(current) {
                while let Some(digit) = self.peek().filter(|&c| is_go_digit(c)) {
                    name.push(digit);
                    self.position += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(current) {
                self.position += 1;
                return current.to_string();
            }
            if !(is_go_letter(current) || is_go_digit(current) || current == '_') {
                break;
            }
            self.position += 1;
            name.push(current);
        }
        name
    }

    /// Expands the `$...` at the current position.
    fn expand_dollar(&mut self) -> Result<String, ShellError> {
        self.position += 1; // the `$`
        if self.peek() != Some('{') {
            let name = self.read_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.rules.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        if self.nesting >= MAX_NESTING {
            return Err(self.error(format!("substitutions nested more than {MAX_NESTING} deep")));
        }
        self.nesting += 1;
        let expanded = self.expand_braced();
        self.nesting -= 1;
        expanded
    }

    /// Maps an error from the word inside `${...}`: running out of input means the closing
    /// `}` is missing, anything else is passed on.
    fn end_of_input_means(&self, error: ShellError, message: &str) -> ShellError {
        if self.peek().is_none() {
            self.error(message)
        } else {
            error
        }
    }

    /// `${...}`, positioned on the `{`.
    fn expand_braced(&mut self) -> Result<String, ShellError> {
        self.position += 1; // the `{`
        match self.peek() {
            None => return Err(self.missing_closing_brace()),
            Some('{' | '}' | ':') => return Err(self.error("syntax error: bad substitution")),
            Some(_) => {}
        }
        let name = self.read_name();
        let Some(operator) = self.advance() else {
            return Err(self.missing_closing_brace());
        };
        match operator {
            '}' => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.rules.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => match self.advance() {
                // `${NAME:` at the end of the input.
                None => Err(self.missing_closing_brace()),
                Some(modifier) => self.expand_modifier(&name, modifier, true),
            },
            '+' | '-' | '?' | '#' | '%' => self.expand_modifier(&name, operator, false),
            '/' => self.expand_replacement(&name),
            other => Err(self.error(format!("unsupported modifier ({other}) in substitution"))),
        }
    }

    /// `${NAME<modifier>word}` and, with `null_is_unset`, `${NAME:<modifier>word}`; positioned
    /// just after the modifier.
    fn expand_modifier(&mut self, name: &str, modifier: char, null_is_unset: bool) -> Result<String, ShellError> {
        let modifier_text = if null_is_unset { format!(":{modifier}") } else { modifier.to_string() };
        let takes_pattern = modifier == '#' || modifier == '%';
        if null_is_unset && takes_pattern {
            return Err(self.error(format!("unsupported modifier ({modifier_text}) in substitution")));
        }
        // Patterns keep their escapes so `\*` stays a literal star for the matcher.
        let word = match self.expand_until(Some('}'), takes_pattern) {
            Ok(expanded) => expanded.value,
            Err(error) => return Err(self.end_of_input_means(error, "syntax error: missing '}'")),
        };

        let value = self.lookup(name);
        if value.is_none() && self.rules.skip_unset_env {
            return Ok(format!("${{{name}{modifier_text}{word}}}"));
        }
        let is_set = value.is_some();
        let value = value.unwrap_or_default();
        let counts_as_unset = !is_set || (null_is_unset && value.is_empty());
        match modifier {
            '-' if counts_as_unset => Ok(word),
            '-' => Ok(value),
            '+' if counts_as_unset => Ok(String::new()),
            '+' => Ok(word),
            '?' if !is_set => Err(self.mandatory_error(name, &word, "is not allowed to be unset")),
            '?' if counts_as_unset => Err(self.mandatory_error(name, &word, "is not allowed to be empty")),
            '?' => Ok(value),
            '#' | '%' => self.trim(&word, &value, modifier),
            _ => Err(self.error(format!("unsupported modifier ({modifier_text}) in substitution"))),
        }
    }

    /// The error for `${NAME?message}` / `${NAME:?message}`.
    fn mandatory_error(&self, name: &str, message: &str, default_message: &str) -> ShellError {
        let message = if message.is_empty() { default_message } else { message };
        self.error(format!("{name}: {message}"))
    }

    /// `${NAME#p}`, `${NAME##p}`, `${NAME%p}`, `${NAME%%p}`. The doubled operator is recognised
    /// on the expanded word, as BuildKit does.
    fn trim(&self, word: &str, value: &str, operator: char) -> Result<String, ShellError> {
        let (greedy, pattern_text) = match word.strip_prefix(operator) {
            Some(rest) => (true, rest),
            None => (false, word),
        };
        let trimmed = if operator == '%' {
            pattern::remove_suffix(pattern_text, value, greedy)
        } else {
            pattern::remove_prefix(pattern_text, value, greedy)
        };
        trimmed.map_err(|e| self.error(e.to_string()))
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`, positioned after the
    /// first `/`.
    fn expand_replacement(&mut self, name: &str) -> Result<String, ShellError> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.position += 1;
        }
        let pattern_text = match self.expand_until(Some('/'), true) {
            Ok(expanded) => expanded.value,
            Err(error) => return Err(self.end_of_input_means(error, "syntax error: missing '/' in ${}")),
        };
        let replacement = match self.expand_until(Some('}'), true) {
            Ok(expanded) => expanded.value,
            Err(error) => return Err(self.end_of_input_means(error, "syntax error: missing '}'")),
        };
        let value = self.lookup(name);
        if value.is_none() && self.rules.skip_unset_env {
            // BuildKit writes a single `/` here even for `//`.
            return Ok(format!("${{{name}/{pattern_text}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        pattern::replace(&pattern_text, &replacement, &value, replace_all, MAX_EXPANDED_BYTES)
            .map_err(|e| self.error(e.to_string()))
    }
}
