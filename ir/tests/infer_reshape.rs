//! Shape inference of reshape-like and shape-producing ops.

mod infer_common;
use infer_common::{infer, infer1, known_ints, model};

fn reshape(x: &str, shape: &str, attrs: &str) -> Result<String, String> {
    let n = shape.split(',').count();
    infer1(
        17,
        &format!("%x: {x}"),
        &format!(
            "%s = const i64[{n}] dense<[{shape}]>\n%y = onnx.Reshape(%x, %s) {{{attrs}}} loc(\"r\")"
        ),
    )
}

#[test]
fn reshape_zero_and_minus_one() {
    assert_eq!(reshape("f32[2,3,4]", "0, -1", "").unwrap(), "f32[2,12]");
    assert_eq!(reshape("f32[2,3,4]", "-1", "").unwrap(), "f32[24]");
    assert_eq!(reshape("f32[2,3,4]", "4, 0, 2", "").unwrap(), "f32[4,3,2]");
    assert_eq!(reshape("f32[2,3,4]", "6, 2, 2", "").unwrap(), "f32[6,2,2]");
    // allowzero: 0 is a real zero-sized dim.
    assert_eq!(
        reshape("f32[0,3]", "0, 3", "allowzero = 1").unwrap(),
        "f32[0,3]"
    );
}

#[test]
fn reshape_symbolic() {
    // The symbolic batch cancels out of -1.
    assert_eq!(reshape("f32[B,3,4]", "0, -1", "").unwrap(), "f32[B,12]");
    assert_eq!(reshape("f32[B,12]", "0, 3, 4", "").unwrap(), "f32[B,3,4]");
    // -1 takes the symbol when everything else is known.
    assert_eq!(reshape("f32[B,12]", "-1, 12", "").unwrap(), "f32[B,12]");
    assert_eq!(
        reshape("f32[B,S,768]", "0, 0, 12, 64", "").unwrap(),
        "f32[B,S,12,64]"
    );
    assert_eq!(reshape("f32[B,12]", "-1, 3", "").unwrap(), "f32[?,3]");
}

#[test]
fn reshape_errors() {
    assert_eq!(
        reshape("f32[2,3]", "4, -1", "").unwrap_err(),
        "node 'r' (Reshape): cannot reshape f32[2,3] (6 elements) to [4,-1]"
    );
    assert_eq!(
        reshape("f32[2,3]", "4, 2", "").unwrap_err(),
        "node 'r' (Reshape): cannot reshape f32[2,3] (6 elements) to [4,2]"
    );
    assert_eq!(
        reshape("f32[2,3]", "-1, -1", "").unwrap_err(),
        "node 'r' (Reshape): shape [-1,-1] has more than one -1"
    );
    assert_eq!(
        reshape("f32[6]", "0, 0", "").unwrap_err(),
        "node 'r' (Reshape): shape [0,0] copies dimension 1 with 0, but the input f32[6] has rank 1"
    );
    assert_eq!(
        reshape("f32[6]", "-2, 3", "").unwrap_err(),
        "node 'r' (Reshape): shape [-2,3] has an invalid entry -2"
    );
}

#[test]
fn reshape_with_unknown_target_keeps_rank() {
    let y = infer1(17, "%x: f32[2,3], %s: i64[3]", "%y = onnx.Reshape(%x, %s)");
    assert_eq!(y.unwrap(), "f32[?,?,?]");
    // Opset 1-4 take the shape as an attribute.
    let y = infer1(4, "%x: f32[2,3]", "%y = onnx.Reshape(%x) {shape = [3, -1]}");
    assert_eq!(y.unwrap(), "f32[3,2]");
}

#[test]
fn flatten() {
    let f = |x: &str, axis: i64| {
        infer1(
            17,
            &format!("%x: {x}"),
            &format!("%y = onnx.Flatten(%x) {{axis = {axis}}}"),
        )
    };
    assert_eq!(f("f32[2,3,4,5]", 1).unwrap(), "f32[2,60]");
    assert_eq!(f("f32[2,3,4,5]", 0).unwrap(), "f32[1,120]");
    assert_eq!(f("f32[2,3,4,5]", 4).unwrap(), "f32[120,1]");
    assert_eq!(f("f32[2,3,4,5]", -2).unwrap(), "f32[6,20]");
    assert_eq!(f("f32[N,512,1,1]", 1).unwrap(), "f32[N,512]");
    assert_eq!(f("f32[N,S,4]", 1).unwrap(), "f32[N,?]");
}

#[test]
fn squeeze_unsqueeze_by_opset() {
    // Opset 11: axes are attributes.
    let y = infer1(
        11,
        "%x: f32[1,3,1,5]",
        "%y = onnx.Squeeze(%x) {axes = [0, -2]}",
    );
    assert_eq!(y.unwrap(), "f32[3,5]");
    let y = infer1(
        11,
        "%x: f32[3,5]",
        "%y = onnx.Unsqueeze(%x) {axes = [0, 3]}",
    );
    assert_eq!(y.unwrap(), "f32[1,3,5,1]");
    // Opset 13: axes are an input.
    let y = infer1(
        13,
        "%x: f32[1,3,1,5]",
        "%a = const i64[1] dense<[2]>\n%y = onnx.Squeeze(%x, %a)",
    );
    assert_eq!(y.unwrap(), "f32[1,3,5]");
    let y = infer1(
        13,
        "%x: f32[3,5]",
        "%a = const i64[2] dense<[-1, 1]>\n%y = onnx.Unsqueeze(%x, %a)",
    );
    assert_eq!(y.unwrap(), "f32[3,1,5,1]");
    // No axes: every 1 goes.
    let y = infer1(13, "%x: f32[1,3,1,5]", "%y = onnx.Squeeze(%x)");
    assert_eq!(y.unwrap(), "f32[3,5]");
    // Unknown axes at opset 13: the rank of Unsqueeze's output is still known.
    let y = infer1(
        13,
        "%x: f32[3,5], %a: i64[1]",
        "%y = onnx.Unsqueeze(%x, %a)",
    );
    assert_eq!(y.unwrap(), "f32[?,?,?]");
    let y = infer1(
        11,
        "%x: f32[1,3]",
        "%y = onnx.Squeeze(%x) {axes = [1]} loc(\"s\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 's' (Squeeze): cannot squeeze axis 1 of f32[1,3]: its size is 3"
    );
    let y = infer1(
        11,
        "%x: f32[3]",
        "%y = onnx.Unsqueeze(%x) {axes = [0, 0]} loc(\"u\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'u' (Unsqueeze): axis 0 appears twice in [0,0]"
    );
}

