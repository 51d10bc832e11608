//! The parser never panics: random strings, random token sequences, and random edits of valid
//! printed models. Whatever parses also prints, and the print parses back to the same print.

mod text_common;

use proptest::prelude::*;
use proptest::sample::{select, Index};
use spa_ir::text::{parse_model, print_model, PrintOptions};
use std::sync::OnceLock;
use text_common::*;

const TOKENS: &[&str] = &[
    "%x",
    "%y",
    "%\"a b\"",
    "%v0",
    "@main",
    "graph",
    "func",
    "model",
    "spaces",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "<",
    ">",
    ",",
    "=",
    ":",
    "*",
    "!",
    "?",
    ".",
    "@",
    "->",
    "_",
    "return",
    "const",
    "default",
    "onnx.Relu",
    "com.x.Op",
    "\"s\"",
    "1",
    "-1",
    "0",
    "1.5",
    "1e-5",
    "nan",
    "inf",
    "-inf",
    "f32",
    "i64",
    "u4",
    "str",
    "bool",
    "c64",
    "f8e4m3fn",
    "dense",
    "hex",
    "#splat",
    "#iota",
    "#rand",
    "#elided",
    "as",
    "float_data",
    "int32_data",
    "string_data",
    "external",
    "sparse",
    "seq",
    "map",
    "opt",
    "type",
    "cat",
    "g0",
    "g1",
    "ref",
    "loc",
    "doc",
    "metadata",
    "captures",
    "attrs",
    "opset",
    "nan(0x7fc00001)",
    "\n",
    "//",
    "\"\\xff\"",
    "0x10",
    "é",
    "\u{0}",
    "\"",
    "\\",
];

fn bases() -> &'static [String] {
    static BASES: OnceLock<Vec<String>> = OnceLock::new();
    BASES.get_or_init(|| {
        [
            conv_model(),
            dtypes_model(),
            attrs_model(),
            subgraph_model(),
            function_model(),
            values_model(),
        ]
        .iter()
        .map(|m| print_model(m, &full()))
        .collect()
    })
}

/// Parse; if that works, the model prints (both ways) and the full print is a fixed point.
fn check(src: &str) {
    let Ok(m) = parse_model(src) else { return };
    let _ = print_model(&m, &PrintOptions::default());
    let text = print_model(&m, &full());
    match parse_model(&text) {
        Ok(again) => assert_eq!(print_model(&again, &full()), text, "from:\n{src}"),
        Err(e) => panic!("the print of a parsed model does not parse: {e}\n{text}\nfrom:\n{src}"),
    }
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(Index, usize),
    Insert(Index, &'static str),
    Replace(Index, &'static str),
    Duplicate(Index, usize),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1usize..12).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<Index>(), select(TOKENS)).prop_map(|(i, t)| Edit::Replace(i, t)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(src: &str, e: &Edit) -> String {
    let chars: Vec<char> = src.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    let at = |i: &Index| i.index(chars.len());
    let s = |r: &[char]| r.iter().collect::<String>();
    match e {
        Edit::Delete(i, n) => {
            let a = at(i);
            let b = (a + n).min(chars.len());
            s(&chars[..a]) + &s(&chars[b..])
        }
        Edit::Insert(i, t) => s(&chars[..at(i)]) + t + &s(&chars[at(i)..]),
        Edit::Replace(i, t) => s(&chars[..at(i)]) + t + &s(&chars[at(i) + 1..]),
        Edit::Duplicate(i, n) => {
            let a = at(i);
            let b = (a + n).min(chars.len());
            s(&chars[..b]) + &s(&chars[a..])
        }
        Edit::Truncate(i) => s(&chars[..at(i)]),
    }
}

proptest! {
    // SPA_FUZZ_CASES raises the count for a longer run (see README).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SPA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn random_strings_never_panic(src in "\\PC{0,300}") {
        check(&src);
    }

    #[test]
    fn token_soup_never_panics(toks in prop::collection::vec(select(TOKENS), 0..80)) {
        check(&toks.join(" "));
    }

    #[test]
    fn edited_models_never_panic(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..5)) {
        let base = which.get(bases());
        let mut src = base.clone();
        for e in &edits {
            src = apply(&src, e);
        }
        check(&src);
    }
}

#[test]
fn unedited_models_parse() {
    for b in bases() {
        check(b);
        assert!(parse_model(b).is_ok());
    }
}
