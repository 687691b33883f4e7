//! The minijinja environment that reproduces transformers' chat-template Jinja environment.
//!
//! Reference: `transformers/utils/chat_template_utils.py::_compile_jinja_template` (transformers 5.x), which
//! builds `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[AssistantTracker, jinja2.ext.loopcontrols])` and adds the `tojson` filter override
//! (`json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`), and the globals
//! `raise_exception(message)`, `strftime_now(format)`, `dict` and `namespace`.
//!
//! On top of minijinja's builtins and `minijinja_contrib::pycompat` (Python methods on strings, dicts and
//! lists), this adds what real chat templates use and minijinja lacks or does differently from Python:
//! * string methods with CPython semantics: `strip`/`lstrip`/`rstrip` (Python's whitespace set, which
//!   includes `\x1c`..`\x1f`), `split`/`rsplit` (whitespace splitting, `maxsplit`, keyword arguments,
//!   `ValueError` on an empty separator), `startswith`/`endswith` (tuples, start/end), `title` (`str.title`,
//!   not Jinja's `title` filter), `removeprefix`, `removesuffix`, `partition`, `rpartition`, `index`,
//!   `rindex`, `zfill`, `ljust`, `rjust`, `center`, `swapcase`, `casefold`, `isdecimal`, `istitle`;
//! * the `trim` filter with Python whitespace, the `sequence` test that is true for strings and dicts
//!   (as Jinja2's), and a `{{ }}` formatter that prints floats as Python's `repr`;
//! * `{% generation %}...{% endgeneration %}` (transformers' `AssistantTracker` tag) by rewriting it to a
//!   no-op block with the same whitespace control before compiling (see [`rewrite_generation_tags`]).
//!
//! The sandbox restrictions of `ImmutableSandboxedEnvironment` (no `list.append`, `dict.update`, no
//! dunder attributes) hold trivially: minijinja has no such methods, so templates that try them fail in both.

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::value::{from_args, Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};

use super::pyjson::{self, DumpOptions};

/// Marker error source of `raise_exception`, to tell template-raised errors apart.
#[derive(Debug)]
pub(crate) struct RaisedException;

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("raised by the template")
    }
}

impl std::error::Error for RaisedException {}

/// Creates the environment with the transformers configuration (no templates yet).
pub(crate) fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().unwrap_or_default(),
    );
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(unknown_method);
    env.set_formatter(|out, state, value| {
        if value.kind() == ValueKind::Number && !value.is_integer() {
            if let Ok(f) = f64::try_from(value.clone()) {
                return out
                    .write_str(&pyjson::py_float_repr(f))
                    .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()));
            }
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.add_filter("tojson", tojson_filter);
    env.add_filter("trim", trim_filter);
    env.add_filter("int", int_filter);
    env.add_filter("float", float_filter);
    env.add_test("sequence", is_sequence);
    env.add_test("iterable", is_iterable);
    env.add_test("none", is_py_none);
    env.add_function("raise_exception", raise_exception);
    // Jinja2's map/select/reject/selectattr/rejectattr/unique return generators: truthy even when empty,
    // without a length, not JSON-serializable; all but `unique` yield nothing for a falsy input.
    env.add_filter("map", |state: &mut State, value: Value, args: Rest<ValueOrKwargs>| -> Result<Value, Error> {
        if is_py_none(&value) {
            return Ok(generator(Vec::new()));
        }
        minijinja::filters::map(state, value, args).map(generator)
    });
    env.add_filter(
        "select",
        |state: &mut State,
         value: Value,
         test: Option<Cow<'_, str>>,
         args: Rest<ValueOrKwargs>|
         -> Result<Value, Error> {
            if is_py_none(&value) {
                return Ok(generator(Vec::new()));
            }
            minijinja::filters::select(state, value, test, args).map(generator)
        },
    );
    env.add_filter(
        "reject",
        |state: &mut State,
         value: Value,
         test: Option<Cow<'_, str>>,
         args: Rest<ValueOrKwargs>|
         -> Result<Value, Error> {
            if is_py_none(&value) {
                return Ok(generator(Vec::new()));
            }
            minijinja::filters::reject(state, value, test, args).map(generator)
        },
    );
    env.add_filter(
        "selectattr",
        |state: &mut State,
         value: Value,
         attr: Cow<'_, str>,
         test: Option<Cow<'_, str>>,
         args: Rest<ValueOrKwargs>|
         -> Result<Value, Error> {
            if is_py_none(&value) {
                return Ok(generator(Vec::new()));
            }
            minijinja::filters::selectattr(state, value, attr, test, args).map(generator)
        },
    );
    env.add_filter(
        "rejectattr",
        |state: &mut State,
         value: Value,
         attr: Cow<'_, str>,
         test: Option<Cow<'_, str>>,
         args: Rest<ValueOrKwargs>|
         -> Result<Value, Error> {
            if is_py_none(&value) {
                return Ok(generator(Vec::new()));
            }
            minijinja::filters::rejectattr(state, value, attr, test, args).map(generator)
        },
    );
    env.add_filter("unique", |state: &State, value: Value, kwargs: Kwargs| -> Result<Value, Error> {
        let list = minijinja::filters::unique(state, value, kwargs)?;
        Ok(generator(list.try_iter()?.collect()))
    });
    env
}

