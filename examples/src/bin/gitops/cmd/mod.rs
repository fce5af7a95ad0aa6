//! One module per subcommand. Each module owns its arguments and its `run`.

pub mod apply;
pub mod build;
pub mod diff;
pub mod notify;
pub mod push;
pub mod quickstart;
pub mod receive;
pub mod source;
pub mod template;
pub mod testcluster;
