//! Every parse error names a line and column, what was expected and what was found.

mod text_common;

use spa_ir::text::{parse_model, print_model, PrintOptions};

fn err(src: &str) -> String {
    match parse_model(src) {
        Ok(_) => panic!("parsed, but should not:\n{src}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unterminated_string() {
    let src = "graph @main() -> () {\n  onnx.Foo() loc(\"abc\n}\n";
    assert_eq!(err(src), "2:18: unterminated string");
}

#[test]
fn unknown_dtype() {
    assert_eq!(
        err("graph @main(%x: f33[1]) -> () {}"),
        "1:17: unknown dtype 'f33' (expected f32, f16, bf16, f64, i8, i16, i32, i64, u8, u16, \
         u32, u64, bool, str, ...)"
    );
}

#[test]
fn bad_channel_expression() {
    assert_eq!(
        err("graph @main(%x: f32[64@h0]) -> () {}"),
        "1:24: expected a channel expression (gN, an integer, cat(...) or (a*b)), found 'h0'"
    );
    assert_eq!(
        err("graph @main(%x: f32[64@(g0*g1]) -> () {}"),
        "1:30: expected ')' or '*' in a channel product, found ']'"
    );
}

#[test]
fn duplicate_definition() {
    let src = "graph @main(%x: f32[1]) -> () {\n  %y = onnx.Relu(%x)\n  %y = onnx.Neg(%x)\n}\n";
    assert_eq!(err(src), "3:3: value %y is defined twice (first at 2:3)");
    let src = "graph @main(%x: f32[1], %x: f32[1]) -> () {}";
    assert_eq!(err(src), "1:25: value %x is defined twice (first at 1:13)");
}

#[test]
fn missing_closing_brace() {
    let src = "graph @main(%x: f32[1]) -> (%y) {\n  %y = onnx.Relu(%x)\n  return %y\n";
    assert_eq!(
        err(src),
        "4:1: expected '}' after 'return' in graph @main, found end of input"
    );
    let src = "graph @main(%x: f32[1]) -> (%y) {\n  %y = onnx.Relu(%x)\n";
    assert_eq!(
        err(src),
        "3:1: expected '}' to close graph @main, found end of input"
    );
}

#[test]
fn elided_constant() {
    let src = "graph @main() -> () {\n  %w = const f32[64,3,7,7] #elided<3f2a9c0d11aa22bb>\n}\n";
    assert_eq!(
        err(src),
        "2:28: constant %w is elided; print with --print-constants to round-trip"
    );
    // What the printer elides by default does not parse back.
    let text = print_model(&text_common::conv_model(), &PrintOptions::default());
    assert_eq!(
        err(&text),
        "5:42: constant %conv1.weight is elided; print with --print-constants to round-trip"
    );
}

#[test]
fn operand_list() {
    let src = "graph @main(%x) -> () {\n  %y = onnx.Relu(%x {a = 1})\n}";
    assert_eq!(err(src), "2:21: expected ')' after operand list, found '{'");
}

#[test]
fn other_errors_say_what_was_expected() {
    let cases = [
        (
            "graph @main() -> (%y) {\n  return %z\n}",
            "2:3: 'return' does not match the results of graph @main: expected %y, found %z",
        ),
        (
            "graph @main() -> () {\n  %c = const f32[2,2] dense<[1.0, 2.0]>\n}",
            "2:23: constant %c: dense<...> has 2 values, but f32[2,2] needs 4",
        ),
        (
            "graph @main() -> () {\n  %c = const u8[1] dense<[256]>\n}",
            "2:27: constant %c: integer 256 is out of range for u8",
        ),
        (
            "graph @main() -> () {\n  %c = const f32[3000000000] #iota\n}",
            "2:30: constant %c: generated constant would have 3000000000 elements; the limit \
             is 67108864",
        ),
        (
            "graph @main() -> () {\n  %c = const i64[1] dense<[1]> as float_data\n}",
            "2:35: constant %c: float_data cannot hold these i64 elements",
        ),
        (
            "graph @main() -> () {\n  onnx.Foo() {a = []}\n}",
            "2:19: empty list for attribute 'a' needs its kind, e.g. '[] : ints'",
        ),
        (
            "graph @main() -> () {\n  onnx.Foo() {a = [1, \"x\"]}\n}",
            "2:23: a list of ints cannot hold a string element",
        ),
        (
            "graph @main() -> () {\n  %y = Relu(%x)\n}",
            "2:8: expected an op name with its domain ('onnx.Conv', 'com.microsoft.FusedConv'), \
             found 'Relu'",
        ),
        (
            "graph @main(%x) -> () {\n  %x = default f32[1] dense<[1.0]>\n  %y = default f32[1] \
             dense<[1.0]>\n}",
            "3:3: 'default' gives a graph input its initializer, but %y is not a graph input",
        ),
        (
            "graph @main(%x) -> (%y: f32[2]) {\n  %y = onnx.Relu(%x) : f32[3]\n}",
            "1:21: result %y of graph @main is declared as f32[2], but its definition has type \
             f32[3]",
        ),
        (
            "graph @main(%x) -> () {\n  %a, %b = onnx.Split(%x) : f32[1]\n}",
            "2:27: expected 2 result types (one per result that is not '_'), found 1",
        ),
        (
            "graph @main() -> () {\n  onnx.Foo() loc(\"a\") loc(\"b\")\n}",
            "2:23: 'loc' given twice",
        ),
        ("graph @main() -> () {\n  & \n}", "2:3: unexpected character '&'"),
        (
            "graph @main() -> () {\n  onnx.Foo() {s = \"\\q\"}\n}",
            "2:20: unknown escape '\\q' in string",
        ),
        (
            "model {ir_version = 8, opsets = []}\ngraph @main() -> () {}",
            "1:24: unknown model field 'opsets' (expected one of ir_version, opset, producer, \
             producer_version, domain, model_version, doc, metadata)",
        ),
        ("spaces {g1 = 3}", "1:9: expected 'g0' (spaces are listed in order), found 'g1'"),
        ("model {}", "1:9: expected 'graph' (the model has no main graph), found end of input"),
        (
            "graph @main() -> () {}\ngraph @b() -> () {}",
            "2:1: a model has one main graph; found a second 'graph'",
        ),
        (
            "graph @main(%x: seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<\
             seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<\
             seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<seq<\
             seq<seq<seq<seq<seq<f32[1]>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>) -> () {}",
            "1:269: nesting deeper than 64 levels",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(src, want)| err(src) != *want)
        .map(|(src, want)| format!("{src}\n  want: {want}\n  got:  {}", err(src)))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
