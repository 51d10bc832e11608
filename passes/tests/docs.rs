//! `docs/passes.md` is generated from the pass registry; this test fails when it is out of date.
//! Regenerate with `SPA_UPDATE_DOCS=1 cargo test -p spa-passes --test docs`.

use std::path::PathBuf;

#[test]
fn passes_md_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/passes.md");
    let want = spa_passes::register_all_passes().markdown();
    if std::env::var_os("SPA_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/passes.md");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/passes.md is out of date; regenerate it with \
         SPA_UPDATE_DOCS=1 cargo test -p spa-passes --test docs"
    );
}