/// Python's `None` for the `tools` / `documents` variables when they are not given.
///
/// minijinja iterates `none` as an empty sequence, while Jinja2 raises `TypeError: 'NoneType' object is not
/// iterable`; tool-use templates that loop over `tools` without checking it (Hermes, Command-R) must fail
/// as in transformers. This object is falsy, prints `None`, is `none` for the `none` test, serializes to
/// `null`, and cannot be iterated or measured.
#[derive(Debug)]
pub(crate) struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("None")
    }
}

/// Whether a value is Python's `None` (the engine's `none` or a [`PyNone`]).
pub(crate) fn is_py_none(value: &Value) -> bool {
    value.is_none() || value.downcast_object_ref::<PyNone>().is_some()
}

/// A Jinja2 generator (the result of `map`, `select`, ...): iterable, always truthy, no length.
#[derive(Debug)]
pub(crate) struct Generator(Vec<Value>);

impl Object for Generator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        // The filter hides the exact length, so `|length` fails as `len(generator)` does.
        Enumerator::Iter(Box::new(self.0.clone().into_iter().filter(|_| true)))
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<generator object>")
    }
}

fn generator(items: Vec<Value>) -> Value {
    Value::from_object(Generator(items))
}

fn is_iterable(value: &Value) -> bool {
    !is_py_none(value) && (value.is_undefined() || value.try_iter().is_ok())
}

fn raise_exception(message: Option<Value>) -> Result<Value, Error> {
    let message = message.map(|m| m.to_string()).unwrap_or_default();
    Err(Error::new(ErrorKind::InvalidOperation, message).with_source(RaisedException))
}

fn is_sequence(value: &Value) -> bool {
    value.is_undefined()
        || matches!(value.kind(), ValueKind::Seq | ValueKind::String | ValueKind::Map | ValueKind::Bytes)
}

/// `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)` as transformers defines it.
fn tojson_filter(state: &State, value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > NAMES.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("tojson() takes from 1 to 5 positional arguments but {} were given", args.len() + 1),
        ));
    }
    let mut slots: [Option<Value>; 4] = Default::default();
    for (i, a) in args.iter().enumerate() {
        slots[i] = Some(a.clone());
    }
    for (i, name) in NAMES.iter().enumerate() {
        if kwargs.has(name) {
            if slots[i].is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson() got multiple values for argument '{name}'"),
                ));
            }
            slots[i] = Some(kwargs.get::<Value>(name)?);
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = slots;
    let mut opts = DumpOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
        ..DumpOptions::default()
    };
    match indent {
        None => {}
        Some(v) if v.is_none() => {}
        Some(v) => {
            let unit = if let Some(s) = v.as_str() {
                s.to_string()
            } else if v.kind() == ValueKind::Bool || v.is_integer() {
                let n = i64::try_from(v.clone()).unwrap_or(0);
                if n > 4096 {
                    return Err(Error::new(ErrorKind::InvalidOperation, format!("tojson indent {n} is too large")));
                }
                " ".repeat(n.max(0) as usize)
            } else {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("can't multiply sequence by non-int of type '{}'", v.kind()),
                ));
            };
            opts.indent = Some(unit);
            opts.item_separator = ",".into();
        }
    }
    if let Some(sep) = separators.filter(|v| !v.is_none()) {
        let parts: Vec<Value> = sep.try_iter()?.collect();
        let strs: Vec<&str> = parts.iter().filter_map(|p| p.as_str()).collect();
        if parts.len() != 2 || strs.len() != 2 {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson separators must be a pair of strings (item_separator, key_separator)",
            ));
        }
        opts.item_separator = strs[0].to_string();
        opts.key_separator = strs[1].to_string();
    }
    pyjson::dumps(value, &opts, Some(state)).map(Value::from)
}

