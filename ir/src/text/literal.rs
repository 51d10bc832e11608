//! Tensor literals: how elements are spelled (`dense<[...]>`), the ONNX storage fields (`as
//! float_data`), and the test generators (`#splat`, `#iota`, `#rand`). Floats print in Rust's
//! shortest round-trip form and NaNs other than the canonical one print their bits, so every
//! printed element reads back bit-exactly.

use crate::dtype::DType;
use crate::tensor::TensorData;
use bytes::Bytes;
use std::fmt::Write;

/// Generators refuse to build more elements than this (a typo in a dim should not allocate
/// gigabytes).
pub(super) const MAX_GENERATED: u64 = 1 << 26;

/// The ONNX `TensorProto` field a tensor's data is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Raw,
    Floats,
    Int32s,
    Int64s,
    Doubles,
    Uint64s,
    Strings,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Raw => "raw_data",
            Field::Floats => "float_data",
            Field::Int32s => "int32_data",
            Field::Int64s => "int64_data",
            Field::Doubles => "double_data",
            Field::Uint64s => "uint64_data",
            Field::Strings => "string_data",
        }
    }

    pub fn from_name(s: &str) -> Option<Field> {
        [
            Field::Raw,
            Field::Floats,
            Field::Int32s,
            Field::Int64s,
            Field::Doubles,
            Field::Uint64s,
            Field::Strings,
        ]
        .into_iter()
        .find(|f| f.name() == s)
    }

    pub fn of(data: &TensorData) -> Field {
        match data {
            TensorData::Raw(_) | TensorData::External(_) => Field::Raw,
            TensorData::Floats(_) => Field::Floats,
            TensorData::Int32s(_) => Field::Int32s,
            TensorData::Int64s(_) => Field::Int64s,
            TensorData::Doubles(_) => Field::Doubles,
            TensorData::Uint64s(_) => Field::Uint64s,
            TensorData::Strings(_) => Field::Strings,
        }
    }
}

/// How elements of a dtype are spelled in `dense<[...]>`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// IEEE floats of this many bits (16 means f16, `Bf16` is separate).
    F32,
    F64,
    F16,
    Bf16,
    Int {
        bits: u32,
        signed: bool,
    },
    Bool,
    /// Flat (re, im) pairs.
    C64,
    C128,
    Str,
}

fn spelling(dtype: DType) -> Option<Spelling> {
    Some(match dtype {
        DType::F32 => Spelling::F32,
        DType::F64 => Spelling::F64,
        DType::F16 => Spelling::F16,
        DType::Bf16 => Spelling::Bf16,
        DType::Bool => Spelling::Bool,
        DType::C64 => Spelling::C64,
        DType::C128 => Spelling::C128,
        DType::Str => Spelling::Str,
        d if d.is_int() => Spelling::Int {
            bits: d.bits()?,
            signed: matches!(
                d,
                DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::I4 | DType::I2
            ),
        },
        // f8 and f4 formats: no conversion at hand, so they print as hex bytes.
        _ => return None,
    })
}

impl Spelling {
    /// Bits of one scalar in `raw_data` (a complex element is two scalars).
    fn width(self) -> u32 {
        match self {
            Spelling::F32 | Spelling::C64 => 32,
            Spelling::F64 | Spelling::C128 => 64,
            Spelling::F16 | Spelling::Bf16 => 16,
            Spelling::Int { bits, .. } => bits,
            Spelling::Bool => 8,
            Spelling::Str => 0,
        }
    }

    fn per_element(self) -> u64 {
        if matches!(self, Spelling::C64 | Spelling::C128) {
            2
        } else {
            1
        }
    }
}

fn mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

// ---------------------------------------------------------------------------------------------
// Printing

const NAN_F32: u64 = 0x7fc0_0000;
const NAN_F64: u64 = 0x7ff8_0000_0000_0000;
const NAN_F16: u64 = 0x7e00;
const NAN_BF16: u64 = 0x7fc0;

