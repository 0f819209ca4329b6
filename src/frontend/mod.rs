//! The Dockerfile front end: text to AST (lexer + pest grammar), variable expansion, typed
//! instructions, and lowering to a [`crate::plan::BuildPlan`]. It reads nothing but the
//! Dockerfile it is given.

pub mod ast;
pub mod diagnostic;
pub mod instructions;
pub mod lower;
pub mod parser;
pub mod shell;

pub use diagnostic::Diagnostic;