/// Python's `str.isspace` for one character.
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `str.strip`/`lstrip`/`rstrip`.
fn py_strip(s: &str, chars: Option<&str>, left: bool, right: bool) -> String {
    let is_strip = |c: char| match chars {
        Some(set) => set.contains(c),
        None => py_isspace(c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(is_strip);
    }
    if right {
        out = out.trim_end_matches(is_strip);
    }
    out.to_string()
}

/// Jinja's `trim(value, chars=None)` = `value.strip(chars)`.
fn trim_filter(value: &Value, chars: Option<Value>) -> Result<Value, Error> {
    let s = value.to_string();
    let chars = chars.filter(|c| !c.is_none());
    let chars = match &chars {
        Some(c) => {
            Some(c.as_str().ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "strip arg must be None or str"))?)
        }
        None => None,
    };
    Ok(Value::from(py_strip(&s, chars, true, true)))
}

/// Python `int(s, base)` for a string (whitespace, sign, `_` between digits, base prefixes).
fn py_parse_int(s: &str, base: u32) -> Option<i64> {
    let t = s.trim_matches(py_isspace);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = t.to_ascii_lowercase();
    let prefixed = |p: &str, b: u32| lower.starts_with(p) && (base == b || base == 0);
    let (digits, base) = if prefixed("0x", 16) {
        (&t[2..], 16)
    } else if prefixed("0o", 8) {
        (&t[2..], 8)
    } else if prefixed("0b", 2) {
        (&t[2..], 2)
    } else if base == 0 {
        (t, 10)
    } else {
        (t, base)
    };
    if !(2..=36).contains(&base)
        || digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    let v = i64::from_str_radix(&clean, base).ok()?;
    Some(if neg { -v } else { v })
}

/// Python `float(s)` for a string.
fn py_parse_float(s: &str) -> Option<f64> {
    let t = s.trim_matches(py_isspace);
    if t.contains("__") || t.starts_with('_') || t.ends_with('_') {
        return None;
    }
    let clean: String = t.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok().or_else(|| {
            let neg = lower.starts_with('-');
            Some(if unsigned == "nan" {
                f64::NAN
            } else if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        });
    }
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    clean.parse::<f64>().ok()
}

/// Jinja2's `int(value, default=0, base=10)`: `int(value)`, else `int(float(value))`, else the default.
fn int_filter(value: &Value, default: Option<Value>, base: Option<u32>) -> Value {
    let default = default.unwrap_or_else(|| Value::from(0));
    let from_float = |f: f64| {
        if f.is_finite() && f.abs() < 9.2e18 {
            Value::from(f.trunc() as i64)
        } else {
            default.clone()
        }
    };
    match value.kind() {
        ValueKind::Bool => Value::from(i64::from(value.is_true())),
        ValueKind::Number if value.is_integer() => value.clone(),
        ValueKind::Number => from_float(f64::try_from(value.clone()).unwrap_or(f64::NAN)),
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            match py_parse_int(s, base.unwrap_or(10)) {
                Some(i) => Value::from(i),
                None => match py_parse_float(s) {
                    Some(f) => from_float(f),
                    None => default,
                },
            }
        }
        _ => default,
    }
}

/// Jinja2's `float(value, default=0.0)`.
fn float_filter(value: &Value, default: Option<Value>) -> Value {
    let default = default.unwrap_or_else(|| Value::from(0.0));
    match value.kind() {
        ValueKind::Bool => Value::from(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).map_or(default, Value::from),
        ValueKind::String => py_parse_float(value.as_str().unwrap_or_default()).map_or(default, Value::from),
        _ => default,
    }
}

