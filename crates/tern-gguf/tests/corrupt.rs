//! Corrupt-file matrix mirroring llama.cpp's tests/test-gguf.cpp handcrafted cases (HEADER_*, KV_*,
//! TENSORS_*, DATA_*) plus extra ones (huge counts, EOF inside every field, nesting, overlaps, the I2_S id
//! clash). Each file must give the expected error variant, never panic, and never make an allocation
//! larger than 1 MiB (checked with a counting global allocator: a count of 2^60 must allocate nothing).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::Raw;
use tern_gguf::{GgmlType, GgufError, GgufFile, ReadOptions, TypeIdDialect};

struct Counting;

thread_local! {
    static MAX_ALLOC: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = MAX_ALLOC.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: forwarding the caller's contract to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarding the caller's contract to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = MAX_ALLOC.try_with(|m| m.set(m.get().max(new_size)));
        // SAFETY: forwarding the caller's contract to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ALLOC_LIMIT: usize = 1 << 20;

/// Parse `bytes` (copied into an `Arc` first, outside the measured region) and report the largest
/// single allocation made by the parser.
fn parse(bytes: &[u8], opts: &ReadOptions) -> (Result<GgufFile, GgufError>, usize) {
    let arc: std::sync::Arc<[u8]> = bytes.into();
    MAX_ALLOC.with(|m| m.set(0));
    let r = GgufFile::from_bytes_with(arc, opts);
    (r, MAX_ALLOC.with(|m| m.get()))
}

macro_rules! expect_err {
    ($name:expr, $bytes:expr, $pat:pat) => {
        expect_err!($name, $bytes, $pat, &ReadOptions::default())
    };
    ($name:expr, $bytes:expr, $pat:pat, $opts:expr) => {{
        let (r, peak) = parse(&$bytes, $opts);
        assert!(peak <= ALLOC_LIMIT, "{}: allocated {} bytes at once", $name, peak);
        match r {
            Err(e @ $pat) => {
                let msg = e.to_string();
                assert!(msg.contains("<memory>"), "{}: message lacks the source: {msg}", $name);
                msg
            }
            Err(e) => panic!("{}: wrong error variant: {e:?}", $name),
            Ok(f) => panic!("{}: parsed successfully: {f:?}", $name),
        }
    }};
}

fn ok(name: &str, bytes: &[u8], opts: &ReadOptions) -> GgufFile {
    let (r, peak) = parse(bytes, opts);
    assert!(peak <= ALLOC_LIMIT, "{name}: allocated {peak} bytes at once");
    r.unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A valid file: arch key, optional alignment, two F32 tensors with data.
fn valid(align: Option<u32>) -> Raw {
    let n_kv = 1 + u64::from(align.is_some());
    let mut r = Raw::header(3, 2, n_kv).kv_str("general.architecture", "llama");
    if let Some(a) = align {
        r = r.kv_u32("general.alignment", a);
    }
    let a = align.unwrap_or(32) as usize;
    let off2 = (16usize).div_ceil(a) * a;
    r = r.tensor("a", &[4], 0, 0).tensor("b", &[2, 2], 0, off2 as u64).pad(a);
    let start = r.len();
    let mut r = r.zeros(off2 + 16);
    for (i, x) in r.b[start..].iter_mut().enumerate() {
        *x = i as u8;
    }
    r
}

#[test]
fn header_cases() {
    let d = ReadOptions::default();
    // HEADER_BAD_MAGIC
    let m = expect_err!("bad magic", Raw::new().bytes(b"FUGG").u32(3).u64(0).u64(0).b, GgufError::BadMagic { .. });
    assert!(m.contains("46 55 47 47") || m.contains("[46, 55, 47, 47]"), "{m}");
    // HEADER_BAD_VERSION_0 / _1 / _FUTURE, and a byte-swapped (big-endian) version
    for (v, hint) in [(0u32, ""), (1, "GGUFv1"), (4, "newer"), (0x0300_0000, "big-endian")] {
        let m = expect_err!(format!("version {v}"), Raw::header(v, 0, 0).b, GgufError::UnsupportedVersion { .. });
        assert!(m.contains(hint), "{m}");
    }
    // GGUF v2 is accepted
    ok("v2 empty", &Raw::header(2, 0, 0).b, &d);
    // HEADER_BAD_N_TENSORS / HEADER_BAD_N_KV (-1), and huge but "positive" counts
    expect_err!("n_tensors -1", Raw::header(3, u64::MAX, 0).b, GgufError::CountTooLarge { .. });
    expect_err!("n_kv -1", Raw::header(3, 0, u64::MAX).b, GgufError::CountTooLarge { .. });
    expect_err!("n_tensors 2^60", Raw::header(3, 1 << 60, 0).b, GgufError::Truncated { .. });
    expect_err!("n_kv 2^60", Raw::header(3, 0, 1 << 60).b, GgufError::Truncated { .. });
    expect_err!("n_kv 1, no kv", Raw::header(3, 0, 1).zeros(8).b, GgufError::Truncated { .. });
    // HEADER_EMPTY
    let f = ok("empty", &Raw::header(3, 0, 0).b, &d);
    assert!(f.metadata().is_empty() && f.tensors().is_empty());
    // every truncation of the header
    let full = Raw::header(3, 0, 0).b;
    for n in 0..full.len() {
        let (r, _) = parse(&full[..n], &d);
        assert!(matches!(r, Err(GgufError::BadMagic { .. } | GgufError::Truncated { .. })), "header cut at {n}: {r:?}");
    }
}

#[test]
fn kv_cases() {
    let d = ReadOptions::default();
    // KV_BAD_KEY_SIZE (-1) and a key longer than the file
    expect_err!("key len -1", Raw::header(3, 0, 1).u64(u64::MAX).zeros(8).b, GgufError::CountTooLarge { .. });
    expect_err!(
        "key past EOF",
        Raw::header(3, 0, 1).u64(1 << 29).bytes(b"abc").zeros(8).b,
        GgufError::Truncated { .. }
    );
    // KV_EMPTY_KEY
    expect_err!("empty key", Raw::header(3, 0, 1).str("").u32(4).u32(1).b, GgufError::EmptyKey { .. });
    // non-UTF-8 key
    expect_err!(
        "utf8 key",
        Raw::header(3, 0, 1).u64(2).bytes(&[0xff, 0xfe]).u32(4).u32(1).b,
        GgufError::InvalidUtf8 { .. }
    );
    // KV_BAD_TYPE (GGUF_TYPE_COUNT) and a bad array element type
    let m =
        expect_err!("bad type", Raw::header(3, 0, 1).str("k").u32(13).zeros(8).b, GgufError::InvalidValueType { .. });
    assert!(m.contains("\"k\"") && m.contains("13"), "{m}");
    expect_err!(
        "bad array elem",
        Raw::header(3, 0, 1).str("k").u32(9).u32(77).u64(0).b,
        GgufError::InvalidValueType { .. }
    );
    // string value past EOF, string length -1
    expect_err!(
        "str past EOF",
        Raw::header(3, 0, 1).str("k").u32(8).u64(100).bytes(b"short").b,
        GgufError::Truncated { .. }
    );
    expect_err!("str len -1", Raw::header(3, 0, 1).str("k").u32(8).u64(u64::MAX).b, GgufError::CountTooLarge { .. });
    // scalar value cut short
    expect_err!("u64 cut", Raw::header(3, 0, 1).str("k").u32(10).u32(0).b, GgufError::Truncated { .. });
    // huge array counts: above 2^30, within 2^30 but past EOF, strings and nested arrays
    for (et, n) in [(0u32, 1u64 << 60), (10, u64::MAX), (8, 1 << 31)] {
        expect_err!(
            format!("array {et} x {n}"),
            Raw::header(3, 0, 1).str("k").u32(9).u32(et).u64(n).zeros(64).b,
            GgufError::CountTooLarge { .. }
        );
    }
    for et in [0u32, 6, 10, 8, 9] {
        expect_err!(
            format!("array {et} x 2^30"),
            Raw::header(3, 0, 1).str("k").u32(9).u32(et).u64(1 << 30).zeros(64).b,
            GgufError::Truncated { .. }
        );
    }
    // an element string inside an array claiming to be long
    expect_err!(
        "array str past EOF",
        Raw::header(3, 0, 1).str("k").u32(9).u32(8).u64(2).str("ok").u64(1 << 20).zeros(16).b,
        GgufError::Truncated { .. }
    );
    // nesting: 64 levels fine, 65 too deep
    let nested = |depth: usize| {
        let mut r = Raw::header(3, 0, 1).str("deep").u32(9);
        for _ in 0..depth - 1 {
            r = r.u32(9).u64(1);
        }
        r.u32(4).u64(1).u32(7)
    };
    let f = ok("nest 64", &nested(64).b, &d);
    assert_eq!(f.metadata().get_array("deep").unwrap().len(), 1);
    let m = expect_err!("nest 65", nested(65).b, GgufError::NestingTooDeep { .. });
    assert!(m.contains("deep"), "{m}");
    expect_err!("nest 100000", nested(100_000).b, GgufError::NestingTooDeep { .. });
    // KV_DUPLICATE_KEY
    let m = expect_err!(
        "dup key",
        Raw::header(3, 0, 2).kv_u32("my_key_0", 1).kv_str("my_key_0", "x").b,
        GgufError::DuplicateKey { .. }
    );
    assert!(m.contains("my_key_0"), "{m}");
    // KV_BAD_ALIGN (13), alignment 0, KV_WRONG_TYPE_ALIGN (i32 / string)
    for a in [13u32, 0, 3, 96] {
        let m = expect_err!(
            format!("align {a}"),
            Raw::header(3, 0, 1).kv_u32("general.alignment", a).b,
            GgufError::BadAlignment { .. }
        );
        assert!(m.contains(&a.to_string()), "{m}");
    }
    expect_err!(
        "align i32",
        Raw::header(3, 0, 1).str("general.alignment").u32(5).u32(32).b,
        GgufError::BadAlignment { .. }
    );
    expect_err!("align str", Raw::header(3, 0, 1).kv_str("general.alignment", "32").b, GgufError::BadAlignment { .. });
    // KV_SUCCESS: one key of every scalar type, a string, arrays of each type
    let mut r = Raw::header(3, 0, 13 + 12);
    for t in 0u32..=12 {
        r = r.str(&format!("s{t}")).u32(t);
        r = match t {
            0 | 1 | 7 => r.u8(1),
            2 | 3 => r.bytes(&[1, 0]),
            4..=6 => r.u32(1),
            8 => r.str("v"),
            9 => r.u32(4).u64(2).u32(1).u32(2),
            _ => r.u64(1),
        };
    }
    for t in (0u32..=12).filter(|&t| t != 9) {
        r = r.str(&format!("a{t}")).u32(9).u32(t).u64(3);
        r = match t {
            0 | 1 | 7 => r.bytes(&[1, 2, 0]),
            2 | 3 => r.zeros(6),
            4..=6 => r.zeros(12),
            8 => r.str("x").str("").str("zz"),
            _ => r.zeros(24),
        };
    }
    let f = ok("kv success", &r.b, &d);
    assert_eq!(f.metadata().len(), 25);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.metadata().get_str_array("a8").unwrap(), vec!["x", "", "zz"]);
    assert_eq!(f.metadata().get_arr_bool("a7").unwrap(), &[true, true, false]);
    // every truncation of that file fails cleanly
    for n in 0..r.len() {
        let (res, peak) = parse(&r.b[..n], &d);
        assert!(peak <= ALLOC_LIMIT);
        assert!(
            matches!(res, Err(GgufError::BadMagic { .. } | GgufError::Truncated { .. })),
            "kv file cut at {n}: {res:?}"
        );
    }
}

#[test]
fn tensor_cases() {
    let d = ReadOptions::default();
    let base = || Raw::header(3, 1, 0);
    // TENSORS_BAD_NAME_SIZE (>= GGML_MAX_NAME) and a name past EOF
    let long = "my_tensor_0_with_a_very_long_name_which_is_longer_than_what_is_allowed";
    let m = expect_err!(
        "long name",
        base().tensor(long, &[4], 0, 0).pad(32).zeros(16).b,
        GgufError::TensorNameTooLong { .. }
    );
    assert!(m.contains(long), "{m}");
    expect_err!("name past EOF", base().u64(1000).bytes(b"abc").zeros(24).b, GgufError::Truncated { .. });
    expect_err!("name -1", base().u64(u64::MAX).zeros(24).b, GgufError::CountTooLarge { .. });
    expect_err!(
        "utf8 name",
        base().u64(1).u8(0xC0).u32(1).u64(4).u32(0).u64(0).pad(32).zeros(16).b,
        GgufError::InvalidUtf8 { .. }
    );
    // TENSORS_BAD_N_DIMS (GGML_MAX_DIMS + 1) and u32::MAX dims
    for nd in [5u32, u32::MAX] {
        let m = expect_err!(format!("n_dims {nd}"), base().str("t").u32(nd).zeros(64).b, GgufError::TooManyDims { .. });
        assert!(m.contains("\"t\""), "{m}");
    }
    // TENSORS_BAD_SHAPE (-1), TENSORS_ZERO_DIM (llama.cpp accepts zero dims; this crate requires >= 1)
    let m = expect_err!("dim -1", base().tensor("t", &[u64::MAX, u64::MAX], 0, 0).b, GgufError::BadDim { .. });
    assert!(m.contains("-1"), "{m}");
    expect_err!("dim 0", base().tensor("t", &[32, 0], 0, 0).pad(32).zeros(128).b, GgufError::BadDim { .. });
    expect_err!("dim i64::MIN", base().tensor("t", &[1 << 63], 0, 0).b, GgufError::BadDim { .. });
    // TENSORS_NE_TOO_BIG: product of dims overflows i64
    let big = 4 * i32::MAX as u64;
    expect_err!("ne too big", base().tensor("t", &[big, big], 24, 0).pad(32).b, GgufError::SizeOverflow { .. });
    expect_err!("ne 4 dims", base().tensor("t", &[1 << 16; 4], 24, 0).pad(32).b, GgufError::SizeOverflow { .. });
    // TENSORS_NBYTES_TOO_BIG: element count fits i64, byte size does not fit the address space
    expect_err!(
        "nbytes too big",
        base().tensor("t", &[1 << 31, 1 << 31], 27, 0).pad(32).b,
        GgufError::SizeOverflow { .. }
    );
    // ... and one that is representable but far past EOF
    expect_err!(
        "nbytes past EOF",
        base().tensor("t", &[1 << 20, 1 << 20], 27, 0).pad(32).b,
        GgufError::TensorOutOfRange { .. }
    );
    // TENSORS_BAD_TYPE (GGML_TYPE_COUNT), removed ids 4 and 5, and absurd ids
    for id in [43u32, 4, 5, 1000, u32::MAX] {
        let m = expect_err!(
            format!("type {id}"),
            base().tensor("t", &[32], id, 0).pad(32).zeros(512).b,
            GgufError::UnknownType { .. }
        );
        assert!(m.contains("\"t\"") && m.contains(&id.to_string()), "{m}");
    }
    // ne0 not a multiple of the block size
    let m = expect_err!(
        "block",
        base().tensor("q", &[33, 2], 2, 0).pad(32).zeros(512).b,
        GgufError::BlockMisaligned { .. }
    );
    assert!(m.contains("Q4_0") && m.contains("33") && m.contains("32"), "{m}");
    // TENSORS_BAD_OFFSET (-1), an aligned offset near u64::MAX, and one just past EOF
    expect_err!(
        "offset -1",
        base().tensor("t", &[4], 0, u64::MAX).pad(32).zeros(16).b,
        GgufError::MisalignedOffset { .. }
    );
    expect_err!(
        "offset huge",
        base().tensor("t", &[4], 0, u64::MAX - 31).pad(32).zeros(16).b,
        GgufError::TensorOutOfRange { .. }
    );
    expect_err!(
        "offset past EOF",
        base().tensor("t", &[4], 0, 32).pad(32).zeros(32).b,
        GgufError::TensorOutOfRange { .. }
    );
    // TENSORS_DUPLICATE_NAME
    let m = expect_err!(
        "dup tensor",
        Raw::header(3, 2, 0).tensor("my_tensor", &[4], 0, 0).tensor("my_tensor", &[4], 0, 32).pad(32).zeros(64).b,
        GgufError::DuplicateTensor { .. }
    );
    assert!(m.contains("my_tensor"), "{m}");
    // TENSORS_BAD_ALIGN: covered by the alignment cases with tensors present
    expect_err!(
        "tensors bad align",
        Raw::header(3, 1, 1).kv_u32("general.alignment", 13).tensor("t", &[4], 0, 0).zeros(64).b,
        GgufError::BadAlignment { .. }
    );
    // TENSORS_INCONSISTENT_ALIGN: offsets laid out with alignment 1 in a file declaring 32
    expect_err!(
        "inconsistent align",
        Raw::header(3, 2, 0).tensor("a", &[3], 24, 0).tensor("b", &[3], 24, 3).pad(32).zeros(32).b,
        GgufError::MisalignedOffset { .. }
    );
    // tensor infos but the file ends before the data section (llama.cpp accepts this without a data
    // context; a loader that maps the data must not)
    expect_err!("no data", base().tensor("t", &[4], 0, 0).b, GgufError::Truncated { .. });
    // overlapping tensors
    let m = expect_err!(
        "overlap",
        Raw::header(3, 2, 0).tensor("a", &[16], 0, 0).tensor("b", &[4], 0, 32).pad(32).zeros(64).b,
        GgufError::TensorOverlap { .. }
    );
    assert!(m.contains("\"a\"") && m.contains("\"b\""), "{m}");
    // I8_S (bitnet.cpp id 37) has no defined size
    expect_err!(
        "i8_s",
        Raw::header(3, 1, 1)
            .kv_str("general.architecture", "bitnet-b1.58")
            .tensor("t", &[4], 37, 0)
            .pad(32)
            .zeros(64)
            .b,
        GgufError::UnsizedType { .. }
    );
    // TENSORS_SUCCESS / TENSORS_CUSTOM_ALIGN (alignment 1 and 64)
    for a in [None, Some(1u32), Some(64)] {
        let f = ok(&format!("tensors align {a:?}"), &valid(a).b, &d);
        assert_eq!(f.alignment(), u64::from(a.unwrap_or(32)));
        assert_eq!(f.tensors().len(), 2);
        assert_eq!(f.tensor("b").unwrap().dims, vec![2, 2]);
        assert_eq!(f.dequantize_tensor(f.tensor("a").unwrap()).unwrap().len(), 4);
    }
}

#[test]
fn data_cases() {
    let d = ReadOptions::default();
    // DATA_SUCCESS / DATA_CUSTOM_ALIGN with data bytes checked
    let f = ok("data ok", &valid(None).b, &d);
    let a = f.tensor_data(f.tensor("a").unwrap()).unwrap();
    assert_eq!(a, (0u8..16).collect::<Vec<_>>().as_slice());
    let b = f.tensor_data(f.tensor("b").unwrap()).unwrap();
    assert_eq!(b, (32u8..48).collect::<Vec<_>>().as_slice());
    // DATA_NOT_ENOUGH_DATA: one byte short
    let mut short = valid(None).b;
    short.pop();
    let m = expect_err!("one byte short", short, GgufError::TensorOutOfRange { .. });
    assert!(m.contains("\"b\""), "{m}");
    // DATA_BAD_ALIGN
    let mut bad = valid(Some(64)).b;
    let pos = bad.windows(17).position(|w| w == b"general.alignment").unwrap() + 17 + 4;
    bad[pos..pos + 4].copy_from_slice(&13u32.to_le_bytes());
    expect_err!("data bad align", bad, GgufError::BadAlignment { .. });
    // DATA_INCONSISTENT_ALIGN: offsets for alignment 1 with data present
    expect_err!(
        "data inconsistent align",
        Raw::header(3, 2, 0).tensor("a", &[5], 24, 0).tensor("b", &[5], 24, 5).pad(32).zeros(64).b,
        GgufError::MisalignedOffset { .. }
    );
    // DATA_MEM_SIZE_OVERFLOW: two I8 tensors of 0x7FFFFFFFFFFFFFC0 elements, 32 bytes of data
    let n = 0x7FFF_FFFF_FFFF_FFC0u64;
    expect_err!(
        "mem size overflow",
        Raw::header(3, 2, 0).tensor("a", &[n], 24, 0).tensor("b", &[n], 24, n).pad(32).zeros(32).b,
        GgufError::TensorOutOfRange { .. }
    );
    // missing padding before the data section
    let r = Raw::header(3, 1, 0).tensor("t", &[4], 0, 0);
    let cut = r.len() + 1;
    let full = r.pad(32).zeros(16).b;
    expect_err!("no padding", full[..cut], GgufError::Truncated { .. });
    // every truncation of a valid file with tensors fails cleanly, the full file parses
    let full = valid(None).b;
    for n in 0..full.len() {
        let (res, peak) = parse(&full[..n], &d);
        assert!(peak <= ALLOC_LIMIT);
        assert!(res.is_err(), "valid file cut at {n} parsed");
    }
}

#[test]
fn type_id_dialects() {
    let i2s = |arch: &str| {
        Raw::header(3, 1, 1)
            .kv_str("general.architecture", arch)
            .tensor("blk.0.ffn_up.weight", &[128, 4], 36, 0)
            .pad(32)
            .zeros(128 + 32)
    };
    let d = ReadOptions::default();
    for arch in ["bitnet-b1.58", "bitnet-25", "bitnet"] {
        let f = ok(arch, &i2s(arch).b, &d);
        let t = f.tensor("blk.0.ffn_up.weight").unwrap();
        assert_eq!(t.ggml_type, GgmlType::I2_S);
        assert_eq!(t.n_bytes, 128 * 4 / 4 + 32);
    }
    let m = expect_err!("i2s llama", i2s("llama").b, GgufError::AmbiguousType { .. });
    assert!(m.contains("blk.0.ffn_up.weight") && m.contains("36") && m.contains("llama"), "{m}");
    let forced = ReadOptions { type_id_dialect: TypeIdDialect::BitnetCpp };
    assert_eq!(ok("forced", &i2s("llama").b, &forced).tensors()[0].ggml_type, GgmlType::I2_S);
    // I2_S needs ne0 % 128 == 0
    expect_err!(
        "i2s block",
        Raw::header(3, 1, 1)
            .kv_str("general.architecture", "bitnet-b1.58")
            .tensor("t", &[64], 36, 0)
            .pad(32)
            .zeros(64)
            .b,
        GgufError::BlockMisaligned { .. }
    );
    // 39 under "bitnet" is MXFP4 upstream but TL2 in bitnet.cpp
    let tl2 = |arch: &str| {
        Raw::header(3, 1, 1).kv_str("general.architecture", arch).tensor("t", &[256, 4], 39, 0).pad(32).zeros(2048)
    };
    expect_err!("39 bitnet", tl2("bitnet").b, GgufError::AmbiguousType { .. });
    assert_eq!(ok("39 gpt-oss", &tl2("gpt-oss").b, &d).tensors()[0].ggml_type, GgmlType::MXFP4);
    assert_eq!(ok("39 bitnet-25", &tl2("bitnet-25").b, &d).tensors()[0].ggml_type, GgmlType::TL2);
    // IQ types are known and sized, but not dequantized
    let f = ok("iq2_xxs", &Raw::header(3, 1, 0).tensor("iq", &[256], 16, 0).pad(32).zeros(66).b, &d);
    let t = f.tensor("iq").unwrap();
    assert_eq!((t.ggml_type, t.n_bytes), (GgmlType::IQ2_XXS, 66));
    let m = f.dequantize_tensor(t).unwrap_err().to_string();
    assert!(m.contains("unsupported tensor type IQ2_XXS in tensor \"iq\""), "{m}");
}

#[test]
fn allocation_meter_works() {
    // A legitimate 2 MiB u8 array must register as a > 1 MiB allocation, proving the meter is live.
    let n = 2usize << 20;
    let bytes = Raw::header(3, 0, 1).str("k").u32(9).u32(0).u64(n as u64).zeros(n).b;
    let (r, peak) = parse(&bytes, &ReadOptions::default());
    assert!(r.is_ok());
    assert!(peak >= n, "meter saw only {peak} bytes");
}
