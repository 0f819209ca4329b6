//! Container commands (`run ps logs stop start rm diff commit export`), and umoci's view of
//! what `commit` makes.

mod cli;
mod umoci;
