//! Every pass, one module each. Each module exposes `INFO`, its declaration.

pub mod cse;
pub mod dce;
pub mod fold_bn;
pub mod fold_constants;
pub mod fold_shapes;
pub mod shape_infer;
pub mod test_print_shapes;
pub mod verify;
