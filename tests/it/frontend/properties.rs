//! Property test of the whole front end: 10,000 generated and mutated Dockerfiles per run go
//! through parse and lowering. Nothing may panic; errors must point inside the file; the same
//! text must always give the same plan.

use proptest::prelude::*;
use rbuild::frontend::lower::{parse_and_lower, LowerOptions};
use rbuild::frontend::parser::parse;

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "from",
    "Run",
    "BOGUS",
];

const WORDS: &[&str] = &[
    "busybox",
    "alpine:3.19",
    "AS",
    "build",
    "$VAR",
    "${VAR}",
    "${VAR:-def}",
    "${VAR:+alt}",
    "${VAR:?must}",
    "${VAR#*/}",
    "${VAR%%.*}",
    "${VAR/a/b}",
    "\"quoted word\"",
    "'single'",
    "\\$x",
    "a=b",
    "k=\"v w\"",
    "=",
    "[",
    "]",
    "[\"sh\",\"-c\"]",
    "[\"a\", [\"b\"]]",
    "<<EOF",
    "<<-EOT",
    "<<'Q'",
    "3<<X",
    "--from=build",
    "--chown=1:1",
    "--mount=type=cache,target=/c",
    "--mount=type=bind",
    "--link",
    "--network=none",
    "--platform=$BUILDPLATFORM",
    "--interval=5s",
    "--bogus",
    "--",
    "NONE",
    "CMD",
    "80/tcp",
    "/app/",
    ".",
    "src/*.rs",
    "`",
    "\\",
    "#",
    "\t",
    "한국어",
    "$",
    "${",
    "}",
    "${VAR",
    "$(x)",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(WORDS).prop_map(str::to_string),
        2 => "[a-zA-Z0-9_./:=$-]{1,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (prop::sample::select(KEYWORDS), prop::collection::vec(word(), 0..6))
            .prop_map(|(k, ws)| format!("{k} {}", ws.join(" "))),
        1 => Just(String::new()),
        1 => Just("# a comment".to_string()),
        1 => Just("# escape=`".to_string()),
        1 => Just("# syntax=docker/dockerfile:1".to_string()),
        1 => Just("EOF".to_string()),
        1 => Just("\tEOT".to_string()),
        1 => Just("  continued \\".to_string()),
        1 => Just("RUN echo a \\".to_string()),
        1 => Just("COPY <<A <<B /d".to_string()),
    ]
}

fn dockerfile() -> impl Strategy<Value = String> {
    let lines = prop::collection::vec(line(), 0..14).prop_map(|ls| {
        let mut text = String::from("FROM busybox AS base\n");
        for l in ls {
            text.push_str(&l);
            text.push('\n');
        }
        text
    });
    // Mutations: cut the text short, insert a random character, drop the final newline, CRLF.
    (lines, 0usize..4, any::<usize>(), any::<char>()).prop_map(|(text, mutation, at, ch)| {
        let chars: Vec<char> = text.chars().collect();
        let at = if chars.is_empty() { 0 } else { at % chars.len() };
        match mutation {
            0 => chars[..at].iter().collect(),
            1 => {
                let mut c = chars;
                c.insert(at, ch);
                c.into_iter().collect()
            }
            2 => text.replace('\n', "\r\n"),
            _ => text,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_lower_never_panic(text in dockerfile(), set_var in any::<bool>()) {
        let line_count = text.split('\n').count();
        let mut opts = LowerOptions::default();
        if set_var {
            opts.build_args.insert("VAR".into(), "x/y.z".into());
        }
        match parse_and_lower(&text, "Dockerfile", &opts) {
            Ok(plan) => {
                let again = parse_and_lower(&text, "Dockerfile", &opts);
                prop_assert_eq!(Some(&plan), again.as_ref().ok());
                prop_assert!(plan.step_count() >= 1);
            }
            Err(e) => {
                prop_assert!(e.line >= 1 && e.line <= line_count + 1, "line {} of {}: {}", e.line, line_count, e.render());
                prop_assert!(e.column >= 1);
                prop_assert!(!e.message.is_empty());
            }
        }
        if let Ok(df) = parse(&text, "Dockerfile") {
            let dump = df.dump();
            prop_assert_eq!(dump.lines().count(), df.instructions.len());
        }
    }
}
