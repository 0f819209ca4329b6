//! One module per subcommand: argument definitions and the command's output.

pub mod history;
pub mod image;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod rmi;
pub mod save;
pub mod store;
pub mod tag;
