//! Pipeline syntax, MLIR style: `name{opt=value,opt2="quoted, value"},name2`.
//!
//! Parsing is two steps: [`parse_pipeline`] reads the text into [`PassSpec`]s (syntax only), and
//! [`PassRegistry::resolve`](crate::PassRegistry::resolve) checks names and option types against
//! the declarations. A resolved [`Pipeline`] prints back (with every option explicit) to a string
//! that parses to the same pipeline.

use crate::error::PassError;
use crate::options::Options;
use crate::registry::PassInfo;
use std::fmt;

/// One pass as written: its name and `opt=value` pairs (values unparsed).
#[derive(Clone, Debug, PartialEq)]
pub struct PassSpec {
    pub name: String,
    pub options: Vec<(String, String)>,
    /// 1-based column of the name in the pipeline text.
    pub col: usize,
}

struct Cursor<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn col(&self) -> usize {
        self.pos + 1
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn err(&self, message: impl Into<String>) -> PassError {
        PassError::Syntax {
            pipeline: self.text.to_string(),
            col: self.col(),
            message: message.into(),
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("'{c}'"),
            None => "end of pipeline".into(),
        }
    }

    /// A pass or option name: letters, digits, `-`, `_`, `.`.
    fn ident(&mut self, what: &str) -> Result<String, PassError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err(format!("expected {what}, found {}", self.found())));
        }
        Ok(self.chars[start..self.pos]
            .iter()
            .map(|&(_, c)| c)
            .collect())
    }

    /// An option value: a quoted string, or bare text up to `,` or `}`; brackets and braces nest
    /// so that list values like `[a,b]` stay whole.
    fn value(&mut self) -> Result<String, PassError> {
        if self.peek() == Some('"') {
            self.pos += 1;
            let mut out = String::new();
            loop {
                match self.peek() {
                    None => return Err(self.err("unterminated string in option value")),
                    Some('"') => {
                        self.pos += 1;
                        return Ok(out);
                    }
                    Some('\\') => {
                        self.pos += 1;
                        match self.peek() {
                            Some(c) => {
                                out.push(c);
                                self.pos += 1;
                            }
                            None => return Err(self.err("unterminated string in option value")),
                        }
                    }
                    Some(c) => {
                        out.push(c);
                        self.pos += 1;
                    }
                }
            }
        }
        let mut depth = 0usize;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            match c {
                '[' | '(' => depth += 1,
                ']' | ')' => depth = depth.saturating_sub(1),
                ',' | '}' if depth == 0 => break,
                '{' => return Err(self.err("unexpected '{' in option value (quote the value)")),
                _ => {}
            }
            out.push(c);
            self.pos += 1;
        }
        Ok(out.trim_end().to_string())
    }
}

/// Parse pipeline text into pass specs. Several `--pass` flags are joined with `,` by the caller.
pub fn parse_pipeline(text: &str) -> Result<Vec<PassSpec>, PassError> {
    let mut cur = Cursor {
        text,
        chars: text.char_indices().collect(),
        pos: 0,
    };
    let mut specs = Vec::new();
    cur.skip_ws();
    if cur.peek().is_none() {
        return Ok(specs);
    }
    loop {
        cur.skip_ws();
        let col = cur.col();
        let name = cur.ident("a pass name")?;
        let mut options = Vec::new();
        cur.skip_ws();
        if cur.peek() == Some('{') {
            cur.pos += 1;
            cur.skip_ws();
            if cur.peek() == Some('}') {
                cur.pos += 1;
            } else {
                loop {
                    cur.skip_ws();
                    let opt = cur.ident("an option name")?;
                    cur.skip_ws();
                    if cur.peek() != Some('=') {
                        return Err(cur.err(format!(
                            "expected '=' after option '{opt}', found {}",
                            cur.found()
                        )));
                    }
                    cur.pos += 1;
                    cur.skip_ws();
                    let value = cur.value()?;
                    options.push((opt, value));
                    cur.skip_ws();
                    match cur.peek() {
                        Some(',') => cur.pos += 1,
                        Some('}') => {
                            cur.pos += 1;
                            break;
                        }
                        _ => {
                            return Err(cur.err(format!(
                                "expected ',' or '}}' after option value, found {}",
                                cur.found()
                            )))
                        }
                    }
                }
            }
        }
        specs.push(PassSpec { name, options, col });
        cur.skip_ws();
        match cur.peek() {
            None => break,
            Some(',') => cur.pos += 1,
            _ => {
                return Err(cur.err(format!(
                    "expected ',' between passes, found {}",
                    cur.found()
                )))
            }
        }
    }
    Ok(specs)
}

/// A resolved pipeline: each pass's declaration and its typed options.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    pub passes: Vec<(&'static PassInfo, Options)>,
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (info, opts)) in self.passes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(info.name)?;
            let mut first = true;
            for (name, value) in opts.iter() {
                f.write_str(if first { "{" } else { "," })?;
                first = false;
                write!(f, "{name}={value}")?;
            }
            if !first {
                f.write_str("}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_quotes() {
        let specs =
            parse_pipeline(" group , prune{ratio=0.5, protect=\"a,b\", x=[1,2]},dce").unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[1].name, "prune");
        assert_eq!(
            specs[1].options,
            vec![
                ("ratio".into(), "0.5".into()),
                ("protect".into(), "a,b".into()),
                ("x".into(), "[1,2]".into())
            ]
        );
        assert_eq!(specs[2].col, 51);
    }

    #[test]
    fn syntax_errors_name_the_column() {
        let e = parse_pipeline("dce,prune{ratio}").unwrap_err().to_string();
        assert_eq!(
            e,
            "pipeline 'dce,prune{ratio}', column 16: expected '=' after option 'ratio', found '}'"
        );
        let e = parse_pipeline("dce,,x").unwrap_err().to_string();
        assert_eq!(
            e,
            "pipeline 'dce,,x', column 5: expected a pass name, found ','"
        );
        assert!(parse_pipeline("a{b=\"x}").is_err());
    }
}
