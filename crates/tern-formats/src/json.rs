//! Reading JSON config files with errors that name the file and the field.

use crate::{FormatError, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// A parsed JSON object plus the path it came from, for error messages.
#[derive(Clone, Debug)]
pub struct JsonFile {
    pub path: String,
    pub root: Map<String, Value>,
}

impl JsonFile {
    /// Reads and parses `path`; the top level must be an object.
    pub fn read(path: &Path) -> Result<JsonFile> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FormatError::Io { path: p.clone(), source })?;
        Self::parse(&p, &text)
    }

    /// Parses text (named `path` in errors).
    pub fn parse(path: &str, text: &str) -> Result<JsonFile> {
        let v: Value =
            serde_json::from_str(text).map_err(|source| FormatError::Json { path: path.to_string(), source })?;
        match v {
            Value::Object(root) => Ok(JsonFile { path: path.to_string(), root }),
            _ => Err(FormatError::Field {
                path: path.to_string(),
                field: "<root>".into(),
                reason: "expected a JSON object".into(),
            }),
        }
    }

    /// A view of a nested object (e.g. `quantization_config`), keeping the path for errors.
    pub fn object(&self, field: &str) -> Result<Option<JsonFile>> {
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(JsonFile { path: format!("{}#{}", self.path, field), root: m.clone() })),
            Some(other) => Err(self.bad(field, format!("expected an object, found {}", kind(other)))),
        }
    }

    pub fn err(&self, field: &str, reason: impl Into<String>) -> FormatError {
        self.bad(field, reason.into())
    }

    fn bad(&self, field: &str, reason: String) -> FormatError {
        FormatError::Field { path: self.path.clone(), field: field.to_string(), reason }
    }

    pub fn has(&self, field: &str) -> bool {
        !matches!(self.root.get(field), None | Some(Value::Null))
    }

    pub fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|u| usize::try_from(u).ok())
                .map(Some)
                .ok_or_else(|| self.bad(field, format!("expected a non-negative integer, found {v}"))),
        }
    }

    pub fn usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?.ok_or_else(|| self.bad(field, "required field is missing".into()))
    }

    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.bad(field, format!("expected a number, found {v}"))),
        }
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(field, format!("expected true or false, found {v}"))),
        }
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&str>> {
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(field, format!("expected a string, found {v}"))),
        }
    }

    /// An integer or a list of integers (e.g. `eos_token_id`).
    pub fn opt_u32_list(&self, field: &str) -> Result<Option<Vec<u32>>> {
        let one = |v: &Value| v.as_u64().and_then(|u| u32::try_from(u).ok());
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| one(v).ok_or_else(|| self.bad(field, format!("expected token ids, found {v}"))))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => one(v)
                .map(|x| Some(vec![x]))
                .ok_or_else(|| self.bad(field, format!("expected a token id or a list of ids, found {v}"))),
        }
    }

    /// A list of strings.
    pub fn opt_str_list(&self, field: &str) -> Result<Option<Vec<String>>> {
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.bad(field, format!("expected strings, found {v}")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(v) => Err(self.bad(field, format!("expected a list of strings, found {v}"))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