fn write_nan(out: &mut String, bits: u64, width: u32) {
    let (canon, sign) = match width {
        16 => (NAN_F16, 0x8000),
        32 => (NAN_F32, 0x8000_0000),
        _ => (NAN_F64, 1 << 63),
    };
    if bits == canon {
        out.push_str("nan");
    } else if bits == canon | sign {
        out.push_str("-nan");
    } else {
        let digits = (width / 4) as usize;
        let _ = write!(out, "nan(0x{bits:0digits$x})");
    }
}

pub(super) fn write_f32(out: &mut String, v: f32) {
    if v.is_nan() {
        write_nan(out, v.to_bits() as u64, 32);
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
    } else {
        // Debug is the shortest form that reads back exactly, and always has '.' or 'e'.
        let _ = write!(out, "{v:?}");
    }
}

pub(super) fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        write_nan(out, v.to_bits(), 64);
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

fn write_scalar(out: &mut String, sp: Spelling, bits: u64) {
    match sp {
        Spelling::F32 | Spelling::C64 => write_f32(out, f32::from_bits(bits as u32)),
        Spelling::F64 | Spelling::C128 => write_f64(out, f64::from_bits(bits)),
        Spelling::F16 | Spelling::Bf16 => {
            let v = if sp == Spelling::F16 {
                half::f16::from_bits(bits as u16).to_f32()
            } else {
                half::bf16::from_bits(bits as u16).to_f32()
            };
            if v.is_nan() {
                // The payload is only exact in the type's own bits.
                let canon = if sp == Spelling::F16 {
                    NAN_F16
                } else {
                    NAN_BF16
                };
                if bits == canon {
                    out.push_str("nan");
                } else if bits == canon | 0x8000 {
                    out.push_str("-nan");
                } else {
                    let _ = write!(out, "nan(0x{bits:04x})");
                }
            } else {
                write_f32(out, v);
            }
        }
        Spelling::Int { bits: w, signed } => {
            if signed {
                let shift = 64 - w;
                let v = ((bits << shift) as i64) >> shift;
                let _ = write!(out, "{v}");
            } else {
                let _ = write!(out, "{bits}");
            }
        }
        Spelling::Bool => out.push_str(if bits != 0 { "true" } else { "false" }),
        Spelling::Str => {}
    }
}

/// Scalars of packed little-endian data, `count` of them of `width` bits.
fn read_scalars(raw: &[u8], width: u32, count: u64) -> impl Iterator<Item = u64> + '_ {
    (0..count).map(move |k| {
        if width >= 8 {
            let n = (width / 8) as usize;
            let start = k as usize * n;
            let mut v = 0u64;
            for (j, b) in raw.iter().skip(start).take(n).enumerate() {
                v |= (*b as u64) << (8 * j);
            }
            v
        } else {
            let per = (8 / width) as u64;
            let byte = raw.get((k / per) as usize).copied().unwrap_or(0) as u64;
            (byte >> ((k % per) as u32 * width)) & mask(width)
        }
    })
}

/// `dense<[...]>` for `n` elements of packed data, or `None` when the data cannot be spelled
/// so that it reads back byte-identical (wrong length, non-zero padding bits, a bool that is
/// neither 0 nor 1, a dtype without a spelling).
pub(super) fn dense_text(dtype: DType, raw: &[u8], n: u64) -> Option<String> {
    let sp = spelling(dtype)?;
    if sp == Spelling::Str || dtype.raw_len(n)? != raw.len() as u64 {
        return None;
    }
    let width = sp.width();
    let count = n.checked_mul(sp.per_element())?;
    if width < 8 {
        let used = count * width as u64;
        let total = raw.len() as u64 * 8;
        if used < total {
            let last = *raw.last()? as u64;
            if last >> (used % 8) != 0 {
                return None;
            }
        }
    }
    if sp == Spelling::Bool && raw.iter().any(|&b| b > 1) {
        return None;
    }
    let mut out = String::with_capacity(raw.len() * 3 + 10);
    out.push_str("dense<[");
    for (k, bits) in read_scalars(raw, width, count).enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        write_scalar(&mut out, sp, bits);
    }
    out.push_str("]>");
    Some(out)
}

