//! Shape inference of pooling, reductions, softmax and resizing.

mod infer_common;
use infer_common::{infer, infer1, known_ints, model};

fn pool(op: &str, x: &str, attrs: &str) -> Result<String, String> {
    infer1(
        17,
        &format!("%x: {x}"),
        &format!("%y = onnx.{op}(%x) {{{attrs}}} loc(\"p\")"),
    )
}

#[test]
fn max_pool() {
    let x = "f32[1,64,112,112]";
    assert_eq!(
        pool(
            "MaxPool",
            x,
            "kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]"
        )
        .unwrap(),
        "f32[1,64,56,56]"
    );
    assert_eq!(
        pool("MaxPool", x, "kernel_shape = [3, 3], strides = [2, 2]").unwrap(),
        "f32[1,64,55,55]"
    );
    assert_eq!(
        pool(
            "MaxPool",
            x,
            "kernel_shape = [3, 3], strides = [2, 2], ceil_mode = 1"
        )
        .unwrap(),
        "f32[1,64,56,56]"
    );
    assert_eq!(
        pool(
            "MaxPool",
            "f32[1,1,10,10]",
            "kernel_shape = [3, 3], dilations = [2, 2]"
        )
        .unwrap(),
        "f32[1,1,6,6]"
    );
    let same = r#"kernel_shape = [3, 3], strides = [2, 2], auto_pad = "SAME_UPPER""#;
    assert_eq!(
        pool("MaxPool", "f32[1,1,7,7]", same).unwrap(),
        "f32[1,1,4,4]"
    );
    let r = infer(
        17,
        "%x: f32[N,8,6,6]",
        "%y, %i = onnx.MaxPool(%x) {kernel_shape = [2, 2], strides = [2, 2]}",
        &["y", "i"],
    );
    assert_eq!(r.unwrap(), vec!["f32[N,8,3,3]", "i64[N,8,3,3]"]);
}

#[test]
fn ceil_mode_drops_a_window_starting_in_the_padding() {
    // ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would start in the end padding.
    let attrs = "kernel_shape = [2, 2], strides = [2, 2], pads = [1, 1, 1, 1], ceil_mode = 1";
    assert_eq!(
        pool("MaxPool", "f32[1,1,5,5]", attrs).unwrap(),
        "f32[1,1,3,3]"
    );
    let attrs = "kernel_shape = [2, 2], strides = [2, 2], pads = [1, 1, 1, 1], ceil_mode = 1";
    assert_eq!(
        pool("AveragePool", "f32[1,1,6,6]", attrs).unwrap(),
        "f32[1,1,4,4]"
    );
}

#[test]
fn other_pools() {
    assert_eq!(
        pool(
            "AveragePool",
            "f32[1,3,8,16,16]",
            "kernel_shape = [2, 2, 2], strides = [2, 2, 2]"
        )
        .unwrap(),
        "f32[1,3,4,8,8]"
    );
    assert_eq!(
        pool("LpPool", "f32[1,3,8]", "kernel_shape = [3], p = 2").unwrap(),
        "f32[1,3,6]"
    );
    assert_eq!(
        pool("GlobalAveragePool", "f32[N,512,7,7]", "").unwrap(),
        "f32[N,512,1,1]"
    );
    assert_eq!(
        pool("GlobalMaxPool", "f32[N,512,7]", "").unwrap(),
        "f32[N,512,1]"
    );
    assert_eq!(
        pool("MaxPool", "f32[1,1,4,4]", "").unwrap_err(),
        "node 'p' (MaxPool): MaxPool has no kernel_shape"
    );
    assert_eq!(
        pool("MaxPool", "f32[1,1,4,4]", "kernel_shape = [3]").unwrap_err(),
        "node 'p' (MaxPool): kernel_shape has 1 entries but the input f32[1,1,4,4] has 2 spatial axes"
    );
}

#[test]
fn reductions_with_axes_attribute() {
    let r = |op: &str, x: &str, attrs: &str| {
        infer1(
            17,
            &format!("%x: {x}"),
            &format!("%y = onnx.{op}(%x) {{{attrs}}}"),
        )
    };
    assert_eq!(
        r("ReduceMean", "f32[B,S,768]", "axes = [-1]").unwrap(),
        "f32[B,S,1]"
    );
    assert_eq!(
        r("ReduceMean", "f32[N,C,H,W]", "axes = [2, 3], keepdims = 0").unwrap(),
        "f32[N,C]"
    );
    assert_eq!(r("ReduceMax", "f32[2,3]", "").unwrap(), "f32[1,1]");
    assert_eq!(r("ReduceL2", "f32[2,3]", "keepdims = 0").unwrap(), "f32[]");
}

