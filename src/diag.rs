//! Diagnostics for configuration and mapping files: every error with file, line and column,
//! collected and reported together, never a panic.

use std::fmt;
use std::path::{Path, PathBuf};

use marked_yaml::{Node, Span};
use serde::de::DeserializeOwned;

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Collects diagnostics for one file at a time.
#[derive(Debug, Default)]
pub struct Diags {
    pub all: Vec<Diag>,
}

impl Diags {
    pub fn at(&mut self, file: &Path, span: &Span, message: impl Into<String>) {
        let (line, column) = span
            .start()
            .map(|m| (m.line(), m.column()))
            .unwrap_or((1, 1));
        self.all.push(Diag {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    pub fn file(&mut self, file: &Path, message: impl Into<String>) {
        self.all.push(Diag {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn extend(&mut self, other: Diags) {
        self.all.extend(other.all);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.all {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        out
    }
}

/// Reads and parses a YAML file into a node tree with positions.
pub fn load(path: &Path, diags: &mut Diags) -> Option<Node> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.file(path, format!("cannot read file: {e}"));
            return None;
        }
    };
    parse(path, &text, diags)
}

pub fn parse(path: &Path, text: &str, diags: &mut Diags) -> Option<Node> {
    let opts = marked_yaml::LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .toplevel_mapping();
    match marked_yaml::parse_yaml_with_options(0, text, opts) {
        Ok(node) => Some(node),
        Err(e) => {
            let (line, column) = load_error_position(&e);
            diags.all.push(Diag {
                file: path.to_path_buf(),
                line,
                column,
                message: format!("invalid YAML: {e}"),
            });
            None
        }
    }
}

fn load_error_position(e: &marked_yaml::LoadError) -> (usize, usize) {
    use marked_yaml::LoadError as E;
    let marker = match e {
        E::TopLevelMustBeMapping(m)
        | E::TopLevelMustBeSequence(m)
        | E::UnexpectedAnchor(m)
        | E::MappingKeyMustBeScalar(m)
        | E::UnexpectedTag(m) => Some(*m),
        E::ScanError(m, _) => Some(*m),
        E::DuplicateKey(d) => d.key.span().start().copied(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    marker.map(|m| (m.line(), m.column())).unwrap_or((1, 1))
}

/// Deserializes a node into a raw struct, recording the error (with its position) on failure.
pub fn de<T: DeserializeOwned>(path: &Path, node: &Node, diags: &mut Diags) -> Option<T> {
    match marked_yaml::from_node::<T>(node) {
        Ok(v) => Some(v),
        Err(e) => {
            let span = e
                .start_mark()
                .map(Span::new_start)
                .unwrap_or_else(|| *node.span());
            let msg = match &*e {
                marked_yaml::spanned_serde::Error::UnknownFieldError(field, expected, _) => {
                    format!(
                        "unknown key `{field}` (expected one of: {})",
                        expected.join(", ")
                    )
                }
                other => other.to_string(),
            };
            diags.at(path, &span, msg);
            None
        }
    }
}

/// The entries of a mapping node, each deserialized on its own so that one bad entry does
/// not hide the errors of the others.
pub fn de_entries<T: DeserializeOwned>(
    path: &Path,
    node: Option<&Node>,
    diags: &mut Diags,
) -> Vec<(marked_yaml::types::MarkedScalarNode, T)> {
    let mut out = Vec::new();
    let Some(node) = node else { return out };
    let Some(map) = node.as_mapping() else {
        diags.at(path, node.span(), "expected a mapping");
        return out;
    };
    for (k, v) in map.iter() {
        if let Some(t) = de::<T>(path, v, diags) {
            out.push((k.clone(), t));
        }
    }
    out
}
