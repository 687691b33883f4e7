//! GGUF metadata values and the ordered key → value map with typed getters.
//!
//! Value type ids follow the GGUF spec (`gguf_type` in llama.cpp's `ggml/include/gguf.h`,
//! `GGUFValueType` in gguf-py): 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
//! 9 array, 10 u64, 11 i64, 12 f64. Arrays are typed and may nest (each inner array carries its own
//! element type), as gguf-py's writer produces. Strings are kept as raw bytes so a file round-trips
//! exactly even if a tokenizer vocabulary holds bytes that are not UTF-8; getters that return `&str`
//! check UTF-8 and name the key when it fails.

use std::collections::HashMap;
use std::fmt;

use crate::error::{GgufError, Result};

/// A GGUF value type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// Type for an on-disk id.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Fixed encoded size in bytes; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// Smallest possible encoded size of one value (8 for a string's length, 12 for an array's
    /// element type + count). Used to bound counts before allocating.
    pub fn min_encoded_size(self) -> usize {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.fixed_size().unwrap_or(1),
        }
    }

    /// Lower-case name as in llama.cpp's `gguf_type_name` (`u8`, `str`, `arr`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "str",
            Array => "arr",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A GGUF string: length-prefixed bytes, normally UTF-8.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct GgufString(Vec<u8>);

impl GgufString {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The string if it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The bytes, consuming the string.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for GgufString {
    fn from(s: &str) -> Self {
        GgufString(s.as_bytes().to_vec())
    }
}

impl From<String> for GgufString {
    fn from(s: String) -> Self {
        GgufString(s.into_bytes())
    }
}

impl From<Vec<u8>> for GgufString {
    fn from(b: Vec<u8>) -> Self {
        GgufString(b)
    }
}

impl fmt::Debug for GgufString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "b{:?}", String::from_utf8_lossy(&self.0)),
        }
    }
}

impl fmt::Display for GgufString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A typed GGUF array. Nested arrays hold their own element types.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<GgufString>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    /// Element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Type description such as `arr[u32; 12]` or `arr[arr; 2]`.
    pub fn describe(&self) -> String {
        format!("arr[{}; {}]", self.element_type(), self.len())
    }

    /// An empty array of the given element type.
    pub fn empty(ty: ValueType) -> Array {
        match ty {
            ValueType::U8 => Array::U8(Vec::new()),
            ValueType::I8 => Array::I8(Vec::new()),
            ValueType::U16 => Array::U16(Vec::new()),
            ValueType::I16 => Array::I16(Vec::new()),
            ValueType::U32 => Array::U32(Vec::new()),
            ValueType::I32 => Array::I32(Vec::new()),
            ValueType::F32 => Array::F32(Vec::new()),
            ValueType::Bool => Array::Bool(Vec::new()),
            ValueType::String => Array::String(Vec::new()),
            ValueType::Array => Array::Array(Vec::new()),
            ValueType::U64 => Array::U64(Vec::new()),
            ValueType::I64 => Array::I64(Vec::new()),
            ValueType::F64 => Array::F64(Vec::new()),
        }
    }
}

/// A GGUF metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(GgufString),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Type description used in error messages (`u32`, `str`, `arr[f32; 3]`).
    pub fn describe(&self) -> String {
        match self {
            Value::Array(a) => a.describe(),
            v => v.value_type().name().to_string(),
        }
    }

    /// Any integer type as u64 if it is non-negative.
    pub fn as_uint(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type as i64 if it fits.
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// f32 or f64 as f64.
    pub fn as_float(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value { fn from(x: $t) -> Self { Value::$v(x) } }
        impl From<Vec<$t>> for Value { fn from(x: Vec<$t>) -> Self { Value::Array(Array::$v(x)) } }
        impl From<Vec<$t>> for Array { fn from(x: Vec<$t>) -> Self { Array::$v(x) } }
    )*};
}
value_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32, bool => Bool,
    u64 => U64, i64 => I64, f64 => F64, GgufString => String);

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s.into())
    }
}

impl From<Vec<&str>> for Value {
    fn from(v: Vec<&str>) -> Self {
        Value::Array(Array::String(v.into_iter().map(GgufString::from).collect()))
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::Array(Array::String(v.into_iter().map(GgufString::from).collect()))
    }
}

impl From<Array> for Value {
    fn from(a: Array) -> Self {
        Value::Array(a)
    }
}

/// The metadata of a GGUF file: keys in file order, with typed getters.
///
/// Getters return [`GgufError::MissingKey`] when the key is absent and [`GgufError::WrongType`]
/// (naming the key, the expected type and the type found) when it has another type. The `_opt`
/// variants return `Ok(None)` for an absent key.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    origin: String,
}

macro_rules! scalar_getters {
    ($($get:ident, $opt:ident, $v:ident, $t:ty, $name:literal);* $(;)?) => {$(
        #[doc = concat!("The ", $name, " value of `key`.")]
        pub fn $get(&self, key: &str) -> Result<$t> {
            match self.require(key)? {
                Value::$v(x) => Ok(x.clone()),
                other => Err(self.wrong_type(key, $name, other)),
            }
        }
        #[doc = concat!("The ", $name, " value of `key`, `None` if absent.")]
        pub fn $opt(&self, key: &str) -> Result<Option<$t>> {
            if self.get(key).is_none() { return Ok(None); }
            self.$get(key).map(Some)
        }
    )*};
}