fn value_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Splits positional/keyword arguments of `split`/`rsplit`.
fn split_args(args: &[Value]) -> Result<(Option<String>, i64), Error> {
    let (sep, maxsplit, kwargs): (Option<Value>, Option<i64>, Kwargs) = from_args(args)?;
    let sep = match kwargs.get::<Option<Value>>("sep")? {
        Some(v) if sep.is_none() => Some(v),
        _ => sep,
    };
    let maxsplit = match kwargs.get::<Option<i64>>("maxsplit")? {
        Some(v) if maxsplit.is_none() => Some(v),
        _ => maxsplit,
    };
    kwargs.assert_all_used()?;
    let sep = match sep {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some("") => return Err(value_error("empty separator")),
            Some(s) => Some(s.to_string()),
            None => return Err(value_error(format!("must be str or None, not {}", v.kind()))),
        },
    };
    Ok((sep, maxsplit.unwrap_or(-1)))
}

/// Python `str.split(sep, maxsplit)`.
fn py_split(s: &str, sep: Option<&str>, maxsplit: i64) -> Vec<String> {
    let limit = if maxsplit < 0 { usize::MAX } else { maxsplit as usize };
    match sep {
        Some(sep) => {
            if limit == usize::MAX {
                s.split(sep).map(str::to_string).collect()
            } else {
                s.splitn(limit.saturating_add(1), sep).map(str::to_string).collect()
            }
        }
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start_matches(py_isspace);
            while !rest.is_empty() {
                if out.len() == limit {
                    out.push(rest.to_string());
                    break;
                }
                match rest.find(py_isspace) {
                    Some(end) => {
                        out.push(rest[..end].to_string());
                        rest = rest[end..].trim_start_matches(py_isspace);
                    }
                    None => {
                        out.push(rest.to_string());
                        break;
                    }
                }
            }
            out
        }
    }
}

/// Python `str.rsplit(sep, maxsplit)`.
fn py_rsplit(s: &str, sep: Option<&str>, maxsplit: i64) -> Vec<String> {
    let limit = if maxsplit < 0 { usize::MAX } else { maxsplit as usize };
    let mut out: Vec<String> = match sep {
        Some(sep) => {
            if limit == usize::MAX {
                s.rsplit(sep).map(str::to_string).collect()
            } else {
                s.rsplitn(limit.saturating_add(1), sep).map(str::to_string).collect()
            }
        }
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_end_matches(py_isspace);
            while !rest.is_empty() {
                if out.len() == limit {
                    out.push(rest.to_string());
                    break;
                }
                match rest.rfind(py_isspace) {
                    Some(pos) => {
                        let ws_len = rest[pos..].chars().next().map_or(1, char::len_utf8);
                        out.push(rest[pos + ws_len..].to_string());
                        rest = rest[..pos].trim_end_matches(py_isspace);
                    }
                    None => {
                        out.push(rest.to_string());
                        break;
                    }
                }
            }
            out
        }
    };
    out.reverse();
    out
}

