//! Shape inference of Concat, Split, Slice, Gather, Pad and the indexing ops.

mod infer_common;
use infer_common::{infer, infer1, known_ints, model};

fn slice(x: &str, starts: &str, ends: &str, axes: &str, steps: &str) -> Result<String, String> {
    let n = starts.split(',').count();
    let mut body =
        format!("%s = const i64[{n}] dense<[{starts}]>\n%e = const i64[{n}] dense<[{ends}]>\n");
    let mut args = "%x, %s, %e".to_string();
    if !axes.is_empty() {
        body.push_str(&format!("%a = const i64[{n}] dense<[{axes}]>\n"));
        args.push_str(", %a");
    }
    if !steps.is_empty() {
        if axes.is_empty() {
            args.push_str(", _");
        }
        body.push_str(&format!("%t = const i64[{n}] dense<[{steps}]>\n"));
        args.push_str(", %t");
    }
    body.push_str(&format!("%y = onnx.Slice({args}) loc(\"s\")"));
    infer1(17, &format!("%x: {x}"), &body)
}

const MAX: &str = "9223372036854775807";
const MIN: &str = "-9223372036854775808";

#[test]
fn slice_bounds_and_steps() {
    assert_eq!(
        slice("f32[10,20]", "1", "-1", "1", "").unwrap(),
        "f32[10,18]"
    );
    assert_eq!(
        slice("f32[10,20]", "-3", MAX, "0", "").unwrap(),
        "f32[3,20]"
    );
    // Bounds beyond the extent are clamped.
    assert_eq!(
        slice("f32[10,20]", "100", "200", "0", "").unwrap(),
        "f32[0,20]"
    );
    assert_eq!(
        slice("f32[10,20]", "-100", "5", "0", "").unwrap(),
        "f32[5,20]"
    );
    assert_eq!(slice("f32[10]", "0", "10", "", "2").unwrap(), "f32[5]");
    assert_eq!(slice("f32[10]", "1", "10", "", "3").unwrap(), "f32[3]");
    // Negative steps walk backwards; a huge negative end means "through index 0".
    assert_eq!(slice("f32[10]", "-1", MIN, "0", "-1").unwrap(), "f32[10]");
    assert_eq!(slice("f32[10]", "8", "1", "0", "-2").unwrap(), "f32[4]");
    assert_eq!(slice("f32[10]", "20", "-20", "0", "-3").unwrap(), "f32[4]");
    // Several axes, one negative.
    assert_eq!(
        slice("f32[4,6,8]", "2, 1", "-2, -1", "-1, 0", "").unwrap(),
        "f32[2,6,4]"
    );
}

#[test]
fn slice_symbolic_and_old_opset() {
    assert_eq!(
        slice("f32[B,S,8]", "0", MAX, "1", "").unwrap(),
        "f32[B,S,8]"
    );
    assert_eq!(
        slice("f32[B,S,8]", "1", MAX, "1", "").unwrap(),
        "f32[B,?,8]"
    );
    let y = infer1(
        9,
        "%x: f32[4,5]",
        "%y = onnx.Slice(%x) {starts = [0, 1], ends = [2, 3]}",
    );
    assert_eq!(y.unwrap(), "f32[2,2]");
    let y = infer1(
        9,
        "%x: f32[4,5]",
        "%y = onnx.Slice(%x) {starts = [1], ends = [3], axes = [1]}",
    );
    assert_eq!(y.unwrap(), "f32[4,2]");
    // Unknown bounds on a known axis.
    let y = infer1(
        17,
        "%x: f32[4,5], %s: i64[1], %e: i64[1]",
        "%a = const i64[1] dense<[1]>\n%y = onnx.Slice(%x, %s, %e, %a)",
    );
    assert_eq!(y.unwrap(), "f32[4,?]");
}

#[test]
fn slice_errors() {
    assert_eq!(
        slice("f32[10]", "0", "10", "0", "0").unwrap_err(),
        "node 's' (Slice): Slice step cannot be 0"
    );
    assert_eq!(
        slice("f32[10]", "0", "10", "1", "").unwrap_err(),
        "node 's' (Slice): axis 1 is out of range for rank 1"
    );
    assert_eq!(
        slice("f32[10,3]", "0, 0", "1, 1", "0, -2", "").unwrap_err(),
        "node 's' (Slice): axis -2 appears twice in [0,-2]"
    );
}

