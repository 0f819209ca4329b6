//! Conformance suites over the shared data in `testdata/conformance/`: the parser, shell
//! expansion, `.dockerignore`, and the real-world corpus; one generated test per case.

mod dockerignore;
mod parser;
mod realworld;
mod shell;