/// Python `str.title()`: a cased character is upper-cased after an uncased one, lower-cased otherwise.
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if cased {
            if prev_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

/// Python's `str.startswith`/`endswith(prefix, start=None, end=None)`.
fn starts_or_ends(s: &str, args: &[Value], ends: bool) -> Result<Value, Error> {
    let (prefix, start, end): (Value, Option<Value>, Option<Value>) = from_args(args)?;
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len() as i64;
    let norm = |v: Option<Value>, default: i64| -> i64 {
        match v.filter(|v| !v.is_none()).and_then(|v| i64::try_from(v).ok()) {
            Some(i) if i < 0 => (i + n).max(0),
            Some(i) => i.min(n),
            None => default,
        }
    };
    let (a, b) = (norm(start, 0), norm(end, n));
    if a > b {
        return Ok(Value::from(false));
    }
    let sub: String = chars[a as usize..b as usize].iter().collect();
    let check = |p: &str| if ends { sub.ends_with(p) } else { sub.starts_with(p) };
    if let Some(p) = prefix.as_str() {
        return Ok(Value::from(check(p)));
    }
    if matches!(prefix.kind(), ValueKind::Seq) {
        for item in prefix.try_iter()? {
            let Some(p) = item.as_str() else {
                return Err(value_error(format!(
                    "tuple for {} must only contain str, not {}",
                    if ends { "endswith" } else { "startswith" },
                    item.kind()
                )));
            };
            if check(p) {
                return Ok(Value::from(true));
            }
        }
        return Ok(Value::from(false));
    }
    Err(value_error(format!(
        "{} first arg must be str or a tuple of str, not {}",
        if ends { "endswith" } else { "startswith" },
        prefix.kind()
    )))
}

fn pad(s: &str, width: i64, fill: Option<&str>, left: bool, right: bool) -> Result<Value, Error> {
    let fill = match fill {
        Some(f) if f.chars().count() == 1 => f.chars().next().unwrap_or(' '),
        Some(_) => return Err(value_error("The fill character must be exactly one character long")),
        None => ' ',
    };
    let len = s.chars().count() as i64;
    if width <= len {
        return Ok(Value::from(s));
    }
    if width > 1 << 20 {
        return Err(value_error(format!("padding width {width} is too large")));
    }
    let total = (width - len) as usize;
    let (l, r) = match (left, right) {
        (true, true) => {
            // CPython's center: left = total/2 + (total & width & 1)
            let l = total / 2 + (total & (width as usize) & 1);
            (l, total - l)
        }
        (true, false) => (total, 0),
        _ => (0, total),
    };
    let mut out = String::with_capacity(s.len() + total);
    out.extend(std::iter::repeat_n(fill, l));
    out.push_str(s);
    out.extend(std::iter::repeat_n(fill, r));
    Ok(Value::from(out))
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Option<Result<Value, Error>> {
    let one_str = |args: &[Value]| -> Result<String, Error> {
        let (a,): (&str,) = from_args(args)?;
        Ok(a.to_string())
    };
    let strip_chars = |args: &[Value]| -> Result<Option<String>, Error> {
        let (c,): (Option<Value>,) = from_args(args)?;
        match c {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => {
                v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| value_error("strip arg must be None or str"))
            }
        }
    };
    Some(match method {
        "strip" | "lstrip" | "rstrip" => strip_chars(args)
            .map(|chars| Value::from(py_strip(s, chars.as_deref(), method != "rstrip", method != "lstrip"))),
        "split" | "rsplit" => split_args(args).map(|(sep, max)| {
            let parts =
                if method == "split" { py_split(s, sep.as_deref(), max) } else { py_rsplit(s, sep.as_deref(), max) };
            Value::from(parts.into_iter().map(Value::from).collect::<Vec<_>>())
        }),
        "startswith" => starts_or_ends(s, args, false),
        "endswith" => starts_or_ends(s, args, true),
        "title" => from_args::<()>(args).map(|()| Value::from(py_title(s))),
        "swapcase" => from_args::<()>(args).map(|()| {
            Value::from(
                s.chars()
                    .flat_map(|c| -> Vec<char> {
                        if c.is_uppercase() {
                            c.to_lowercase().collect()
                        } else if c.is_lowercase() {
                            c.to_uppercase().collect()
                        } else {
                            vec![c]
                        }
                    })
                    .collect::<String>(),
            )
        }),
        "casefold" => from_args::<()>(args).map(|()| Value::from(s.to_lowercase())),
        "removeprefix" => one_str(args).map(|p| Value::from(s.strip_prefix(p.as_str()).unwrap_or(s))),
        "removesuffix" => one_str(args).map(|p| Value::from(s.strip_suffix(p.as_str()).unwrap_or(s))),
        "partition" | "rpartition" => one_str(args).and_then(|sep| {
            if sep.is_empty() {
                return Err(value_error("empty separator"));
            }
            let found = if method == "partition" { s.find(&sep) } else { s.rfind(&sep) };
            let parts = match found {
                Some(i) => [&s[..i], sep.as_str(), &s[i + sep.len()..]],
                None if method == "partition" => [s, "", ""],
                None => ["", "", s],
            };
            // Python returns a 3-tuple.
            Ok(Value::from(minijinja::value::Tuple::from(parts.map(Value::from))))
        }),
        "index" | "rindex" => one_str(args).and_then(|sub| {
            let found = if method == "index" { s.find(&sub) } else { s.rfind(&sub) };
            found.map(|i| Value::from(s[..i].chars().count())).ok_or_else(|| value_error("substring not found"))
        }),
        "zfill" => from_args::<(i64,)>(args).map(|(width,)| {
            let len = s.chars().count() as i64;
            if width <= len || width > 1 << 20 {
                return Value::from(s);
            }
            let zeros = "0".repeat((width - len) as usize);
            match s.chars().next() {
                Some(sign @ ('+' | '-')) => Value::from(format!("{sign}{zeros}{}", &s[1..])),
                _ => Value::from(format!("{zeros}{s}")),
            }
        }),
        "ljust" | "rjust" | "center" => from_args::<(i64, Option<&str>)>(args)
            .and_then(|(width, fill)| pad(s, width, fill, method != "ljust", method != "rjust")),
        "isdecimal" => {
            from_args::<()>(args).map(|()| Value::from(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())))
        }
        "istitle" => from_args::<()>(args).map(|()| {
            let cased = s.chars().any(|c| c.is_uppercase() || c.is_lowercase());
            Value::from(cased && py_title(s) == s)
        }),
        _ => return None,
    })
}

