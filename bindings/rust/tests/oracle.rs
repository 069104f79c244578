//! serde_json as the oracle of the C converter: random msgpack values (nested maps with
//! string keys, arrays, every int width and sign, f32 and f64 including subnormals,
//! powers of two and ten, strings of every escape class) encoded with rmp and converted
//! by `shmring_msgpack_to_json` must read exactly as `serde_json::to_string` of the same
//! value. SHMRING_ORACLE_VALUES (default 1000000) and SHMRING_ORACLE_SEED set the run.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

/// A msgpack value with the width each number is encoded at, serialized to serde_json
/// as the Rust type of that width would be (an f32 as an f32, not widened).
#[derive(Debug, Clone)]
enum V {
    Nil,
    Bool(bool),
    U(u64, u8), // value, encoding: 0 fixint, 1 u8, 2 u16, 3 u32, 4 u64, 5..8 i8..i64
    I(i64, u8), // negative; 0 fixint, 1 i8, 2 i16, 3 i32, 4 i64
    F32(f32),
    F64(f64),
    Str(String, u8), // 0 shortest (rmp), 1 str8, 2 str16, 3 str32
    Arr(Vec<V>, u8), // 0 shortest (rmp), 1 array16, 2 array32
    Map(Vec<(String, V)>, u8),
}