#[test]
fn slice_of_shape_data() {
    let m = model(
        17,
        "%x: f32[2,3,4,5]",
        "%s = onnx.Shape(%x)\n\
         %a = const i64[1] dense<[1]>\n%b = const i64[1] dense<[3]>\n\
         %m = onnx.Slice(%s, %a, %b)\n\
         %st = const i64[1] dense<[-1]>\n%en = const i64[1] dense<[-9223372036854775808]>\n\
         %ax = const i64[1] dense<[0]>\n%sp = const i64[1] dense<[-1]>\n\
         %r = onnx.Slice(%s, %st, %en, %ax, %sp)",
        &["m", "r"],
    );
    assert_eq!(known_ints(&m, "m"), Some(vec![3, 4]));
    assert_eq!(known_ints(&m, "r"), Some(vec![5, 4, 3, 2]));
}

#[test]
fn concat() {
    let c = |sig: &str, axis: i64| {
        infer1(
            17,
            sig,
            &format!("%y = onnx.Concat(%a, %b) {{axis = {axis}}} loc(\"c\")"),
        )
    };
    assert_eq!(
        c("%a: f32[1,2,4], %b: f32[1,3,4]", 1).unwrap(),
        "f32[1,5,4]"
    );
    assert_eq!(
        c("%a: f32[1,2,4], %b: f32[1,3,4]", -2).unwrap(),
        "f32[1,5,4]"
    );
    assert_eq!(
        c("%a: f32[B,S,4], %b: f32[B,T,4]", 1).unwrap(),
        "f32[B,?,4]"
    );
    assert_eq!(c("%a: f32[B,2], %b: f32[?,3]", 1).unwrap(), "f32[B,5]");
    assert_eq!(c("%a: f32[B,0], %b: f32[B,T]", 1).unwrap(), "f32[B,T]");
    assert_eq!(
        c("%a: f32[1,2,4], %b: f32[1,3,5]", 1).unwrap_err(),
        "node 'c' (Concat): cannot concatenate f32[1,2,4] with f32[1,3,5] on axis 1"
    );
    assert_eq!(
        c("%a: f32[1,2], %b: f32[1,2,1]", 1).unwrap_err(),
        "node 'c' (Concat): cannot concatenate f32[1,2] with f32[1,2,1] on axis 1"
    );
    let y = infer1(
        17,
        "%a: f32[1], %b: f32[1]",
        "%y = onnx.Concat(%a, %b) loc(\"c\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'c' (Concat): Concat has no 'axis' attribute"
    );
}

#[test]
fn split_every_form() {
    let outs = ["p", "q"];
    // Opset 11: sizes as an attribute.
    let r = infer(
        11,
        "%x: f32[4,5,6]",
        "%p, %q = onnx.Split(%x) {axis = 1, split = [2, 3]}",
        &outs,
    );
    assert_eq!(r.unwrap(), vec!["f32[4,2,6]", "f32[4,3,6]"]);
    // Opset 13: sizes as an input.
    let r = infer(
        13,
        "%x: f32[4,5,6]",
        "%s = const i64[2] dense<[2, 3]>\n%p, %q = onnx.Split(%x, %s) {axis = 1}",
        &outs,
    );
    assert_eq!(r.unwrap(), vec!["f32[4,2,6]", "f32[4,3,6]"]);
    // No sizes: equal parts, one per output.
    let r = infer(13, "%x: f32[4,B]", "%p, %q = onnx.Split(%x)", &outs);
    assert_eq!(r.unwrap(), vec!["f32[2,B]", "f32[2,B]"]);
    // Opset 18: num_outputs, the last part smaller.
    let r = infer(
        18,
        "%x: f32[7]",
        "%p, %q, %r = onnx.Split(%x) {num_outputs = 3}",
        &["p", "q", "r"],
    );
    assert_eq!(r.unwrap(), vec!["f32[3]", "f32[3]", "f32[1]"]);
    // Unknown sizes: only the split axis is unknown.
    let r = infer(
        13,
        "%x: f32[4,5], %s: i64[2]",
        "%p, %q = onnx.Split(%x, %s) {axis = 1}",
        &outs,
    );
    assert_eq!(r.unwrap(), vec!["f32[4,?]", "f32[4,?]"]);
}

