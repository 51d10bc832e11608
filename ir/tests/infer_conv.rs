//! Shape inference of convolutions: pads, strides, dilations, groups, auto_pad, transposed.

mod infer_common;
use infer_common::infer1;

fn conv(x: &str, w: &str, attrs: &str) -> Result<String, String> {
    infer1(
        17,
        &format!("%x: {x}"),
        &format!("%w = const {w} #splat<1.0>\n%y = onnx.Conv(%x, %w) {{{attrs}}} loc(\"c\")"),
    )
}

fn conv_t(x: &str, w: &str, attrs: &str) -> Result<String, String> {
    infer1(
        17,
        &format!("%x: {x}"),
        &format!(
            "%w = const {w} #splat<1.0>\n%y = onnx.ConvTranspose(%x, %w) {{{attrs}}} loc(\"t\")"
        ),
    )
}

#[test]
fn conv_pads_strides_dilations() {
    let x = "f32[1,3,32,32]";
    let w = "f32[16,3,3,3]";
    assert_eq!(
        conv(x, w, "pads = [1, 1, 1, 1]").unwrap(),
        "f32[1,16,32,32]"
    );
    assert_eq!(
        conv(x, w, "pads = [1, 1, 1, 1], strides = [2, 2]").unwrap(),
        "f32[1,16,16,16]"
    );
    assert_eq!(conv(x, w, "dilations = [2, 2]").unwrap(), "f32[1,16,28,28]");
    // Asymmetric pads and per-axis strides.
    assert_eq!(
        conv(x, w, "pads = [0, 1, 2, 1], strides = [1, 3]").unwrap(),
        "f32[1,16,32,11]"
    );
    // kernel_shape agrees with the weight.
    assert_eq!(
        conv(x, w, "kernel_shape = [3, 3]").unwrap(),
        "f32[1,16,30,30]"
    );
}

#[test]
fn conv_groups_and_depthwise() {
    assert_eq!(
        conv("f32[1,8,10,10]", "f32[16,2,3,3]", "group = 4").unwrap(),
        "f32[1,16,8,8]"
    );
    assert_eq!(
        conv(
            "f32[1,32,10,10]",
            "f32[32,1,3,3]",
            "group = 32, pads = [1, 1, 1, 1]"
        )
        .unwrap(),
        "f32[1,32,10,10]"
    );
    // Depthwise with a channel multiplier of 2.
    assert_eq!(
        conv("f32[1,32,10,10]", "f32[64,1,3,3]", "group = 32").unwrap(),
        "f32[1,64,8,8]"
    );
}