/// Python methods on values; what is not handled here goes to `minijinja_contrib::pycompat`.
fn unknown_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        if let Some(rv) = string_method(s, method, args) {
            return rv;
        }
    }
    if value.kind() == ValueKind::Map && method == "copy" {
        let () = from_args(args)?;
        return Ok(value.clone());
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Rewrites transformers' `{% generation %}` / `{% endgeneration %}` tags (its `AssistantTracker` extension,
/// which only records offsets and renders its body unchanged) to `{% if true %}` / `{% endif %}` with the same
/// whitespace-control modifiers, so the output is identical.
pub(crate) fn rewrite_generation_tags(source: &str) -> std::borrow::Cow<'_, str> {
    if !source.contains("generation") {
        return std::borrow::Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        let Some(end) = tag[2..].find("%}").map(|e| e + 2) else {
            out.push_str(tag);
            rest = "";
            break;
        };
        let inner = &tag[2..end];
        let (lmod, body) = match inner.chars().next() {
            Some(c @ ('-' | '+')) => (Some(c), &inner[1..]),
            _ => (None, inner),
        };
        let (body, rmod) = match body.chars().last() {
            Some(c @ ('-' | '+')) => (&body[..body.len() - 1], Some(c)),
            _ => (body, None),
        };
        let replacement = match body.trim() {
            "generation" => Some(" if true "),
            "endgeneration" => Some(" endif "),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str("{%");
                if let Some(c) = lmod {
                    out.push(c);
                }
                out.push_str(r);
                if let Some(c) = rmod {
                    out.push(c);
                }
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_split_semantics() {
        assert_eq!(py_split("  a b  c ", None, -1), ["a", "b", "c"]);
        assert_eq!(py_split("  a b  c ", None, 1), ["a", "b  c "]);
        assert_eq!(py_split("a,b,,c", Some(","), -1), ["a", "b", "", "c"]);
        assert_eq!(py_split("a,b,c", Some(","), 1), ["a", "b,c"]);
        assert_eq!(py_rsplit("a,b,c", Some(","), 1), ["a,b", "c"]);
        assert_eq!(py_rsplit("  a b  c ", None, 1), ["  a b", "c"]);
        assert_eq!(py_split("", None, -1), Vec::<String>::new());
        assert_eq!(py_split("", Some(","), -1), [""]);
    }

    #[test]
    fn python_number_parsing() {
        assert_eq!(py_parse_int(" -1_000 ", 10), Some(-1000));
        assert_eq!(py_parse_int("0x1A", 16), Some(26));
        assert_eq!(py_parse_int("0x1A", 0), Some(26));
        assert_eq!(py_parse_int("0x1A", 10), None);
        assert_eq!(py_parse_int("1__0", 10), None);
        assert_eq!(py_parse_int("3.7", 10), None);
        assert_eq!(py_parse_float(" 3.7 "), Some(3.7));
        assert_eq!(py_parse_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(py_parse_float("1e3"), Some(1000.0));
        assert_eq!(py_parse_float("abc"), None);
        assert_eq!(py_parse_float("infinit"), None);
    }

    #[test]
    fn python_title() {
        assert_eq!(py_title("they're bill's friends"), "They'Re Bill'S Friends");
        assert_eq!(py_title("hello_world 2nd"), "Hello_World 2Nd");
    }

    #[test]
    fn generation_tags_are_rewritten() {
        assert_eq!(
            rewrite_generation_tags("a{%- generation %}b{% endgeneration -%}c{% if x %}"),
            "a{%- if true %}b{% endif -%}c{% if x %}"
        );
        assert_eq!(rewrite_generation_tags("{%}generation{%-%}{%"), "{%}generation{%-%}{%");
    }
}