#[test]
fn split_errors() {
    let outs = ["p", "q"];
    let r = infer(
        11,
        "%x: f32[4,5,6]",
        "%p, %q = onnx.Split(%x) {axis = 1, split = [2, 2]} loc(\"s\")",
        &outs,
    );
    assert_eq!(
        r.unwrap_err(),
        "node 's' (Split): split sizes [2,2] do not add up to 5, the size of axis 1 of f32[4,5,6]"
    );
    let r = infer(
        13,
        "%x: f32[4]",
        "%p, %q, %r = onnx.Split(%x) loc(\"s\")",
        &["p", "q", "r"],
    );
    assert_eq!(
        r.unwrap_err(),
        "node 's' (Split): axis 0 of size 4 cannot be split into 3 equal parts"
    );
    let r = infer(
        11,
        "%x: f32[5]",
        "%p, %q = onnx.Split(%x) {split = [1, 1, 3]} loc(\"s\")",
        &outs,
    );
    assert_eq!(
        r.unwrap_err(),
        "node 's' (Split): split sizes [1,1,3] have 3 entries for 2 outputs"
    );
}

#[test]
fn gather_and_friends() {
    let g = |x: &str, idx: &str, axis: i64| {
        infer1(
            17,
            &format!("%x: {x}"),
            &format!("%i = const {idx}\n%y = onnx.Gather(%x, %i) {{axis = {axis}}} loc(\"g\")"),
        )
    };
    assert_eq!(
        g("f32[10,20,30]", "i64[] dense<[3]>", 1).unwrap(),
        "f32[10,30]"
    );
    assert_eq!(
        g("f32[10,20,30]", "i64[2,3] #splat<1>", 0).unwrap(),
        "f32[2,3,20,30]"
    );
    assert_eq!(
        g("f32[V,768]", "i64[1] dense<[-1]>", 0).unwrap(),
        "f32[1,768]"
    );
    assert_eq!(
        g("f32[3,4]", "i64[1] dense<[5]>", 0).unwrap_err(),
        "node 'g' (Gather): index 5 is out of range for axis 0 of f32[3,4]"
    );
    let y = infer1(
        17,
        "%x: f32[2,3,4], %i: i64[5,2]",
        "%y = onnx.GatherND(%x, %i)",
    );
    assert_eq!(y.unwrap(), "f32[5,4]");
    let y = infer1(
        17,
        "%x: f32[2,3,4], %i: i64[2,1]",
        "%y = onnx.GatherND(%x, %i) {batch_dims = 1}",
    );
    assert_eq!(y.unwrap(), "f32[2,4]");
    let y = infer1(
        17,
        "%x: f32[2,3], %i: i64[2,7]",
        "%y = onnx.GatherElements(%x, %i)",
    );
    assert_eq!(y.unwrap(), "f32[2,7]");
    let y = infer1(
        17,
        "%x: f32[2,3], %i: i64[1,2], %u: f32[1]",
        "%y = onnx.ScatterND(%x, %i, %u)",
    );
    assert_eq!(y.unwrap(), "f32[2,3]");
}