#[test]
fn transpose_expand_tile() {
    let y = infer1(
        17,
        "%x: f32[B,S,12,64]",
        "%y = onnx.Transpose(%x) {perm = [0, 2, 1, 3]}",
    );
    assert_eq!(y.unwrap(), "f32[B,12,S,64]");
    let y = infer1(17, "%x: f32[2,3,4]", "%y = onnx.Transpose(%x)");
    assert_eq!(y.unwrap(), "f32[4,3,2]");
    let y = infer1(
        17,
        "%x: f32[2,3]",
        "%y = onnx.Transpose(%x) {perm = [0, 0]} loc(\"t\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 't' (Transpose): perm [0,0] is not a permutation of 2 axes"
    );
    let y = infer1(
        17,
        "%x: f32[3,1]",
        "%s = const i64[3] dense<[2, 1, 4]>\n%y = onnx.Expand(%x, %s)",
    );
    assert_eq!(y.unwrap(), "f32[2,3,4]");
    let y = infer1(
        17,
        "%x: f32[3,2]",
        "%s = const i64[2] dense<[3, 4]>\n%y = onnx.Expand(%x, %s) loc(\"e\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'e' (Expand): cannot expand f32[3,2] to shape [3,4]"
    );
    let y = infer1(
        17,
        "%x: f32[2,B]",
        "%r = const i64[2] dense<[3, 1]>\n%y = onnx.Tile(%x, %r)",
    );
    assert_eq!(y.unwrap(), "f32[6,B]");
}

#[test]
fn shape_size_and_constants() {
    let out = infer(
        17,
        "%x: f32[B,3,8]",
        "%s = onnx.Shape(%x)\n%t = onnx.Shape(%x) {start = 1, end = -1}\n%n = onnx.Size(%x)",
        &["s", "t", "n"],
    );
    assert_eq!(out.unwrap(), vec!["i64[3]", "i64[1]", "i64[]"]);
    let m = model(
        17,
        "%x: f32[2,3,8]",
        "%t = onnx.Shape(%x) {start = -2}\n%n = onnx.Size(%x)",
        &["t", "n"],
    );
    assert_eq!(known_ints(&m, "t"), Some(vec![3, 8]));
    assert_eq!(known_ints(&m, "n"), Some(vec![48]));

    let out = infer(
        17,
        "",
        "%s = const i64[2] dense<[2, 3]>\n\
         %z = onnx.ConstantOfShape(%s)\n\
         %o = onnx.ConstantOfShape(%s) {value = i64[1] dense<[1]>}\n\
         %c = onnx.Constant() {value_ints = [1, 2, 3]}\n\
         %f = onnx.Constant() {value_float = 1.5}\n\
         %t = onnx.Constant() {value = bf16[2,2] dense<[1.0, 2.0, 3.0, 4.0]>}",
        &["z", "o", "c", "f", "t"],
    );
    assert_eq!(
        out.unwrap(),
        vec!["f32[2,3]", "i64[2,3]", "i64[3]", "f32[]", "bf16[2,2]"]
    );

    let m = model(
        17,
        "",
        "%a = const i64[] dense<[1]>\n%b = const i64[] dense<[10]>\n%d = const i64[] dense<[3]>\n\
         %r = onnx.Range(%a, %b, %d)",
        &["r"],
    );
    assert_eq!(known_ints(&m, "r"), Some(vec![1, 4, 7]));
    let out = infer(
        17,
        "%l: i64[]",
        "%a = const i64[] dense<[0]>\n%d = const i64[] dense<[1]>\n%r = onnx.Range(%a, %l, %d)\n\
         %s = const f32[] dense<[0.0]>\n%e = const f32[] dense<[1.0]>\n%q = const f32[] dense<[0.25]>\n\
         %f = onnx.Range(%s, %e, %q)",
        &["r", "f"],
    );
    assert_eq!(out.unwrap(), vec!["i64[?]", "f32[4]"]);
}

#[test]
fn depth_to_space_and_eye_like() {
    let y = infer1(
        17,
        "%x: f32[1,16,4,5]",
        "%y = onnx.DepthToSpace(%x) {blocksize = 2}",
    );
    assert_eq!(y.unwrap(), "f32[1,4,8,10]");
    let y = infer1(
        17,
        "%x: f32[1,4,8,10]",
        "%y = onnx.SpaceToDepth(%x) {blocksize = 2}",
    );
    assert_eq!(y.unwrap(), "f32[1,16,4,5]");
    let y = infer1(17, "%x: f32[3,4]", "%y = onnx.EyeLike(%x) {dtype = 7}");
    assert_eq!(y.unwrap(), "i64[3,4]");
    let y = infer1(17, "%x: f32[B,S,S], %k: i64[]", "%y = onnx.Trilu(%x, %k)");
    assert_eq!(y.unwrap(), "f32[B,S,S]");
}