impl Serialize for V {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::Nil => s.serialize_unit(),
            V::Bool(b) => s.serialize_bool(*b),
            V::U(u, _) => s.serialize_u64(*u),
            V::I(i, _) => s.serialize_i64(*i),
            V::F32(f) => s.serialize_f32(*f),
            V::F64(f) => s.serialize_f64(*f),
            V::Str(t, _) => s.serialize_str(t),
            V::Arr(items, _) => {
                let mut q = s.serialize_seq(Some(items.len()))?;
                for it in items {
                    q.serialize_element(it)?;
                }
                q.end()
            }
            V::Map(entries, _) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

fn put_len(out: &mut Vec<u8>, marker: u8, len: usize, bytes: usize) {
    out.push(marker);
    out.extend_from_slice(&(len as u64).to_be_bytes()[8 - bytes..]);
}

fn encode(v: &V, out: &mut Vec<u8>) {
    use rmp::encode as e;
    match v {
        V::Nil => e::write_nil(out).unwrap(),
        V::Bool(b) => e::write_bool(out, *b).unwrap(),
        V::U(u, w) => match w {
            0 => e::write_pfix(out, *u as u8).unwrap(),
            1 => e::write_u8(out, *u as u8).unwrap(),
            2 => e::write_u16(out, *u as u16).unwrap(),
            3 => e::write_u32(out, *u as u32).unwrap(),
            4 => e::write_u64(out, *u).unwrap(),
            5 => e::write_i8(out, *u as i8).unwrap(),
            6 => e::write_i16(out, *u as i16).unwrap(),
            7 => e::write_i32(out, *u as i32).unwrap(),
            _ => e::write_i64(out, *u as i64).unwrap(),
        },
        V::I(i, w) => match w {
            0 => e::write_nfix(out, *i as i8).unwrap(),
            1 => e::write_i8(out, *i as i8).unwrap(),
            2 => e::write_i16(out, *i as i16).unwrap(),
            3 => e::write_i32(out, *i as i32).unwrap(),
            _ => e::write_i64(out, *i).unwrap(),
        },
        V::F32(f) => e::write_f32(out, *f).unwrap(),
        V::F64(f) => e::write_f64(out, *f).unwrap(),
        V::Str(t, w) => {
            match w {
                0 => e::write_str_len(out, t.len() as u32).map(|_| ()).unwrap(),
                1 => put_len(out, 0xd9, t.len(), 1),
                2 => put_len(out, 0xda, t.len(), 2),
                _ => put_len(out, 0xdb, t.len(), 4),
            }
            out.extend_from_slice(t.as_bytes());
        }
        V::Arr(items, w) => {
            match w {
                0 => e::write_array_len(out, items.len() as u32).map(|_| ()).unwrap(),
                1 => put_len(out, 0xdc, items.len(), 2),
                _ => put_len(out, 0xdd, items.len(), 4),
            }
            for it in items {
                encode(it, out);
            }
        }
        V::Map(entries, w) => {
            match w {
                0 => e::write_map_len(out, entries.len() as u32).map(|_| ()).unwrap(),
                1 => put_len(out, 0xde, entries.len(), 2),
                _ => put_len(out, 0xdf, entries.len(), 4),
            }
            for (k, v) in entries {
                encode(&V::Str(k.clone(), 0), out);
                encode(v, out);
            }
        }
    }
}

/// Characters from every class the converter treats apart: plain ASCII, the escaped
/// ones, other controls, DEL, 2-, 3- and 4-byte UTF-8, U+2028, U+FFFD, a BOM.
fn gen_char(r: &mut StdRng) -> char {
    match r.gen_range(0..12) {
        0..=3 => r.gen_range(0x20u8..0x7f) as char,
        4 => ['"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}'][r.gen_range(0..8)],
        5 => char::from_u32(r.gen_range(0..0x20)).unwrap(),
        6 => '\u{7f}',
        7 => char::from_u32(r.gen_range(0x80..0x800)).unwrap(),
        8 => loop {
            if let Some(c) = char::from_u32(r.gen_range(0x800..0x10000)) {
                break c;
            }
        },
        9 => char::from_u32(r.gen_range(0x10000..0x110000)).unwrap(),
        10 => ['\u{2028}', '\u{2029}', '\u{fffd}', '\u{feff}', 'é', '€', '😀'][r.gen_range(0..7)],
        _ => 'a',
    }
}

fn gen_string(r: &mut StdRng) -> String {
    let n = match r.gen_range(0..10) {
        0 => 0,
        1..=6 => r.gen_range(1..20),
        7 | 8 => r.gen_range(20..70),
        _ => r.gen_range(70..400),
    };
    if r.gen_bool(0.3) {
        // ASCII runs, the converter's vector fast path
        (0..n).map(|_| r.gen_range(0x20u8..0x7f) as char).collect()
    } else {
        (0..n).map(|_| gen_char(r)).collect()
    }
}

fn gen_f64(r: &mut StdRng) -> f64 {
    match r.gen_range(0..10) {
        0 => f64::from_bits(r.gen()),                        // anything, NaN and inf too
        1 => f64::from_bits(r.gen_range(1..1u64 << 52)),     // subnormal
        2 => 2f64.powi(r.gen_range(-1074..1024)),            // power of two
        3 => format!("1e{}", r.gen_range(-324..309)).parse().unwrap(), // power of ten
        4 => r.gen_range(-1_000_000i64..1_000_000) as f64,   // integral
        5 => format!("{}.{}", r.gen_range(0..100000), r.gen_range(0..1000)).parse().unwrap(),
        6 => r.gen::<f64>() * 10f64.powi(r.gen_range(-30..30)),
        7 => [0.0, -0.0, f64::MIN_POSITIVE, f64::MAX, f64::MIN, f64::EPSILON, 5e-324][r.gen_range(0..7)],
        8 => f64::from_bits(2f64.powi(r.gen_range(-1022..1024)).to_bits() + r.gen_range(0..3) - 1),
        _ => -f64::from_bits(r.gen_range(0..0x7ff0_0000_0000_0000)),
    }
}

fn gen_f32(r: &mut StdRng) -> f32 {
    match r.gen_range(0..9) {
        0 => f32::from_bits(r.gen()),
        1 => f32::from_bits(r.gen_range(1..1u32 << 23)),
        2 => 2f32.powi(r.gen_range(-149..128)),
        3 => format!("1e{}", r.gen_range(-45..39)).parse().unwrap(),
        4 => r.gen_range(-100_000i32..100_000) as f32,
        5 => format!("{}.{}", r.gen_range(0..1000), r.gen_range(0..100)).parse().unwrap(),
        6 => [0.0, -0.0, f32::MIN_POSITIVE, f32::MAX, f32::MIN, f32::EPSILON][r.gen_range(0..6)],
        7 => f32::from_bits(2f32.powi(r.gen_range(-126..128)).to_bits() + r.gen_range(0..3) - 1),
        _ => -f32::from_bits(r.gen_range(0..0x7f80_0000)),
    }
}

fn gen_uint(r: &mut StdRng) -> V {
    // pick a width, then a value that needs it (or fits it)
    let w: u8 = r.gen_range(0..9);
    let u: u64 = match w {
        0 => r.gen_range(0..128),
        1 => r.gen_range(0..=u8::MAX as u64),
        2 => r.gen_range(0..=u16::MAX as u64),
        3 => r.gen_range(0..=u32::MAX as u64),
        4 => [r.gen(), u64::MAX, 1 << 63, (1 << 53) + 1][r.gen_range(0..4)],
        5 => r.gen_range(0..=i8::MAX as u64),
        6 => r.gen_range(0..=i16::MAX as u64),
        7 => r.gen_range(0..=i32::MAX as u64),
        _ => r.gen_range(0..=i64::MAX as u64),
    };
    V::U(u, w)
}

fn gen_int(r: &mut StdRng) -> V {
    let w: u8 = r.gen_range(0..5);
    let i: i64 = match w {
        0 => r.gen_range(-32..0),
        1 => r.gen_range(i8::MIN as i64..0),
        2 => r.gen_range(i16::MIN as i64..0),
        3 => r.gen_range(i32::MIN as i64..0),
        _ => [r.gen_range(i64::MIN..0), i64::MIN, -1][r.gen_range(0..3)],
    };
    V::I(i, w)
}

fn gen_value(r: &mut StdRng, depth: u32) -> V {
    let leaf_only = depth >= 5;
    match r.gen_range(0..if leaf_only { 8 } else { 11 }) {
        0 => V::Nil,
        1 => V::Bool(r.gen()),
        2 => gen_uint(r),
        3 => gen_int(r),
        4 => V::F32(gen_f32(r)),
        5 => V::F64(gen_f64(r)),
        6 | 7 => {
            let t = gen_string(r);
            // str8 holds at most 255 bytes
            let w = if r.gen_bool(0.8) { 0 } else { r.gen_range(if t.len() < 256 { 1 } else { 2 }..4) };
            V::Str(t, w)
        }
        8 => {
            let n = if r.gen_bool(0.9) { r.gen_range(0..5) } else { r.gen_range(5..20) };
            V::Arr((0..n).map(|_| gen_value(r, depth + 1)).collect(), if r.gen_bool(0.8) { 0 } else { r.gen_range(1..3) })
        }
        _ => {
            let n = if r.gen_bool(0.9) { r.gen_range(0..5) } else { r.gen_range(5..20) };
            let e = (0..n).map(|_| (gen_string(r), gen_value(r, depth + 1))).collect();
            V::Map(e, if r.gen_bool(0.8) { 0 } else { r.gen_range(1..3) })
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn check(v: &V, buf: &mut Vec<u8>, seed: u64, i: u64) {
    buf.clear();
    encode(v, buf);
    let got = shmring::msgpack_to_json(buf).unwrap_or_else(|e| panic!("seed {} value {}: {} for {:?}", seed, i, e, v));
    let want = serde_json::to_string(v).unwrap();
    if got != want {
        panic!("seed {} value {}:\n value {:?}\n msgpack {:02x?}\n shmring    {}\n serde_json {}", seed, i, v, buf, got, want);
    }
}

#[test]
fn random_values_match_serde_json() {
    let n = env_u64("SHMRING_ORACLE_VALUES", 1_000_000);
    let seed = env_u64("SHMRING_ORACLE_SEED", std::process::id() as u64 ^ 0x5eed);
    let mut r = StdRng::seed_from_u64(seed);
    let mut buf = Vec::new();
    let t0 = std::time::Instant::now();
    for i in 0..n {
        // Half the values are records (top-level maps), the rest anything.
        let v = if i % 2 == 0 {
            let k = r.gen_range(1..8);
            V::Map((0..k).map(|_| (gen_string(&mut r), gen_value(&mut r, 1))).collect(), 0)
        } else {
            gen_value(&mut r, 0)
        };
        check(&v, &mut buf, seed, i);
    }
    eprintln!("{} values, seed {}, {:.1} s", n, seed, t0.elapsed().as_secs_f64());
}

/// Floats alone, many more of them: every layout boundary and the digit search.
#[test]
fn random_floats_match_serde_json() {
    let n = env_u64("SHMRING_ORACLE_VALUES", 1_000_000);
    let seed = env_u64("SHMRING_ORACLE_SEED", std::process::id() as u64 ^ 0xf10a7);
    let mut r = StdRng::seed_from_u64(seed);
    let mut buf = Vec::new();
    for i in 0..n {
        check(&V::F64(gen_f64(&mut r)), &mut buf, seed, i);
        check(&V::F32(gen_f32(&mut r)), &mut buf, seed, i);
    }
    // Each power of ten and two at its boundaries, both widths.
    for k in -330..=310 {
        let p: f64 = format!("1e{}", k).parse().unwrap();
        for v in [p, f64::from_bits(p.to_bits().wrapping_sub(1)), f64::from_bits(p.to_bits() + 1), -p] {
            check(&V::F64(v), &mut buf, seed, 0);
            check(&V::F32(v as f32), &mut buf, seed, 0);
        }
    }
    for k in -1074..1024 {
        check(&V::F64(2f64.powi(k)), &mut buf, seed, 0);
    }
    for k in -149..128 {
        check(&V::F32(2f32.powi(k)), &mut buf, seed, 0);
    }
}

/// Every f32 bit pattern (or every SHMRING_F32_STRIDE-th): minutes of CPU, so ignored;
/// `cargo test --release --test oracle -- --ignored` runs it.
#[test]
#[ignore]
fn all_f32_match_serde_json() {
    let stride = env_u64("SHMRING_F32_STRIDE", 1) as usize;
    let mut buf = Vec::new();
    for bits in (0..=u32::MAX).step_by(stride) {
        check(&V::F32(f32::from_bits(bits)), &mut buf, 0, bits as u64);
    }
}
