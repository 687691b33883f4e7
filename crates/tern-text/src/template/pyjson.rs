//! Python `json.dumps` for template values, as used by transformers' `tojson` filter override.
//!
//! transformers replaces Jinja's HTML-escaping `tojson` by
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
//! (`transformers/utils/chat_template_utils.py`, `_compile_jinja_template`). This module reproduces CPython's
//! encoder byte for byte for the values a template can hold: key order is kept, default separators are
//! `(", ", ": ")` without indent and `(",", ": ")` with one, floats use `repr` (`1.0`, `1e-05`, `1e+16`,
//! `NaN`, `Infinity`), `ensure_ascii` escapes everything outside `' '..='~'` as `\uXXXX` (surrogate pairs above
//! the BMP), and values that Python cannot serialize (undefined, bytes, iterators, namespaces, macros) fail
//! with Python's `TypeError` message.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

/// Options of `json.dumps`.
#[derive(Debug, Clone)]
pub(crate) struct DumpOptions {
    /// Escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// The indent unit; `None` writes everything on one line.
    pub indent: Option<String>,
    /// Separator between items.
    pub item_separator: String,
    /// Separator between a key and its value.
    pub key_separator: String,
    /// Sort object keys.
    pub sort_keys: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
        }
    }
}

/// Maximum nesting depth (CPython raises `RecursionError` at about 1000).
const MAX_DEPTH: usize = 512;

fn type_error(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// Python's type name of a value, for error messages.
fn py_type_name(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number => {
            if value.is_integer() {
                "int"
            } else {
                "float"
            }
        }
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        ValueKind::Iterable => "generator",
        ValueKind::Plain => "object",
        ValueKind::Invalid => "invalid",
        _ => "object",
    }
}

/// Formats a float like Python's `repr(float)`.
pub(crate) fn py_float_repr(val: f64) -> String {
    if val.is_nan() {
        return "nan".into();
    }
    if val.is_infinite() {
        return if val > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `Debug` picks the shortest round-tripping digits and switches to exponent notation at the same
    // thresholds as Python (exp < -4 or exp >= 16), but writes `1e16` / `1e-5` instead of `1e+16` / `1e-05`.
    let rv = format!("{val:?}");
    match rv.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            format!("{mantissa}e{exp:+03}")
        }
        None => rv,
    }
}

/// Appends a JSON string literal for `s`.
pub(crate) fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Encoder<'a, 's> {
    opts: &'a DumpOptions,
    out: String,
    state: Option<&'a State<'s, 's>>,
    charged: usize,
}

impl Encoder<'_, '_> {
    /// Pays fuel for the output written so far (one unit per 64 bytes, like the engine).
    fn charge(&mut self) -> Result<(), Error> {
        if let Some(state) = self.state {
            let grown = self.out.len().saturating_sub(self.charged);
            if grown >= 4096 {
                state.consume_fuel((grown / 64) as u64)?;
                self.charged = self.out.len();
            }
        }
        Ok(())
    }

    fn newline_indent(&mut self, depth: usize) -> Result<(), Error> {
        if let Some(indent) = &self.opts.indent {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str(indent);
                if self.out.len() - self.charged >= 4096 {
                    self.charge()?;
                }
            }
        }
        Ok(())
    }

    fn key_string(&self, key: &Value) -> Result<String, Error> {
        match key.kind() {
            ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
            ValueKind::None => Ok("null".into()),
            ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
            ValueKind::Number => {
                if key.is_integer() {
                    Ok(key.to_string())
                } else {
                    let f = f64::try_from(key.clone()).unwrap_or(f64::NAN);
                    Ok(float_json(f))
                }
            }
            _ => Err(type_error(format!("keys must be str, int, float, bool or None, not {}", py_type_name(key)))),
        }
    }

    fn encode(&mut self, value: &Value, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(type_error("maximum recursion depth exceeded while encoding a JSON object".into()));
        }
        self.charge()?;
        if super::env::is_py_none(value) {
            self.out.push_str("null");
            return Ok(());
        }
        match value.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self.out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if value.is_integer() {
                    self.out.push_str(&value.to_string());
                } else {
                    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                    self.out.push_str(&float_json(f));
                }
            }
            ValueKind::String => {
                write_json_str(&mut self.out, value.as_str().unwrap_or_default(), self.opts.ensure_ascii);
            }
            ValueKind::Seq => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    self.out.push_str("[]");
                    return Ok(());
                }
                self.out.push('[');
                self.newline_indent(depth + 1)?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        let sep = self.opts.item_separator.clone();
                        self.out.push_str(&sep);
                        self.newline_indent(depth + 1)?;
                    }
                    self.encode(item, depth + 1)?;
                }
                self.newline_indent(depth)?;
                self.out.push(']');
            }
            ValueKind::Map if value.as_object().is_some() && !value.is_kwargs() => {
                let Some(obj) = value.as_object() else {
                    return Err(type_error("map without object".into()));
                };
                let mut pairs: Vec<(String, Value)> = Vec::new();
                if let Some(iter) = obj.try_iter_pairs() {
                    for (k, v) in iter {
                        pairs.push((self.key_string(&k)?, v));
                    }
                }
                if self.opts.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if pairs.is_empty() {
                    self.out.push_str("{}");
                    return Ok(());
                }
                self.out.push('{');
                self.newline_indent(depth + 1)?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        let sep = self.opts.item_separator.clone();
                        self.out.push_str(&sep);
                        self.newline_indent(depth + 1)?;
                    }
                    write_json_str(&mut self.out, k, self.opts.ensure_ascii);
                    let sep = self.opts.key_separator.clone();
                    self.out.push_str(&sep);
                    self.encode(v, depth + 1)?;
                }
                self.newline_indent(depth)?;
                self.out.push('}');
            }
            _ => return Err(type_error(format!("Object of type {} is not JSON serializable", py_type_name(value)))),
        }
        Ok(())
    }
}

/// JSON form of a float: Python writes `NaN`, `Infinity` and `-Infinity` for the non-finite ones.
fn float_json(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        py_float_repr(f)
    }
}

/// Serializes `value` like Python's `json.dumps` with the given options.
pub(crate) fn dumps(value: &Value, opts: &DumpOptions, state: Option<&State<'_, '_>>) -> Result<String, Error> {
    let mut enc = Encoder { opts, out: String::new(), state, charged: 0 };
    enc.encode(value, 0)?;
    Ok(enc.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(0.1), "0.1");
        assert_eq!(py_float_repr(1e16), "1e+16");
        assert_eq!(py_float_repr(1e-5), "1e-05");
        assert_eq!(py_float_repr(0.0001), "0.0001");
        assert_eq!(py_float_repr(123456789012345.0), "123456789012345.0");
        assert_eq!(py_float_repr(-2.5e-10), "-2.5e-10");
    }

    #[test]
    fn strings_like_python() {
        let mut s = String::new();
        write_json_str(&mut s, "a\"b\\c\n\u{1}é😀\u{7f}", false);
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001é😀\u{7f}\"");
        let mut s = String::new();
        write_json_str(&mut s, "é😀\u{7f}", true);
        assert_eq!(s, "\"\\u00e9\\ud83d\\ude00\\u007f\"");
    }
}
