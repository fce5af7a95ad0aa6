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

/// The error a subcommand returns until the issue that builds it has landed: it prints no
/// fake output and makes the process exit non-zero.
pub fn not_yet(command: &str, issue: u32, what: &str) -> anyhow::Error {
    anyhow::anyhow!("`gitops {command}` is not implemented yet: {what} arrives with issue #{issue}")
}
