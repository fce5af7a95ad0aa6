//! Go's `text/template`, written for Helm: a lexer and parser with Go's positions and
//! messages, and an executor with Go's semantics (truthiness, sorted map iteration,
//! `break`/`continue`, short-circuit `and`/`or` returning operands, `<no value>`).

pub mod exec;
pub mod parse;

pub use exec::{Exec, ExecError, FastHash, Func, FuncError, FuncMap, FuncResult, Limits};
pub use parse::{ParseError, Parsed, Set, Tree, parse};