#[test]
fn reductions_with_axes_input() {
    // ReduceSum takes axes as an input from opset 13, the others from 18.
    let y = infer1(
        13,
        "%x: f32[B,S,768]",
        "%a = const i64[1] dense<[1]>\n%y = onnx.ReduceSum(%x, %a) {keepdims = 0}",
    );
    assert_eq!(y.unwrap(), "f32[B,768]");
    let y = infer1(
        18,
        "%x: f32[B,S,768]",
        "%a = const i64[1] dense<[-1]>\n%y = onnx.ReduceMean(%x, %a)",
    );
    assert_eq!(y.unwrap(), "f32[B,S,1]");
    let y = infer1(
        18,
        "%x: f32[2,3]",
        "%y = onnx.ReduceMean(%x) {noop_with_empty_axes = 1}",
    );
    assert_eq!(y.unwrap(), "f32[2,3]");
    let y = infer1(
        18,
        "%x: f32[2,3]",
        "%y = onnx.ReduceMean(%x) {keepdims = 0}",
    );
    assert_eq!(y.unwrap(), "f32[]");
    let y = infer1(
        18,
        "%x: f32[2,3], %a: i64[1]",
        "%y = onnx.ReduceMean(%x, %a)",
    );
    assert_eq!(y.unwrap(), "f32[?,?]");
    let y = infer1(
        18,
        "%x: f32[2,3], %a: i64[1]",
        "%y = onnx.ReduceMean(%x, %a) {keepdims = 0}",
    );
    assert_eq!(y.unwrap(), "f32[?]");
}

#[test]
fn reduce_prod_of_a_shape_is_known() {
    let m = model(
        18,
        "%x: f32[2,3,4]",
        "%s = onnx.Shape(%x)\n%p = onnx.ReduceProd(%s) {keepdims = 0}",
        &["p"],
    );
    assert_eq!(known_ints(&m, "p"), Some(vec![24]));
}

#[test]
fn softmax_axis() {
    let y = infer1(17, "%x: f32[B,12,S,S]", "%y = onnx.Softmax(%x) {axis = -1}");
    assert_eq!(y.unwrap(), "f32[B,12,S,S]");
    let y = infer1(11, "%x: f32[2,10]", "%y = onnx.LogSoftmax(%x)");
    assert_eq!(y.unwrap(), "f32[2,10]");
    let y = infer1(
        17,
        "%x: f32[2,10]",
        "%y = onnx.Softmax(%x) {axis = 3} loc(\"s\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 's' (Softmax): axis 3 is out of range for rank 2"
    );
}

#[test]
fn resize_scales_and_sizes() {
    let y = infer1(
        11,
        "%x: f32[N,3,16,16]",
        "%roi = const f32[0] dense<[]>\n%s = const f32[4] dense<[1.0, 1.0, 2.0, 2.0]>\n\
         %y = onnx.Resize(%x, %roi, %s) {mode = \"nearest\"}",
    );
    assert_eq!(y.unwrap(), "f32[N,3,32,32]");
    let y = infer1(
        13,
        "%x: f32[1,3,16,16]",
        "%z = const i64[4] dense<[1, 3, 20, 30]>\n%y = onnx.Resize(%x, _, _, %z)",
    );
    assert_eq!(y.unwrap(), "f32[1,3,20,30]");
    let y = infer1(
        10,
        "%x: f32[1,3,5,5]",
        "%s = const f32[4] dense<[1.0, 1.0, 1.5, 2.0]>\n%y = onnx.Resize(%x, %s)",
    );
    assert_eq!(y.unwrap(), "f32[1,3,7,10]");
    let y = infer1(
        18,
        "%x: f32[1,3,10,20]",
        "%z = const i64[2] dense<[30, 30]>\n\
         %y = onnx.Resize(%x, _, _, %z) {axes = [2, 3], keep_aspect_ratio_policy = \"not_larger\"}",
    );
    assert_eq!(y.unwrap(), "f32[1,3,15,30]");
    let y = infer1(
        13,
        "%x: f32[1,3,16,16], %z: i64[4]",
        "%y = onnx.Resize(%x, _, _, %z)",
    );
    assert_eq!(y.unwrap(), "f32[?,?,?,?]");
    let y = infer1(13, "%x: f32[1,3,16,16]", "%y = onnx.Resize(%x) loc(\"r\")");
    assert_eq!(
        y.unwrap_err(),
        "node 'r' (Resize): Resize has neither scales nor sizes"
    );
    let y = infer1(
        13,
        "%x: f32[1,3,16,16]",
        "%s = const f32[2] dense<[2.0, 2.0]>\n%y = onnx.Resize(%x, _, %s) loc(\"r\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'r' (Resize): scales has 2 entries for 4 axes of f32[1,3,16,16]"
    );
}

#[test]
fn upsample() {
    let y = infer1(
        7,
        "%x: f32[1,3,4,4]",
        "%y = onnx.Upsample(%x) {scales = [1.0, 1.0, 2.0, 2.0]}",
    );
    assert_eq!(y.unwrap(), "f32[1,3,8,8]");
    let y = infer1(
        9,
        "%x: f32[1,3,4,4]",
        "%s = const f32[4] dense<[1.0, 1.0, 3.0, 3.0]>\n%y = onnx.Upsample(%x, %s)",
    );
    assert_eq!(y.unwrap(), "f32[1,3,12,12]");
}
