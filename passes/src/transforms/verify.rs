//! `verify`: run the verifier now (it also runs after every pass unless `--no-verify-each`).

use crate::analysis::Preserved;
use crate::error::PassError;
use crate::manager::PassContext;
use crate::registry::{Pass, PassInfo};
use spa_ir::Model;

pub static INFO: PassInfo = PassInfo {
    name: "verify",
    summary: "Check the IR: definitions before uses, no cycles, shapes against inference, channel expressions against axis sizes",
    options: &[],
    create: |_| Ok(Box::new(Verify)),
};

struct Verify;

impl Pass for Verify {
    fn run(
        &mut self,
        model: &mut Model,
        _cx: &mut PassContext<'_>,
    ) -> Result<Preserved, PassError> {
        spa_ir::verify::verify_model(model).map_err(|source| PassError::Ir {
            pass: INFO.name.to_string(),
            source,
        })?;
        Ok(Preserved::All)
    }
}