#[test]
fn conv_auto_pad() {
    let (x, w) = ("f32[1,3,7,7]", "f32[4,3,3,3]");
    let same_upper = r#"auto_pad = "SAME_UPPER", strides = [2, 2]"#;
    assert_eq!(conv(x, w, same_upper).unwrap(), "f32[1,4,4,4]");
    let same_lower = r#"auto_pad = "SAME_LOWER", strides = [2, 2]"#;
    assert_eq!(conv(x, w, same_lower).unwrap(), "f32[1,4,4,4]");
    let valid = r#"auto_pad = "VALID", strides = [2, 2], pads = [5, 5, 5, 5]"#;
    assert_eq!(conv(x, w, valid).unwrap(), "f32[1,4,3,3]");
    assert_eq!(
        conv(x, w, r#"auto_pad = "SAME""#).unwrap_err(),
        "node 'c' (Conv): unknown auto_pad 'SAME'"
    );
}

#[test]
fn conv_1d_3d_and_symbolic() {
    assert_eq!(conv("f32[2,4,10]", "f32[8,4,3]", "").unwrap(), "f32[2,8,8]");
    assert_eq!(
        conv(
            "f32[1,3,8,16,16]",
            "f32[4,3,3,3,3]",
            "pads = [1, 1, 1, 1, 1, 1]"
        )
        .unwrap(),
        "f32[1,4,8,16,16]"
    );
    let x = "f32[N,3,H,W]";
    assert_eq!(
        conv(x, "f32[16,3,3,3]", "pads = [1, 1, 1, 1]").unwrap(),
        "f32[N,16,H,W]"
    );
    assert_eq!(
        conv(x, "f32[16,3,3,3]", "pads = [1, 1, 1, 1], strides = [2, 2]").unwrap(),
        "f32[N,16,?,?]"
    );
    assert_eq!(conv(x, "f32[16,3,1,1]", "").unwrap(), "f32[N,16,H,W]");
    assert_eq!(
        conv(x, "f32[16,3,3,3]", r#"auto_pad = "SAME_UPPER""#).unwrap(),
        "f32[N,16,H,W]"
    );
}

#[test]
fn conv_errors() {
    assert_eq!(
        conv("f32[1,4,8,8]", "f32[16,3,3,3]", "").unwrap_err(),
        "node 'c' (Conv): Conv weight has 3 input channels but input has 4 (group 1)"
    );
    assert_eq!(
        conv("f32[1,8,8,8]", "f32[16,1,3,3]", "group = 4").unwrap_err(),
        "node 'c' (Conv): Conv weight has 4 input channels but input has 8 (group 4)"
    );
    assert_eq!(
        conv("f32[1,8,8,8]", "f32[6,2,3,3]", "group = 4").unwrap_err(),
        "node 'c' (Conv): Conv weight has 6 output channels, not divisible by group 4"
    );
    assert_eq!(
        conv("f32[1,3,2,2]", "f32[4,3,3,3]", "").unwrap_err(),
        "node 'c' (Conv): window of size 3 does not fit in the padded input of size 2 on spatial axis 0"
    );
    assert_eq!(
        conv("f32[1,3,8,8]", "f32[4,3,3]", "").unwrap_err(),
        "node 'c' (Conv): Conv weight f32[4,3,3] has rank 3 but the input f32[1,3,8,8] has rank 4"
    );
    assert_eq!(
        conv("f32[1,3,8,8]", "f32[4,3,3,3]", "strides = [1]").unwrap_err(),
        "node 'c' (Conv): strides [1] has 1 entries, expected 2"
    );
    assert_eq!(
        conv("f32[1,3,8,8]", "f32[4,3,3,3]", "kernel_shape = [5, 5]").unwrap_err(),
        "node 'c' (Conv): kernel_shape [5,5] does not match the weight f32[4,3,3,3]"
    );
    let bias = infer1(
        17,
        "%x: f32[1,3,8,8]",
        "%w = const f32[4,3,3,3] #splat<1.0>\n%b = const f32[5] #splat<0.0>\n\
         %y = onnx.Conv(%x, %w, %b) loc(\"c\")",
    );
    assert_eq!(
        bias.unwrap_err(),
        "node 'c' (Conv): Conv bias f32[5] does not match 4 output channels"
    );
}

#[test]
fn conv_with_unknown_weight_keeps_batch_and_rank() {
    let y = infer1(17, "%x: f32[2,3,8,8], %w: f32[*]", "%y = onnx.Conv(%x, %w)").unwrap();
    assert_eq!(y, "f32[2,?,?,?]");
}

#[test]
fn conv_transpose() {
    let x = "f32[1,16,8,8]";
    assert_eq!(
        conv_t(x, "f32[16,8,4,4]", "strides = [2, 2], pads = [1, 1, 1, 1]").unwrap(),
        "f32[1,8,16,16]"
    );
    assert_eq!(
        conv_t(
            x,
            "f32[16,8,3,3]",
            "strides = [2, 2], pads = [1, 1, 1, 1], output_padding = [1, 1]"
        )
        .unwrap(),
        "f32[1,8,16,16]"
    );
    assert_eq!(
        conv_t(x, "f32[16,4,3,3]", "group = 2").unwrap(),
        "f32[1,8,10,10]"
    );
    assert_eq!(
        conv_t(
            x,
            "f32[16,8,3,3]",
            "strides = [2, 2], output_shape = [20, 21]"
        )
        .unwrap(),
        "f32[1,8,20,21]"
    );
    assert_eq!(
        conv_t(
            x,
            "f32[16,8,3,3]",
            r#"strides = [2, 2], auto_pad = "SAME_UPPER""#
        )
        .unwrap(),
        "f32[1,8,16,16]"
    );
    assert_eq!(
        conv_t("f32[1,16,H,W]", "f32[16,8,3,3]", "pads = [1, 1, 1, 1]").unwrap(),
        "f32[1,8,H,W]"
    );
    assert_eq!(
        conv_t("f32[1,12,8,8]", "f32[16,8,3,3]", "").unwrap_err(),
        "node 't' (ConvTranspose): ConvTranspose weight has 16 input channels but input has 12"
    );
}
