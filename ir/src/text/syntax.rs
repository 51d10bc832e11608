//! Lexical rules shared by the printer and the lexer, so that what one prints bare the other reads
//! back as one token.

use std::fmt::Write;

/// Characters of a bare value name after `%`: enough for ONNX names such as `/conv1/Conv_output_0`,
/// `onnx::Conv_123` and `input.1`.
pub(super) fn is_value_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b':' | b'-')
}

/// A name prints bare after `%` if the lexer reads it back whole. A trailing `:` would be taken as
/// the type separator in `%x: f32[1]`.
pub(super) fn is_bare_value_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_value_name_byte) && !s.ends_with(':')
}

pub(super) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub(super) fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub(super) fn is_ident(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_ident_start(b[0]) && b.iter().all(|&c| is_ident_byte(c))
}

/// Identifiers joined by dots: `com.microsoft`, `ai.onnx.ml`.
pub(super) fn is_dotted_ident(s: &str) -> bool {
    s.split('.').all(is_ident)
}

/// Write a string literal; bytes that are not UTF-8 become `\xNN`.
pub(super) fn write_bytes_lit(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
}

pub(super) fn write_str_lit(out: &mut String, s: &str) {
    write_bytes_lit(out, s.as_bytes());
}

/// `%name` or `%"quoted name"`.
pub(super) fn write_value_name(out: &mut String, name: &str) {
    out.push('%');
    if is_bare_value_name(name) {
        out.push_str(name);
    } else {
        write_str_lit(out, name);
    }
}

/// An identifier bare, anything else quoted (attribute names, symbolic dims, graph names).
pub(super) fn write_ident_or_str(out: &mut String, s: &str) {
    if is_ident(s) {
        out.push_str(s);
    } else {
        write_str_lit(out, s);
    }
}

/// A metadata map: `{"k" = "v", ...}` in stored order.
pub(super) fn write_metadata(out: &mut String, props: &[(String, String)]) {
    out.push('{');
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str_lit(out, k);
        out.push_str(" = ");
        write_str_lit(out, v);
    }
    out.push('}');
}
