//! Shape inference of MatMul (numpy semantics) and Gemm.

mod infer_common;
use infer_common::infer1;

fn matmul(a: &str, b: &str) -> Result<String, String> {
    infer1(
        17,
        &format!("%a: {a}, %b: {b}"),
        "%y = onnx.MatMul(%a, %b) loc(\"m\")",
    )
}

fn gemm(a: &str, b: &str, c: Option<&str>, attrs: &str) -> Result<String, String> {
    let (sig, call) = match c {
        Some(c) => (
            format!("%a: {a}, %b: {b}, %c: {c}"),
            format!("%y = onnx.Gemm(%a, %b, %c) {{{attrs}}} loc(\"g\")"),
        ),
        None => (
            format!("%a: {a}, %b: {b}"),
            format!("%y = onnx.Gemm(%a, %b) {{{attrs}}} loc(\"g\")"),
        ),
    };
    infer1(17, &sig, &call)
}

#[test]
fn matmul_shapes() {
    assert_eq!(matmul("f32[2,3,4]", "f32[4,5]").unwrap(), "f32[2,3,5]");
    assert_eq!(matmul("f32[3,4]", "f32[4,5]").unwrap(), "f32[3,5]");
    // Batch dims broadcast.
    assert_eq!(
        matmul("f32[2,1,3,4]", "f32[5,4,6]").unwrap(),
        "f32[2,5,3,6]"
    );
    // Symbolic dims pass through; attention's Q @ K^T.
    assert_eq!(
        matmul("f32[B,S,768]", "f32[768,3072]").unwrap(),
        "f32[B,S,3072]"
    );
    assert_eq!(
        matmul("f32[B,12,S,64]", "f32[B,12,64,S]").unwrap(),
        "f32[B,12,S,S]"
    );
}

#[test]
fn matmul_1d_operands() {
    assert_eq!(matmul("f32[4]", "f32[4,5]").unwrap(), "f32[5]");
    assert_eq!(matmul("f32[2,3,4]", "f32[4]").unwrap(), "f32[2,3]");
    assert_eq!(matmul("f32[4]", "f32[4]").unwrap(), "f32[]");
    assert_eq!(matmul("f32[4]", "f32[7,4,5]").unwrap(), "f32[7,5]");
}

#[test]
fn matmul_errors() {
    assert_eq!(
        matmul("f32[2,3]", "f32[4,5]").unwrap_err(),
        "node 'm' (MatMul): cannot multiply f32[2,3] by f32[4,5]: inner dimensions 3 and 4 differ"
    );
    assert_eq!(
        matmul("f32[2,3,4]", "f32[3,4,5]").unwrap_err(),
        "node 'm' (MatMul): cannot multiply f32[2,3,4] by f32[3,4,5]: batch dimensions ?[2] and ?[3] do not broadcast"
    );
    assert_eq!(
        matmul("f32[]", "f32[4]").unwrap_err(),
        "node 'm' (MatMul): cannot multiply f32[] by f32[4]: MatMul does not take scalars"
    );
}

#[test]
fn matmul_unknown_rank() {
    assert_eq!(matmul("f32[*]", "f32[4,5]").unwrap(), "f32[*]");
}

#[test]
fn gemm_transposes() {
    assert_eq!(gemm("f32[4,3]", "f32[3,5]", None, "").unwrap(), "f32[4,5]");
    assert_eq!(
        gemm("f32[3,4]", "f32[3,5]", None, "transA = 1").unwrap(),
        "f32[4,5]"
    );
    assert_eq!(
        gemm("f32[4,3]", "f32[5,3]", None, "transB = 1").unwrap(),
        "f32[4,5]"
    );
    assert_eq!(
        gemm("f32[3,4]", "f32[5,3]", None, "transA = 1, transB = 1").unwrap(),
        "f32[4,5]"
    );
    assert_eq!(
        gemm("f32[N,3]", "f32[5,3]", Some("f32[5]"), "transB = 1").unwrap(),
        "f32[N,5]"
    );
    assert_eq!(
        gemm("f32[4,3]", "f32[3,5]", Some("f32[4,1]"), "").unwrap(),
        "f32[4,5]"
    );
}

#[test]
fn gemm_errors() {
    assert_eq!(
        gemm("f32[4,3]", "f32[4,5]", None, "").unwrap_err(),
        "node 'g' (Gemm): cannot multiply f32[4,3] by f32[4,5] (transA=0, transB=0): inner dimensions 3 and 4 differ"
    );
    assert_eq!(
        gemm("f32[4,3]", "f32[3,5]", Some("f32[3]"), "").unwrap_err(),
        "node 'g' (Gemm): Gemm C f32[3] does not broadcast to the result f32[4,5]"
    );
    assert_eq!(
        gemm("f32[2,4,3]", "f32[3,5]", None, "").unwrap_err(),
        "node 'g' (Gemm): Gemm input A must be 2-D, got f32[2,4,3]"
    );
}
