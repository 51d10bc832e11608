//! Shape inference of elementwise ops: broadcasting, dtypes, casts, Dropout.

mod infer_common;
use infer_common::{infer, infer1};

fn binary(op: &str, a: &str, b: &str) -> Result<String, String> {
    infer1(
        17,
        &format!("%a: {a}, %b: {b}"),
        &format!("%y = onnx.{op}(%a, %b) loc(\"e\")"),
    )
}

#[test]
fn numpy_broadcasting() {
    assert_eq!(binary("Add", "f32[1,4]", "f32[3,1]").unwrap(), "f32[3,4]");
    assert_eq!(binary("Mul", "f32[2,3,4]", "f32[4]").unwrap(), "f32[2,3,4]");
    assert_eq!(binary("Sub", "f32[]", "f32[2,2]").unwrap(), "f32[2,2]");
    assert_eq!(binary("Div", "f32[B,4]", "f32[1,4]").unwrap(), "f32[B,4]");
    // A known size other than 1 decides an unknown one; equal symbols stay.
    assert_eq!(binary("Add", "f32[B,?]", "f32[B,8]").unwrap(), "f32[B,8]");
    assert_eq!(binary("Add", "f32[B,S]", "f32[C,S]").unwrap(), "f32[?,S]");
    assert_eq!(binary("Add", "f32[*]", "f32[4]").unwrap(), "f32[*]");
}

#[test]
fn broadcast_errors() {
    assert_eq!(
        binary("Add", "f32[1,4]", "f32[1,5]").unwrap_err(),
        "node 'e' (Add): cannot broadcast f32[1,4] with f32[1,5]"
    );
    assert_eq!(
        binary("Add", "f32[4]", "i64[4]").unwrap_err(),
        "node 'e' (Add): input 1 is i64 but input 0 is f32"
    );
}

#[test]
fn comparisons_and_logic_are_bool() {
    assert_eq!(binary("Equal", "i64[3]", "i64[]").unwrap(), "bool[3]");
    assert_eq!(binary("Less", "f32[2,1]", "f32[3]").unwrap(), "bool[2,3]");
    assert_eq!(binary("And", "bool[2]", "bool[2]").unwrap(), "bool[2]");
    // Pow keeps the base's type whatever the exponent's.
    assert_eq!(binary("Pow", "f32[2]", "i64[]").unwrap(), "f32[2]");
}

#[test]
fn variadic_and_where() {
    let y = infer1(
        17,
        "%a: f32[4], %b: f32[3,1], %c: f32[1]",
        "%y = onnx.Sum(%a, %b, %c)",
    );
    assert_eq!(y.unwrap(), "f32[3,4]");
    let y = infer1(
        17,
        "%c: bool[B,1,S], %a: f32[1,H,S], %b: f32[]",
        "%y = onnx.Where(%c, %a, %b)",
    );
    assert_eq!(y.unwrap(), "f32[B,H,S]");
    let y = infer1(
        17,
        "%a: f32[2], %b: f32[3], %c: f32[2]",
        "%y = onnx.Max(%a, %c, %b) loc(\"m\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'm' (Max): cannot broadcast f32[2] with f32[3]"
    );
}

#[test]
fn unary_ops_keep_the_type() {
    for op in [
        "Relu",
        "Sigmoid",
        "Tanh",
        "Erf",
        "Gelu",
        "HardSwish",
        "Neg",
        "Sqrt",
        "Identity",
    ] {
        let y = infer1(17, "%x: f32[N,3,8,8]", &format!("%y = onnx.{op}(%x)"));
        assert_eq!(y.unwrap(), "f32[N,3,8,8]", "{op}");
    }
    let y = infer1(
        17,
        "%x: f16[2,3]",
        "%y = onnx.Clip(%x) {min = 0.0, max = 6.0}",
    );
    assert_eq!(y.unwrap(), "f16[2,3]");
    assert_eq!(
        infer1(17, "%x: f32[2]", "%y = onnx.IsNaN(%x)").unwrap(),
        "bool[2]"
    );
    assert_eq!(
        infer1(17, "%x: f32[2], %s: f32[1]", "%y = onnx.PRelu(%x, %s)").unwrap(),
        "f32[2]"
    );
    // Nothing known in, nothing known out.
    assert_eq!(infer1(17, "%x", "%y = onnx.Relu(%x)").unwrap(), "?");
}

#[test]
fn casts_and_dropout() {
    assert_eq!(
        infer1(17, "%x: f32[2,B]", "%y = onnx.Cast(%x) {to = 7}").unwrap(),
        "i64[2,B]"
    );
    assert_eq!(
        infer1(17, "%x: f32[2]", "%y = onnx.Cast(%x) loc(\"c\")").unwrap_err(),
        "node 'c' (Cast): Cast has no 'to' attribute"
    );
    assert_eq!(
        infer1(17, "%x: f32[2], %t: f16[]", "%y = onnx.CastLike(%x, %t)").unwrap(),
        "f16[2]"
    );
    let out = infer(12, "%x: f32[2,3]", "%y, %m = onnx.Dropout(%x)", &["y", "m"]).unwrap();
    assert_eq!(out, vec!["f32[2,3]", "bool[2,3]"]);
    let out = infer(7, "%x: f32[2,3]", "%y, %m = onnx.Dropout(%x)", &["y", "m"]).unwrap();
    assert_eq!(out, vec!["f32[2,3]", "f32[2,3]"]);
}
