//! Typed pass options: declared once per pass with a default and help text, parsed from the
//! pipeline string, printed back in canonical form.

use crate::error::PassError;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptionKind {
    Bool,
    Int,
    /// A non-negative integer.
    UInt,
    Float,
    Str,
    /// One of the listed words.
    Enum(&'static [&'static str]),
}

impl OptionKind {
    fn expected(&self) -> String {
        match self {
            OptionKind::Bool => "a boolean (true or false)".into(),
            OptionKind::Int => "an integer".into(),
            OptionKind::UInt => "a non-negative integer".into(),
            OptionKind::Float => "a number".into(),
            OptionKind::Str => "a string".into(),
            OptionKind::Enum(words) => format!("one of {}", words.join("|")),
        }
    }

    /// Short type name for `--help`.
    pub fn type_name(&self) -> String {
        match self {
            OptionKind::Bool => "bool".into(),
            OptionKind::Int => "int".into(),
            OptionKind::UInt => "uint".into(),
            OptionKind::Float => "float".into(),
            OptionKind::Str => "string".into(),
            OptionKind::Enum(words) => words.join("|"),
        }
    }
}

/// One option of a pass.
#[derive(Clone, Copy, Debug)]
pub struct OptionDecl {
    pub name: &'static str,
    pub kind: OptionKind,
    /// The default, in pipeline syntax (`""` for an empty string).
    pub default: &'static str,
    pub help: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Int(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Str(s) => {
                if s.is_empty() || s.chars().any(|c| ",{}=\" ".contains(c)) {
                    write!(f, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
                } else {
                    f.write_str(s)
                }
            }
        }
    }
}

/// Parse `text` as a value of `decl`'s kind.
pub fn parse_value(pass: &str, decl: &OptionDecl, text: &str) -> Result<OptionValue, PassError> {
    let bad = || PassError::BadOption {
        pass: pass.to_string(),
        option: decl.name.to_string(),
        expected: decl.kind.expected(),
        value: text.to_string(),
    };
    Ok(match decl.kind {
        OptionKind::Bool => match text {
            "true" | "1" => OptionValue::Bool(true),
            "false" | "0" => OptionValue::Bool(false),
            _ => return Err(bad()),
        },
        OptionKind::Int => OptionValue::Int(text.parse().map_err(|_| bad())?),
        OptionKind::UInt => {
            let v: i64 = text.parse().map_err(|_| bad())?;
            if v < 0 {
                return Err(bad());
            }
            OptionValue::Int(v)
        }
        OptionKind::Float => {
            let v: f64 = text.parse().map_err(|_| bad())?;
            if !v.is_finite() {
                return Err(bad());
            }
            OptionValue::Float(v)
        }
        OptionKind::Str => OptionValue::Str(text.to_string()),
        OptionKind::Enum(words) => {
            if !words.contains(&text) {
                return Err(bad());
            }
            OptionValue::Str(text.to_string())
        }
    })
}

/// The options of one pass instance: every declared option, given or defaulted, in declaration
/// order.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    values: Vec<(&'static str, OptionValue)>,
}

impl Options {
    /// Resolve given `(name, text)` pairs against the declarations, filling in defaults.
    pub fn resolve(
        pass: &str,
        decls: &[OptionDecl],
        given: &[(String, String)],
    ) -> Result<Options, PassError> {
        for (i, (name, _)) in given.iter().enumerate() {
            if !decls.iter().any(|d| d.name == name) {
                let valid = if decls.is_empty() {
                    "none".to_string()
                } else {
                    decls.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
                };
                return Err(PassError::UnknownOption {
                    pass: pass.to_string(),
                    option: name.clone(),
                    valid,
                });
            }
            if given[..i].iter().any(|(n, _)| n == name) {
                return Err(PassError::DuplicateOption {
                    pass: pass.to_string(),
                    option: name.clone(),
                });
            }
        }
        let mut values = Vec::with_capacity(decls.len());
        for d in decls {
            let text = given
                .iter()
                .find(|(n, _)| n == d.name)
                .map(|(_, v)| v.as_str())
                .unwrap_or(d.default);
            values.push((d.name, parse_value(pass, d, text)?));
        }
        Ok(Options { values })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &OptionValue)> {
        self.values.iter().map(|(n, v)| (*n, v))
    }

    fn get(&self, name: &str) -> Option<&OptionValue> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Declared options always have a value, so the accessors fall back to a neutral value only
    /// when a pass asks for an option it did not declare (a bug caught by its tests).
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(OptionValue::Bool(true)))
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Some(OptionValue::Int(v)) => *v,
            _ => 0,
        }
    }

    pub fn float(&self, name: &str) -> f64 {
        match self.get(name) {
            Some(OptionValue::Float(v)) => *v,
            Some(OptionValue::Int(v)) => *v as f64,
            _ => 0.0,
        }
    }

    pub fn str(&self, name: &str) -> &str {
        match self.get(name) {
            Some(OptionValue::Str(v)) => v,
            _ => "",
        }
    }
}