pub(super) fn hex_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() * 2 + 8);
    out.push_str("hex<\"");
    for b in raw {
        let _ = write!(out, "{b:02x}");
    }
    out.push_str("\">");
    out
}

pub(super) fn strings_text(prefix: &str, strings: &[Bytes]) -> String {
    let mut out = String::new();
    out.push_str(prefix);
    out.push_str("<[");
    for (i, s) in strings.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        super::syntax::write_bytes_lit(&mut out, s);
    }
    out.push_str("]>");
    out
}

/// A typed field printed verbatim (`int32_data<[...]>`), for data that no element spelling plus
/// `as <field>` reproduces.
pub(super) fn verbatim_text(data: &TensorData) -> String {
    let mut out = String::new();
    let field = Field::of(data);
    out.push_str(field.name());
    out.push_str("<[");
    fn list<T>(out: &mut String, xs: &[T], f: impl Fn(&mut String, &T)) {
        for (i, x) in xs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            f(out, x);
        }
    }
    match data {
        TensorData::Floats(v) => list(&mut out, v, |o, x| write_f32(o, *x)),
        TensorData::Doubles(v) => list(&mut out, v, |o, x| write_f64(o, *x)),
        TensorData::Int32s(v) => list(&mut out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::Int64s(v) => list(&mut out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::Uint64s(v) => list(&mut out, v, |o, x| {
            let _ = write!(o, "{x}");
        }),
        TensorData::Strings(v) => list(&mut out, v, |o, x| super::syntax::write_bytes_lit(o, x)),
        TensorData::Raw(_) | TensorData::External(_) => {}
    }
    out.push_str("]>");
    out
}

/// Convert packed data into a typed field, the way an ONNX writer would fill it. `None` when the
/// field cannot hold the dtype or the length is not a whole number of elements.
pub(super) fn raw_to_field(dtype: DType, raw: &[u8], field: Field) -> Option<TensorData> {
    fn chunks<const N: usize>(raw: &[u8]) -> Option<impl Iterator<Item = [u8; N]> + '_> {
        if raw.len() % N != 0 {
            return None;
        }
        Some(raw.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        }))
    }
    Some(match (field, dtype) {
        (Field::Raw, _) => TensorData::Raw(Bytes::copy_from_slice(raw)),
        (Field::Floats, DType::F32 | DType::C64) => {
            TensorData::Floats(chunks::<4>(raw)?.map(f32::from_le_bytes).collect())
        }
        (Field::Doubles, DType::F64 | DType::C128) => {
            TensorData::Doubles(chunks::<8>(raw)?.map(f64::from_le_bytes).collect())
        }
        (Field::Int64s, DType::I64) => {
            TensorData::Int64s(chunks::<8>(raw)?.map(i64::from_le_bytes).collect())
        }
        (Field::Uint64s, DType::U64) => {
            TensorData::Uint64s(chunks::<8>(raw)?.map(u64::from_le_bytes).collect())
        }
        (Field::Uint64s, DType::U32) => TensorData::Uint64s(
            chunks::<4>(raw)?
                .map(|b| u32::from_le_bytes(b) as u64)
                .collect(),
        ),
        (Field::Int32s, DType::I32) => {
            TensorData::Int32s(chunks::<4>(raw)?.map(i32::from_le_bytes).collect())
        }
        (Field::Int32s, DType::I16) => TensorData::Int32s(
            chunks::<2>(raw)?
                .map(|b| i16::from_le_bytes(b) as i32)
                .collect(),
        ),
        (Field::Int32s, DType::U16 | DType::F16 | DType::Bf16) => TensorData::Int32s(
            chunks::<2>(raw)?
                .map(|b| u16::from_le_bytes(b) as i32)
                .collect(),
        ),
        (Field::Int32s, DType::I8) => {
            TensorData::Int32s(raw.iter().map(|&b| b as i8 as i32).collect())
        }
        (Field::Int32s, d) if d.bits().is_some_and(|b| b <= 8) => {
            TensorData::Int32s(raw.iter().map(|&b| b as i32).collect())
        }
        _ => return None,
    })
}

