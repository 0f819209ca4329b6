//! The Dockerfile front end through the library: lowering to a plan, and parser properties.

mod lowering;
mod properties;
