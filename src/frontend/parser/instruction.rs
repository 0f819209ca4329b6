//! Builds one [`Node`] from a logical line: splits keyword/flags/rest with the grammar and
//! dispatches the rest per keyword the way BuildKit's line parsers do (JSON or shell form,
//! ENV/LABEL pairs, ARG words, whitespace words, HEALTHCHECK, ONBUILD child).

use super::grammar;
use super::lexer::{LogicalLine, SourceText};
use crate::frontend::ast::Node;
use crate::frontend::diagnostic::Diagnostic;

/// Where an instruction's text sits, for diagnostics.
pub(crate) struct LineContext<'a> {
    pub logical: &'a LogicalLine,
    pub src: &'a SourceText<'a>,
    pub escape: char,
}

impl LineContext<'_> {
    fn error_at(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.logical.position(offset);
        self.src.error(line, column, message)
    }
}

/// How many ONBUILD wrappers one line may nest before we refuse it (BuildKit rejects any
/// nesting at dispatch; the cap only keeps the recursion bounded on hostile input).
const MAX_ONBUILD_DEPTH: usize = 16;

/// Parses `text` (a slice of the logical line starting at byte `base`) as one instruction.
pub(crate) fn build_node(text: &str, base: usize, ctx: &LineContext<'_>) -> Result<Node, Diagnostic> {
    build_nested_node(text, base, ctx, 0)
}

fn build_nested_node(text: &str, base: usize, ctx: &LineContext<'_>, depth: usize) -> Result<Node, Diagnostic> {
    let trimmed_start = text.trim_start();
    let base = base + (text.len() - trimmed_start.len());
    let line = trimmed_start.trim_end();
    let head = grammar::split_instruction(line).map_err(|e| ctx.error_at(base + e.offset, e.message))?;
    let rest_untrimmed = head.rest;
    let rest = rest_untrimmed.trim();
    let rest_base = base + head.rest_offset + (rest_untrimmed.len() - rest_untrimmed.trim_start().len());
    let keyword_upper = head.keyword.to_uppercase();

    let mut node = Node {
        keyword: head.keyword.to_string(),
        flags: head.flags,
        args: Vec::new(),
        json: false,
        heredocs: Vec::new(),
        original: text.to_string(),
        start_line: ctx.logical.start_line,
        end_line: ctx.logical.end_line,
        child: None,
    };
    let bad_json = |offset| {
        ctx.error_at(
            offset,
            format!(
                "{keyword_upper}: bad JSON form: when using JSON array syntax, arrays must be comprised of strings only"
            ),
        )
    };

    match keyword_upper.to_lowercase().as_str() {
        "add" | "copy" | "volume" => match maybe_json(rest) {
            JsonForm::Strings(args) => (node.args, node.json) = (args, true),
            JsonForm::NotStrings => return Err(bad_json(rest_base)),
            JsonForm::NotJson => node.args = whitespace_words(rest),
        },
        "run" | "cmd" | "entrypoint" | "shell" => {
            (node.args, node.json) = shell_or_json(rest).ok_or_else(|| bad_json(rest_base))?;
        }
        "env" | "label" => node.args = name_values(rest, rest_base, &keyword_upper, ctx)?,
        "arg" => node.args = grammar::escaped_words(rest, ctx.escape).into_iter().map(|(w, _)| w).collect(),
        "expose" | "from" => node.args = whitespace_words(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args.push(rest.to_string());
        }
        "healthcheck" => {
            let type_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if type_end > 0 {
                let (kind, after) = rest.split_at(type_end);
                let command = after.trim_start();
                let command_base = rest_base + rest.len() - command.len();
                let (args, json) = shell_or_json(command).ok_or_else(|| bad_json(command_base))?;
                node.args.push(kind.to_string());
                node.args.extend(args);
                node.json = json;
            }
        }
        "onbuild" => {
            if depth >= MAX_ONBUILD_DEPTH {
                return Err(ctx.error_at(rest_base, "ONBUILD instructions nested too deeply"));
            }
            if !rest.is_empty() {
                node.child = Some(Box::new(build_nested_node(rest, rest_base, ctx, depth + 1)?));
            }
        }
        _ => {}
    }
    Ok(node)
}

enum JsonForm {
    Strings(Vec<String>),
    NotStrings,
    NotJson,
}

/// BuildKit `parseJSON`: a JSON array of strings, a valid JSON array of something else, or
/// not a JSON array at all.
fn maybe_json(rest: &str) -> JsonForm {
    if !rest.trim_start().starts_with('[') {
        return JsonForm::NotJson;
    }
    if let Some(args) = grammar::json_string_array(rest) {
        return JsonForm::Strings(args);
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Ok(values) => {
            let strings: Option<Vec<String>> = values.into_iter().map(|v| v.as_str().map(str::to_string)).collect();
            strings.map_or(JsonForm::NotStrings, JsonForm::Strings)
        }
        Err(_) => JsonForm::NotJson,
    }
}

/// RUN/CMD/ENTRYPOINT/SHELL: JSON string array, else the whole rest as one argument.
/// `None` for a JSON array that is not all strings.
fn shell_or_json(rest: &str) -> Option<(Vec<String>, bool)> {
    if rest.is_empty() {
        return Some((Vec::new(), false));
    }
    match maybe_json(rest) {
        JsonForm::Strings(args) => Some((args, true)),
        JsonForm::NotStrings => None,
        JsonForm::NotJson => Some((vec![rest.to_string()], false)),
    }
}

fn whitespace_words(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    grammar::spaced_words(rest)
}

/// ENV/LABEL: `key value` (legacy, sep "") or `k=v k2=v2` (sep "="), as key/value/sep triples.
fn name_values(rest: &str, rest_base: usize, keyword: &str, ctx: &LineContext<'_>) -> Result<Vec<String>, Diagnostic> {
    let words = grammar::escaped_words(rest, ctx.escape);
    let Some((first, _)) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let blank = |c: char| matches!(c, ' ' | '\t' | '\u{0B}' | '\u{0C}' | '\r');
        let Some(split) = rest.find(blank) else {
            return Err(ctx.error_at(
                rest_base,
                format!("{keyword} must have two arguments: {first:?} has no value (use {keyword} {first}=value)"),
            ));
        };
        let (key, after) = rest.split_at(split);
        let value = after.trim_start_matches(blank);
        return Ok(vec![key.to_string(), value.to_string(), String::new()]);
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for (word, offset) in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ctx.error_at(
                rest_base + offset,
                format!("{keyword}: Syntax error - can't find = in {word:?}. Must be of the form: name=value"),
            ));
        };
        args.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(args)
}
