//! Every rule of the suite runs on every backend: each
//! `pub async fn …(store: Arc<dyn Store>)` of `src/` must be listed in
//! `conformance_tests!` (a rule left off the list would compile and never
//! run). A rule with a type parameter takes what a backend must do (damage
//! a row with SQL, say) and is driven by both backends' test files instead.
//! Helpers take `&dyn Store` or something else, so they are not rules.

use std::path::Path;

#[test]
fn every_rule_is_listed_in_the_conformance_macro() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let listing = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let backends = ["sqlite.rs", "postgres.rs"]
        .map(|f| std::fs::read_to_string(root.join("tests").join(f)).unwrap());
    let mut missing = Vec::new();
    let mut rules = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("pub async fn ") {
            let rest = &text[at + "pub async fn ".len()..];
            let Some(open) = rest.find('(') else { continue };
            let name = &rest[..open];
            if !rest[open + 1..]
                .trim_start()
                .starts_with("store: Arc<dyn Store>")
            {
                continue;
            }
            rules += 1;
            if let Some((name, _generics)) = name.split_once('<') {
                let driven = format!("{module}::{name}(");
                if !backends.iter().all(|b| b.contains(&driven)) {
                    missing.push(format!("{module}::{name} (not driven by every backend)"));
                }
                continue;
            }
            let listed = format!("{module}::{name})");
            let listed_wrapped = format!("{module}::{name}\n");
            if !listing.contains(&listed) && !listing.contains(&listed_wrapped) {
                missing.push(format!("{module}::{name}"));
            }
        }
    }
    assert!(rules > 50, "found only {rules} rules: is the scan broken?");
    assert!(
        missing.is_empty(),
        "rules not in conformance_tests! (they never run): {missing:?}"
    );
}
