//! The lexer: tokens on demand (a printed model with all constants can be large), each with its
//! line and column.

use super::syntax::{is_ident_byte, is_ident_start, is_value_name_byte};
use super::ParseError;
use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub fn error(self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok<'a> {
    /// `%name` or `%"name"`.
    Value(Cow<'a, str>),
    /// `foo`, `com.microsoft.FusedConv`, `f32`, `g0`.
    Ident(&'a str),
    /// `"..."`, unescaped (may hold bytes that are not UTF-8).
    Str(Vec<u8>),
    /// `12`, `-3`, `1.5e-3`, `0x7fc00001`, `-inf`, `-nan` (the lexeme; the parser converts it
    /// for its context).
    Num(&'a str),
    /// `#elided`, `#splat`, ...
    Hash(&'a str),
    /// One of `( ) [ ] { } < > , = : * ! ? . @`.
    Punct(u8),
    Arrow,
    Eof,
}

impl Tok<'_> {
    /// How an error message shows the token.
    pub fn describe(&self) -> String {
        match self {
            Tok::Value(n) => {
                let mut s = String::new();
                super::syntax::write_value_name(&mut s, n);
                truncate(s)
            }
            Tok::Ident(s) => format!("'{}'", truncate(s.to_string())),
            Tok::Str(b) => {
                let mut s = String::new();
                super::syntax::write_bytes_lit(&mut s, b);
                format!("string {}", truncate(s))
            }
            Tok::Num(s) => format!("number {}", truncate(s.to_string())),
            Tok::Hash(s) => format!("'#{s}'"),
            Tok::Punct(c) => format!("'{}'", *c as char),
            Tok::Arrow => "'->'".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

fn truncate(s: String) -> String {
    if s.chars().count() > 40 {
        let mut t: String = s.chars().take(37).collect();
        t.push_str("...");
        t
    } else {
        s
    }
}

#[derive(Clone, Debug)]
pub(super) struct Token<'a> {
    pub tok: Tok<'a>,
    pub pos: Pos,
}

pub(super) struct Lexer<'a> {
    src: &'a str,
    i: usize,
    line: usize,
    col: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            src,
            i: 0,
            line: 1,
            col: 1,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn at(&self, k: usize) -> Option<u8> {
        self.bytes().get(self.i + k).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    /// Advance one byte; columns count characters, so UTF-8 continuation bytes do not count.
    fn bump(&mut self) -> Option<u8> {
        let b = self.at(0)?;
        self.i += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.col += 1;
        }
        Some(b)
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    fn skip_trivia(&mut self) {
        while let Some(b) = self.at(0) {
            if b.is_ascii_whitespace() {
                self.bump();
            } else if b == b'/' && self.at(1) == Some(b'/') {
                while let Some(b) = self.at(0) {
                    if b == b'\n' {
                        break;
                    }
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    pub fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        self.skip_trivia();
        let pos = self.pos();
        let Some(b) = self.at(0) else {
            return Ok(Token { tok: Tok::Eof, pos });
        };
        let tok = match b {
            b'%' => {
                self.bump();
                self.value_name(pos)?
            }
            b'"' => Tok::Str(self.string()?),
            b'#' => {
                self.bump();
                if !self.at(0).is_some_and(is_ident_start) {
                    return Err(pos.error("expected a name after '#'"));
                }
                Tok::Hash(self.ident_segment())
            }
            b'-' if self.at(1) == Some(b'>') => {
                self.bump_n(2);
                Tok::Arrow
            }
            b'-' | b'0'..=b'9' => self.number(pos)?,
            b if is_ident_start(b) => self.ident(),
            b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'<' | b'>' | b',' | b'=' | b':' | b'*'
            | b'!' | b'?' | b'.' | b'@' => {
                self.bump();
                Tok::Punct(b)
            }
            _ => {
                let c = self.src.get(self.i..).and_then(|s| s.chars().next());
                return Err(pos.error(format!(
                    "unexpected character {}",
                    c.map(|c| format!("{c:?}")).unwrap_or_else(|| "?".into())
                )));
            }
        };
        Ok(Token { tok, pos })
    }

    fn value_name(&mut self, pos: Pos) -> Result<Tok<'a>, ParseError> {
        if self.at(0) == Some(b'"') {
            let bytes = self.string()?;
            return match String::from_utf8(bytes) {
                Ok(s) => Ok(Tok::Value(Cow::Owned(s))),
                Err(_) => Err(pos.error("value name is not valid UTF-8")),
            };
        }
        let rest = &self.bytes()[self.i..];
        let mut n = rest.iter().take_while(|&&b| is_value_name_byte(b)).count();
        // `%x: f32[2]`: a trailing ':' is the type separator, not part of the name.
        while n > 0 && rest[n - 1] == b':' {
            n -= 1;
        }
        if n == 0 {
            return Err(pos.error("expected a value name after '%'"));
        }
        let name = &self.src[self.i..self.i + n];
        self.bump_n(n);
        Ok(Tok::Value(Cow::Borrowed(name)))
    }

    fn ident_segment(&mut self) -> &'a str {
        let start = self.i;
        while self.at(0).is_some_and(is_ident_byte) {
            self.bump();
        }
        &self.src[start..self.i]
    }

    /// Identifiers joined by dots; a dot is taken only when an identifier follows it.
    fn ident(&mut self) -> Tok<'a> {
        let start = self.i;
        self.ident_segment();
        while self.at(0) == Some(b'.') && self.at(1).is_some_and(is_ident_start) {
            self.bump();
            self.ident_segment();
        }
        Tok::Ident(&self.src[start..self.i])
    }

    fn number(&mut self, pos: Pos) -> Result<Tok<'a>, ParseError> {
        let start = self.i;
        let neg = self.at(0) == Some(b'-');
        let body = start + usize::from(neg);
        let word = |w: &[u8]| {
            self.bytes().get(body..body + 3) == Some(w)
                && !self
                    .bytes()
                    .get(body + 3)
                    .is_some_and(|&b| is_ident_byte(b))
        };
        if neg && (word(b"inf") || word(b"nan")) {
            self.bump_n(4);
            return Ok(Tok::Num(&self.src[start..self.i]));
        }
        if neg {
            self.bump();
        }
        if !self.at(0).is_some_and(|b| b.is_ascii_digit()) {
            return Err(pos.error("expected a number after '-'"));
        }
        if self.at(0) == Some(b'0') && matches!(self.at(1), Some(b'x' | b'X')) {
            self.bump_n(2);
            let digits = self.i;
            while self.at(0).is_some_and(|b| b.is_ascii_hexdigit()) {
                self.bump();
            }
            if self.i == digits {
                return Err(pos.error("expected hex digits after '0x'"));
            }
            return Ok(Tok::Num(&self.src[start..self.i]));
        }
        self.digits();
        if self.at(0) == Some(b'.') && self.at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.bump();
            self.digits();
        }
        if matches!(self.at(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.at(1), Some(b'+' | b'-')));
            if self.at(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                self.bump_n(1 + sign);
                self.digits();
            }
        }
        Ok(Tok::Num(&self.src[start..self.i]))
    }

    fn digits(&mut self) {
        while self.at(0).is_some_and(|b| b.is_ascii_digit()) {
            self.bump();
        }
    }

    /// A string literal; strings do not span lines, so that a missing quote is reported where it
    /// is missing.
    fn string(&mut self) -> Result<Vec<u8>, ParseError> {
        let start = self.pos();
        self.bump();
        let mut out = Vec::new();
        loop {
            let esc_pos = self.pos();
            match self.bump() {
                None | Some(b'\n') => return Err(start.error("unterminated string")),
                Some(b'"') => return Ok(out),
                Some(b'\\') => match self.bump() {
                    Some(b'n') => out.push(b'\n'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b'0') => out.push(0),
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'x') => {
                        let hi = self.bump().and_then(hex_val);
                        let lo = self.bump().and_then(hex_val);
                        match (hi, lo) {
                            (Some(h), Some(l)) => out.push(h << 4 | l),
                            _ => return Err(esc_pos.error("expected two hex digits after '\\x'")),
                        }
                    }
                    Some(b'u') => {
                        let c = self.unicode_escape();
                        match c {
                            Some(c) => {
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            }
                            None => {
                                return Err(esc_pos
                                    .error("expected a Unicode escape '\\u{...}' of a character"))
                            }
                        }
                    }
                    None | Some(b'\n') => return Err(start.error("unterminated string")),
                    Some(other) => {
                        return Err(esc_pos.error(format!(
                            "unknown escape '\\{}' in string",
                            (other as char).escape_default()
                        )))
                    }
                },
                Some(b) => out.push(b),
            }
        }
    }

    fn unicode_escape(&mut self) -> Option<char> {
        if self.bump() != Some(b'{') {
            return None;
        }
        let mut v: u32 = 0;
        let mut n = 0;
        loop {
            match self.at(0) {
                Some(b'}') => {
                    self.bump();
                    break;
                }
                Some(b) if n < 6 => {
                    v = v * 16 + hex_val(b)? as u32;
                    n += 1;
                    self.bump();
                }
                _ => return None,
            }
        }
        if n == 0 {
            return None;
        }
        char::from_u32(v)
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok<'_>> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().unwrap().tok;
            if t == Tok::Eof {
                return out;
            }
            out.push(t);
        }
    }

    #[test]
    fn names_numbers_and_punctuation() {
        assert_eq!(
            toks("%onnx::Conv_1: f32[1,-2] -> %\"a b\" // c\n1.5e-3 -inf 0x7f"),
            vec![
                Tok::Value(Cow::Borrowed("onnx::Conv_1")),
                Tok::Punct(b':'),
                Tok::Ident("f32"),
                Tok::Punct(b'['),
                Tok::Num("1"),
                Tok::Punct(b','),
                Tok::Num("-2"),
                Tok::Punct(b']'),
                Tok::Arrow,
                Tok::Value(Cow::Owned("a b".into())),
                Tok::Num("1.5e-3"),
                Tok::Num("-inf"),
                Tok::Num("0x7f"),
            ]
        );
        assert_eq!(
            toks("com.microsoft.X \"d\".Op 64@g0"),
            vec![
                Tok::Ident("com.microsoft.X"),
                Tok::Str(b"d".to_vec()),
                Tok::Punct(b'.'),
                Tok::Ident("Op"),
                Tok::Num("64"),
                Tok::Punct(b'@'),
                Tok::Ident("g0"),
            ]
        );
    }

    #[test]
    fn string_escapes_and_errors() {
        assert_eq!(
            toks(r#""a\"\\\n\xff\u{e9}""#),
            vec![Tok::Str(b"a\"\\\n\xff\xc3\xa9".to_vec())]
        );
        let err = Lexer::new("  \"abc\n").next_token().unwrap_err();
        assert_eq!(err.to_string(), "1:3: unterminated string");
    }
}
