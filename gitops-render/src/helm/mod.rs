//! A native Helm chart engine whose output is the same as `helm template` (Helm 3.17).
//!
//! The pieces, in the order a render uses them:
//! - [`chart`]: loading a chart directory or `.tgz` (Chart.yaml v1/v2, values, schema,
//!   templates, `charts/`, `crds/`, `.helmignore`, library charts);
//! - [`values`]: Helm's value computation (defaults, subchart scoping, globals,
//!   condition/tags/alias/import-values, `--set` parsing, `null` deleting a key);
//! - [`schema`]: `values.schema.json` validation with Helm's messages;
//! - [`template`]: our own Go `text/template` engine (lexer, parser, executor) with Go's
//!   semantics, and [`funcs`]: Sprig plus Helm's functions;
//! - [`render`]: per-chart data (`.Values`, `.Chart`, `.Release`, `.Capabilities`, `.Files`,
//!   `.Template`, `.Subcharts`), execution, Helm's install-order sorting and output.
//!
//! Values keep Go's model ([`value::Value`]): YAML numbers are `float64`, maps are shared by
//! reference and iterate in key order; [`yaml`] reads and writes YAML the way
//! `sigs.k8s.io/yaml` over go-yaml v2 does.

pub mod chart;
mod crypto;
mod dates;
mod encoding;
pub mod funcs;
mod head;
pub mod lookup;
pub mod render;
pub mod schema;
pub mod semver;
pub mod template;
pub mod value;
pub mod values;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use lookup::{Lookup, LookupError};
pub use render::{DEFAULT_KUBE_VERSION, RenderOptions, Rendered};
pub use value::Value;

/// Why a chart failed to load or render. `Display` gives Helm's message.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The chart is malformed or cannot be installed.
    #[error("{message}")]
    Chart {
        /// The chart (name or path).
        chart: String,
        /// Helm's message.
        message: String,
    },
    /// A values file or `--set` argument is invalid.
    #[error("{0}")]
    Values(String),
    /// The values do not satisfy `values.schema.json`.
    #[error("{0}")]
    Schema(String),
    /// A template does not parse: `parse error at (file:line): message`.
    #[error("{0}")]
    Parse(String),
    /// A template failed: `execution error at (file:line:col): message` or Go's own message.
    #[error("{0}")]
    Exec(String),
    /// A rendered document is not valid YAML.
    #[error("YAML parse error on {source_path}: {message}")]
    Yaml {
        /// The template that produced it.
        source_path: String,
        /// The parser's message.
        message: String,
    },
    /// include/tpl/template nested deeper than the limit (Helm's infinite-recursion guard).
    #[error(
        "template: {template}: rendering template has a nested reference name: {name}: unable to execute template"
    )]
    RecursionLimit {
        /// The template being rendered.
        template: String,
        /// The template name that recursed.
        name: String,
    },
    /// One template produced more output than allowed.
    #[error("template {template}: output exceeds the limit of {limit} bytes")]
    OutputLimit {
        /// The template being rendered.
        template: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Rendering took longer than allowed.
    #[error("template {template}: rendering exceeded its time limit")]
    Timeout {
        /// The template being rendered when time ran out.
        template: String,
    },
}

/// Reads a values file (`-f`) the way Helm does.
pub fn read_values_file(path: &Path) -> Result<Value, HelmError> {
    let text = std::fs::read_to_string(path).map_err(|e| HelmError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    match yaml::parse(&text) {
        Ok(Value::Nil) => Ok(Value::new_map()),
        Ok(v @ Value::Map(_)) => Ok(v),
        Ok(_) => Err(HelmError::Values(format!(
            "failed to parse {}: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type map[string]interface {{}}",
            path.display()
        ))),
        Err(e) => Err(HelmError::Values(format!(
            "failed to parse {}: {e}",
            path.display()
        ))),
    }
}

/// Loads the chart at `path` (directory or `.tgz`) and renders it as `helm template` does.
pub fn template(path: &Path, opts: &RenderOptions) -> Result<Rendered, HelmError> {
    let chart = chart::load(path)?;
    render::render(chart, opts)
}