/// Do two storages hold the same bits? (`==` on floats would say no for NaNs.)
pub(super) fn same_bits(a: &TensorData, b: &TensorData) -> bool {
    match (a, b) {
        (TensorData::Floats(x), TensorData::Floats(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (TensorData::Doubles(x), TensorData::Doubles(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// One element as written.
#[derive(Clone, Debug)]
pub(super) enum Scalar<'s> {
    /// A number lexeme (`1`, `-2.5e3`, `inf`, `-nan`, `0x10`).
    Num(&'s str),
    /// `nan(0x...)`: bits in the dtype's own width.
    NanBits(u64),
    Bool(bool),
    Str(Vec<u8>),
}

/// Accumulates elements into packed little-endian bytes (or strings).
pub(super) struct DenseBuilder {
    dtype: DType,
    sp: Spelling,
    bytes: Vec<u8>,
    strings: Vec<Bytes>,
    scalars: u64,
}

impl DenseBuilder {
    pub fn new(dtype: DType) -> Result<DenseBuilder, String> {
        let sp = spelling(dtype).ok_or_else(|| {
            format!("elements of {dtype} cannot be spelled in dense<...>; use hex<\"...\">")
        })?;
        Ok(DenseBuilder {
            dtype,
            sp,
            bytes: Vec::new(),
            strings: Vec::new(),
            scalars: 0,
        })
    }

    /// Scalars pushed so far.
    pub fn len(&self) -> u64 {
        self.scalars
    }

    /// Scalars needed for `n` elements.
    pub fn scalars_for(&self, n: u64) -> Option<u64> {
        n.checked_mul(self.sp.per_element())
    }

    fn push_bits(&mut self, bits: u64) {
        let width = self.sp.width();
        if width >= 8 {
            let n = (width / 8) as usize;
            self.bytes.extend_from_slice(&bits.to_le_bytes()[..n]);
        } else {
            let per = (8 / width) as u64;
            let slot = (self.scalars % per) as u32;
            if slot == 0 {
                self.bytes.push(0);
            }
            if let Some(last) = self.bytes.last_mut() {
                *last |= ((bits & mask(width)) << (slot * width)) as u8;
            }
        }
        self.scalars += 1;
    }

    /// The bits of one written scalar, or why it does not fit the dtype.
    fn encode(&self, s: &Scalar<'_>) -> Result<Encoded, String> {
        let dtype = self.dtype;
        match (self.sp, s) {
            (Spelling::Str, Scalar::Str(b)) => Ok(Encoded::Str(Bytes::copy_from_slice(b))),
            (Spelling::Str, _) => Err(format!("expected a string element for {dtype}")),
            (Spelling::Bool, Scalar::Bool(b)) => Ok(Encoded::Bits(*b as u64)),
            (Spelling::Bool, Scalar::Num("0")) => Ok(Encoded::Bits(0)),
            (Spelling::Bool, Scalar::Num("1")) => Ok(Encoded::Bits(1)),
            (Spelling::Bool, _) => Err("expected true or false for bool".into()),
            (Spelling::Int { bits, signed }, Scalar::Num(t)) => int_bits(t, bits, signed)
                .map(Encoded::Bits)
                .map_err(|e| format!("{e} for {dtype}")),
            (Spelling::Int { .. }, _) => Err(format!("expected an integer element for {dtype}")),
            (sp, Scalar::NanBits(b)) => {
                if *b <= mask(sp.width()) {
                    Ok(Encoded::Bits(*b))
                } else {
                    Err(format!("NaN bits 0x{b:x} do not fit {dtype}"))
                }
            }
            (sp, Scalar::Num(t)) => float_bits(sp, t).map(Encoded::Bits),
            (_, _) => Err(format!("expected a number element for {dtype}")),
        }
    }

    pub fn push(&mut self, s: &Scalar<'_>) -> Result<(), String> {
        let e = self.encode(s)?;
        self.push_encoded(&e);
        Ok(())
    }

    fn push_encoded(&mut self, e: &Encoded) {
        match e {
            Encoded::Bits(b) => self.push_bits(*b),
            Encoded::Str(s) => {
                self.strings.push(s.clone());
                self.scalars += 1;
            }
        }
    }

    pub fn finish(self) -> TensorData {
        if self.sp == Spelling::Str {
            TensorData::Strings(self.strings)
        } else {
            TensorData::Raw(Bytes::from(self.bytes))
        }
    }

    /// `#splat<v>`: every element `v`.
    pub fn splat(&mut self, s: &Scalar<'_>, n: u64) -> Result<(), String> {
        let scalars = self.checked_generated(n)?;
        let e = self.encode(s)?;
        for _ in 0..scalars {
            self.push_encoded(&e);
        }
        Ok(())
    }

    /// `#iota`: 0, 1, 2, ... converted to the dtype (integers wrap, bools alternate).
    pub fn iota(&mut self, n: u64) -> Result<(), String> {
        self.checked_generated(n)?;
        self.generate(n, "#iota", |k| (k as f64, k as i128))
    }

    /// `#rand<seed>`: uniform(-1, 1) floats, small integers (-8..=7, or 0..=15 unsigned), from
    /// splitmix64 so that results are the same everywhere.
    pub fn rand(&mut self, seed: u64, n: u64) -> Result<(), String> {
        self.checked_generated(n)?;
        let mut state = seed;
        let signed = matches!(self.sp, Spelling::Int { signed: true, .. });
        self.generate(n, "#rand", |_| {
            let x = splitmix64(&mut state);
            let f = (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0;
            let i = if signed {
                (x % 16) as i128 - 8
            } else {
                (x % 16) as i128
            };
            (f, i)
        })
    }

    fn checked_generated(&self, n: u64) -> Result<u64, String> {
        match self.scalars_for(n) {
            Some(s) if n <= MAX_GENERATED => Ok(s),
            _ => Err(format!(
                "generated constant would have {n} elements; the limit is {MAX_GENERATED}"
            )),
        }
    }

    fn generate(
        &mut self,
        n: u64,
        what: &str,
        mut next: impl FnMut(u64) -> (f64, i128),
    ) -> Result<(), String> {
        let sp = self.sp;
        for k in 0..n {
            let (f, i) = next(k);
            let bits = match sp {
                Spelling::F32 => (f as f32).to_bits() as u64,
                Spelling::F64 => f.to_bits(),
                Spelling::F16 => half::f16::from_f64(f).to_bits() as u64,
                Spelling::Bf16 => half::bf16::from_f64(f).to_bits() as u64,
                // Wrap like a cast (16 is a multiple of every narrow range, so #rand stays
                // uniform).
                Spelling::Int { bits, .. } => (i as u64) & mask(bits),
                Spelling::Bool => (i.rem_euclid(2)) as u64,
                Spelling::C64 | Spelling::C128 | Spelling::Str => {
                    return Err(format!("{what} does not support dtype {}", self.dtype))
                }
            };
            self.push_bits(bits);
        }
        Ok(())
    }
}

enum Encoded {
    Bits(u64),
    Str(Bytes),
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn int_range(bits: u32, signed: bool) -> (i128, i128) {
    if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

/// Parse an integer lexeme (decimal or `0x` hex) into a value of the given width.
pub(super) fn parse_int(t: &str) -> Option<i128> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i128::from_str_radix(h, 16).ok()?
    } else {
        if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        body.parse::<i128>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn int_bits(t: &str, bits: u32, signed: bool) -> Result<u64, String> {
    let v = parse_int(t).ok_or_else(|| format!("expected an integer, found {t}"))?;
    let (lo, hi) = int_range(bits, signed);
    if v < lo || v > hi {
        return Err(format!("integer {v} is out of range"));
    }
    Ok((v as u64) & mask(bits))
}

/// Parse a float lexeme as f32, exactly (no detour through f64).
pub(super) fn parse_f32(t: &str) -> Option<f32> {
    match t {
        "nan" => Some(f32::from_bits(NAN_F32 as u32)),
        "-nan" => Some(f32::from_bits((NAN_F32 | 0x8000_0000) as u32)),
        "inf" => Some(f32::INFINITY),
        "-inf" => Some(f32::NEG_INFINITY),
        _ if t.contains(['x', 'X', 'n', 'N', 'i', 'I']) => None,
        _ => t.parse().ok(),
    }
}

pub(super) fn parse_f64(t: &str) -> Option<f64> {
    match t {
        "nan" => Some(f64::from_bits(NAN_F64)),
        "-nan" => Some(f64::from_bits(NAN_F64 | 1 << 63)),
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ if t.contains(['x', 'X', 'n', 'N', 'i', 'I']) => None,
        _ => t.parse().ok(),
    }
}

fn float_bits(sp: Spelling, t: &str) -> Result<u64, String> {
    let bad = || format!("expected a number, found {t}");
    let neg_nan = t == "-nan";
    Ok(match sp {
        Spelling::F64 | Spelling::C128 => parse_f64(t).ok_or_else(bad)?.to_bits(),
        Spelling::F32 | Spelling::C64 => parse_f32(t).ok_or_else(bad)?.to_bits() as u64,
        Spelling::F16 | Spelling::Bf16 => {
            let v = parse_f32(t).ok_or_else(bad)?;
            if v.is_nan() {
                let canon = if sp == Spelling::F16 {
                    NAN_F16
                } else {
                    NAN_BF16
                };
                if neg_nan {
                    canon | 0x8000
                } else {
                    canon
                }
            } else if sp == Spelling::F16 {
                half::f16::from_f32(v).to_bits() as u64
            } else {
                half::bf16::from_f32(v).to_bits() as u64
            }
        }
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(dtype: DType, scalars: &[Scalar<'_>]) -> (String, Vec<u8>) {
        let mut b = DenseBuilder::new(dtype).unwrap();
        for s in scalars {
            b.push(s).unwrap();
        }
        let n = b.len() / b.scalars_for(1).unwrap();
        let TensorData::Raw(raw) = b.finish() else {
            panic!("numeric data is raw")
        };
        (dense_text(dtype, &raw, n).unwrap(), raw.to_vec())
    }

    #[test]
    fn elements_read_back_exactly() {
        let (t, _) = roundtrip(
            DType::F32,
            &[
                Scalar::Num("0.1"),
                Scalar::Num("-0.0"),
                Scalar::Num("1e-45"),
                Scalar::Num("-inf"),
                Scalar::NanBits(0x7fc0_0001),
                Scalar::Num("-nan"),
            ],
        );
        assert_eq!(t, "dense<[0.1, -0.0, 1e-45, -inf, nan(0x7fc00001), -nan]>");
        let (t, raw) = roundtrip(
            DType::I4,
            &[Scalar::Num("-8"), Scalar::Num("7"), Scalar::Num("1")],
        );
        assert_eq!(t, "dense<[-8, 7, 1]>");
        assert_eq!(raw, vec![0x78, 0x01]);
        let (t, _) = roundtrip(DType::F16, &[Scalar::Num("0.1"), Scalar::NanBits(0x7e01)]);
        assert_eq!(t, "dense<[0.099975586, nan(0x7e01)]>");
        // A padding nibble that is not zero cannot be spelled element-wise.
        assert_eq!(dense_text(DType::U4, &[0xff], 1), None);
    }

    #[test]
    fn generators_are_deterministic() {
        let mut a = DenseBuilder::new(DType::F32).unwrap();
        a.rand(7, 4).unwrap();
        let mut b = DenseBuilder::new(DType::F32).unwrap();
        b.rand(7, 4).unwrap();
        assert_eq!(a.finish(), b.finish());
        let mut i = DenseBuilder::new(DType::U8).unwrap();
        i.iota(300).unwrap();
        let TensorData::Raw(raw) = i.finish() else {
            panic!("u8 data is raw")
        };
        assert_eq!(raw[299], 43);
        let mut big = DenseBuilder::new(DType::F32).unwrap();
        assert!(big.splat(&Scalar::Num("1"), u64::MAX).is_err());
    }
}