#[test]
fn pad_by_opset() {
    let y = infer1(
        11,
        "%x: f32[1,3,4,4]",
        "%p = const i64[8] dense<[0, 0, 1, 1, 0, 0, 1, 1]>\n%y = onnx.Pad(%x, %p)",
    );
    assert_eq!(y.unwrap(), "f32[1,3,6,6]");
    let y = infer1(
        2,
        "%x: f32[1,3,4,4]",
        "%y = onnx.Pad(%x) {pads = [0, 0, 1, 2, 0, 0, 3, 4]}",
    );
    assert_eq!(y.unwrap(), "f32[1,3,8,10]");
    let y = infer1(
        18,
        "%x: f32[N,3,4,4]",
        "%p = const i64[4] dense<[1, 1, 2, 2]>\n%a = const i64[2] dense<[2, 3]>\n\
         %y = onnx.Pad(%x, %p, _, %a)",
    );
    assert_eq!(y.unwrap(), "f32[N,3,7,7]");
    // Negative pads crop.
    let y = infer1(
        11,
        "%x: f32[1,3,4,4]",
        "%p = const i64[8] dense<[0, 0, -1, 0, 0, 0, 0, 0]>\n%y = onnx.Pad(%x, %p)",
    );
    assert_eq!(y.unwrap(), "f32[1,3,3,4]");
    let y = infer1(
        11,
        "%x: f32[1,3]",
        "%p = const i64[2] dense<[1, 1]>\n%y = onnx.Pad(%x, %p) loc(\"p\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'p' (Pad): pads [1,1] has 2 entries for 2 axes"
    );
    let y = infer1(11, "%x: f32[1,3], %p: i64[4]", "%y = onnx.Pad(%x, %p)");
    assert_eq!(y.unwrap(), "f32[?,?]");
}

#[test]
fn topk_onehot_argmax_nonzero() {
    let r = infer(
        17,
        "%x: f32[B,100]",
        "%k = const i64[1] dense<[5]>\n%v, %i = onnx.TopK(%x, %k)",
        &["v", "i"],
    );
    assert_eq!(r.unwrap(), vec!["f32[B,5]", "i64[B,5]"]);
    let r = infer(
        9,
        "%x: f32[8,B]",
        "%v, %i = onnx.TopK(%x) {k = 3, axis = 0}",
        &["v", "i"],
    );
    assert_eq!(r.unwrap(), vec!["f32[3,B]", "i64[3,B]"]);
    let y = infer1(
        17,
        "%i: i64[B,4], %v: f32[2]",
        "%d = const i64[] dense<[10]>\n%y = onnx.OneHot(%i, %d, %v)",
    );
    assert_eq!(y.unwrap(), "f32[B,4,10]");
    let y = infer1(
        17,
        "%x: f32[2,3,4]",
        "%y = onnx.ArgMax(%x) {axis = 1, keepdims = 0}",
    );
    assert_eq!(y.unwrap(), "i64[2,4]");
    let y = infer1(17, "%x: f32[2,3,4]", "%y = onnx.ArgMin(%x) {axis = -1}");
    assert_eq!(y.unwrap(), "i64[2,3,1]");
    let y = infer1(17, "%x: f32[2,3]", "%y = onnx.NonZero(%x)");
    assert_eq!(y.unwrap(), "i64[2,?]");
}

#[test]
fn pad_amounts_computed_the_way_the_classic_exporter_does() {
    // F.pad: Concat -> Reshape([-1, 2]) -> Slice(reverse) -> Transpose -> Reshape([-1]) -> Pad.
    let body = "
  %p = const i64[8] dense<[0, 0, 0, 0, 1, 2, 3, 4]>
  %s1 = const i64[2] dense<[-1, 2]>
  %r = onnx.Reshape(%p, %s1)
  %st = const i64[1] dense<[-1]>
  %en = const i64[1] dense<[-9223372036854775807]>
  %ax = const i64[1] dense<[0]>
  %sp = const i64[1] dense<[-1]>
  %rev = onnx.Slice(%r, %st, %en, %ax, %sp)
  %t = onnx.Transpose(%rev) {perm = [1, 0]}
  %s2 = const i64[1] dense<[-1]>
  %flat = onnx.Reshape(%t, %s2)
  %y = onnx.Pad(%x, %flat)";
    let m = model(17, "%x: f32[1,3,8,8]", body, &["y"]);
    assert_eq!(known_ints(&m, "rev"), Some(vec![3, 4, 1, 2, 0, 0, 0, 0]));
    assert_eq!(known_ints(&m, "flat"), Some(vec![3, 1, 0, 0, 4, 2, 0, 0]));
    let y = infer1(17, "%x: f32[1,3,8,8]", body).unwrap();
    assert_eq!(y, "f32[8,6,8,8]");
}
