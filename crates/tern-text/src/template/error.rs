//! Errors of the chat-template engine.
//!
//! Every variant that comes from a template names the template and, where known, the 1-based line of the
//! template source that failed together with that line's text, so that a broken or hostile template from a
//! model repository can be diagnosed from the message alone. The crate-wide `TextError` can wrap this type.

use std::fmt;
use std::path::PathBuf;

/// Where in a template source an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The template name (`default`, `tool_use`, ...).
    pub template: String,
    /// The 1-based line number in the template source.
    pub line: usize,
    /// The text of that line (whitespace-trimmed, at most 160 characters).
    pub text: String,
}

impl Location {
    /// Builds a location from a template source and a 1-based line number.
    pub(crate) fn from_source(template: &str, source: &str, line: usize) -> Location {
        let raw = source.lines().nth(line.saturating_sub(1)).unwrap_or("").trim();
        let mut text: String = raw.chars().take(160).collect();
        if raw.chars().nth(160).is_some() {
            text.push('…');
        }
        Location { template: template.to_string(), line, text }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template '{}' line {}: `{}`", self.template, self.line, self.text)
    }
}

/// Formats an optional location as a message suffix.
fn at(location: &Option<Location>) -> String {
    match location {
        Some(loc) => format!(" (at {loc})"),
        None => String::new(),
    }
}

/// Errors produced while loading, selecting or rendering a chat template.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Reading a template or tokenizer config file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A config file holding templates (`tokenizer_config.json`, `chat_template.json`) is malformed.
    #[error("malformed {path}: {message}")]
    Config {
        /// The file (or in-memory origin) that was parsed.
        path: String,
        /// What is wrong, with expected vs found.
        message: String,
    },
    /// A template name was requested that does not exist, or several templates exist and none is the default.
    #[error("no chat template named '{name}' (available: {available:?})")]
    NoSuchTemplate {
        /// The requested name (`default` when none was requested).
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// The template source does not parse.
    #[error("chat template syntax error: {message}{}", at(location))]
    Syntax {
        /// The parser's message.
        message: String,
        /// Where the error is.
        location: Option<Location>,
    },
    /// The template called `raise_exception(message)`.
    #[error("chat template raised an exception: {message}{}", at(location))]
    Raised {
        /// The message passed to `raise_exception`.
        message: String,
        /// Where `raise_exception` was called.
        location: Option<Location>,
    },
    /// Rendering used up its fuel budget (too much work or data for the input).
    #[error("chat template exceeded its fuel budget of {fuel}{}", at(location))]
    OutOfFuel {
        /// The budget that was given.
        fuel: u64,
        /// Where the budget ran out.
        location: Option<Location>,
    },
    /// The rendered prompt grew larger than the output cap.
    #[error("chat template output exceeds the cap of {limit} bytes{}", at(location))]
    OutputTooLarge {
        /// The cap in bytes.
        limit: usize,
        /// Where the output was being written.
        location: Option<Location>,
    },
    /// Any other failure while rendering (undefined attribute, type error, unknown filter, ...).
    #[error("chat template render error: {message}{}", at(location))]
    Render {
        /// The engine's message.
        message: String,
        /// Where it failed.
        location: Option<Location>,
    },
    /// The render request itself is invalid (a message that is not an object, nesting too deep, a reserved
    /// keyword argument, ...).
    #[error("invalid chat template input: {message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
    },
}

impl TemplateError {
    /// The template location of the error, if it has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            TemplateError::Syntax { location, .. }
            | TemplateError::Raised { location, .. }
            | TemplateError::OutOfFuel { location, .. }
            | TemplateError::OutputTooLarge { location, .. }
            | TemplateError::Render { location, .. } => location.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> TemplateError {
        TemplateError::InvalidInput { message: message.into() }
    }
}