macro_rules! array_getters {
    ($($get:ident, $v:ident, $t:ty, $name:literal);* $(;)?) => {$(
        #[doc = concat!("The `", $name, "` array value of `key`.")]
        pub fn $get(&self, key: &str) -> Result<&[$t]> {
            match self.require(key)? {
                Value::Array(Array::$v(x)) => Ok(x),
                other => Err(self.wrong_type(key, $name, other)),
            }
        }
    )*};
}

impl Metadata {
    pub(crate) fn with_origin(origin: String) -> Self {
        Metadata { origin, ..Default::default() }
    }

    /// Insert a new key; returns the index of the existing entry if the key is already present.
    pub(crate) fn insert_new(&mut self, key: String, value: Value) -> std::result::Result<(), usize> {
        if let Some(&i) = self.index.get(&key) {
            return Err(i);
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Where this metadata came from (file path or `<memory>`), used in error messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Keys and values in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in file order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { path: self.origin.clone(), key: key.to_string() })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> GgufError {
        GgufError::WrongType { path: self.origin.clone(), key: key.to_string(), expected, found: found.describe() }
    }

    scalar_getters! {
        get_u8, get_u8_opt, U8, u8, "u8";
        get_i8, get_i8_opt, I8, i8, "i8";
        get_u16, get_u16_opt, U16, u16, "u16";
        get_i16, get_i16_opt, I16, i16, "i16";
        get_u32, get_u32_opt, U32, u32, "u32";
        get_i32, get_i32_opt, I32, i32, "i32";
        get_u64, get_u64_opt, U64, u64, "u64";
        get_i64, get_i64_opt, I64, i64, "i64";
        get_f32, get_f32_opt, F32, f32, "f32";
        get_f64, get_f64_opt, F64, f64, "f64";
        get_bool, get_bool_opt, Bool, bool, "bool";
    }

    array_getters! {
        get_arr_u8, U8, u8, "arr[u8]";
        get_arr_i8, I8, i8, "arr[i8]";
        get_arr_u16, U16, u16, "arr[u16]";
        get_arr_i16, I16, i16, "arr[i16]";
        get_arr_u32, U32, u32, "arr[u32]";
        get_arr_i32, I32, i32, "arr[i32]";
        get_arr_u64, U64, u64, "arr[u64]";
        get_arr_i64, I64, i64, "arr[i64]";
        get_arr_f32, F32, f32, "arr[f32]";
        get_arr_f64, F64, f64, "arr[f64]";
        get_arr_bool, Bool, bool, "arr[bool]";
        get_arr_string, String, GgufString, "arr[str]";
        get_arr_arr, Array, Array, "arr[arr]";
    }

    /// Any array value of `key`.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            other => Err(self.wrong_type(key, "arr", other)),
        }
    }

    /// The string value of `key` as UTF-8.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::String(s) => s.to_str().ok_or_else(|| GgufError::BadValue {
                path: self.origin.clone(),
                key: key.to_string(),
                problem: "string is not valid UTF-8".to_string(),
            }),
            other => Err(self.wrong_type(key, "str", other)),
        }
    }

    /// The string value of `key`, `None` if absent.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.get_str(key).map(Some)
    }

    /// The string-array value of `key`, every element checked as UTF-8.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let arr = self.get_arr_string(key)?;
        arr.iter()
            .enumerate()
            .map(|(i, s)| {
                s.to_str().ok_or_else(|| GgufError::BadValue {
                    path: self.origin.clone(),
                    key: key.to_string(),
                    problem: format!("element {i} is not valid UTF-8: {s:?}"),
                })
            })
            .collect()
    }

    /// Any non-negative integer value (u8..u64, i8..i64) of `key` as u64.
    pub fn get_uint(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_uint().ok_or_else(|| self.wrong_type(key, "non-negative integer", v))
    }

    /// Any integer value of `key` that fits i64.
    pub fn get_int(&self, key: &str) -> Result<i64> {
        let v = self.require(key)?;
        v.as_int().ok_or_else(|| self.wrong_type(key, "integer", v))
    }

    /// An f32 or f64 value of `key` as f64.
    pub fn get_float(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_float().ok_or_else(|| self.wrong_type(key, "f32 or f64", v))
    }
}

impl PartialEq for Metadata {
    /// Two metadata maps are equal when they hold the same keys in the same order with equal values
    /// (the origin is ignored).
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_name_key_and_types() {
        let mut m = Metadata::with_origin("x.gguf".into());
        m.insert_new("a".into(), Value::U32(7)).unwrap();
        m.insert_new("s".into(), Value::from("hi")).unwrap();
        m.insert_new("f".into(), Value::from(vec![1.0f32, 2.0])).unwrap();
        m.insert_new("bad".into(), Value::String(GgufString::from(vec![0xff]))).unwrap();
        assert_eq!(m.get_u32("a").unwrap(), 7);
        assert_eq!(m.get_uint("a").unwrap(), 7);
        assert_eq!(m.get_str("s").unwrap(), "hi");
        assert_eq!(m.get_arr_f32("f").unwrap(), &[1.0, 2.0]);
        let e = m.get_f32("a").unwrap_err().to_string();
        assert!(e.contains("x.gguf") && e.contains("\"a\"") && e.contains("f32") && e.contains("u32"), "{e}");
        let e = m.get_u32("zz").unwrap_err().to_string();
        assert!(e.contains("\"zz\"") && e.contains("not found"), "{e}");
        let e = m.get_arr_u32("f").unwrap_err().to_string();
        assert!(e.contains("arr[f32; 2]"), "{e}");
        assert!(m.get_str("bad").is_err());
        assert_eq!(m.get_u32_opt("zz").unwrap(), None);
        assert_eq!(m.insert_new("a".into(), Value::U8(1)), Err(0));
    }
}
