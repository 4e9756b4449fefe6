//! `<bundle>.intoto.jsonl` beside the bundle, when present: it must parse and name this bundle
//! with this digest (a statement about another build is worse than none); it is an error
//! when it does not.

use camino::Utf8Path;

use super::{Finding, Severity};
use crate::attest::provenance::{self, PREDICATE_TYPE, STATEMENT_TYPE, Statement};

pub fn check_provenance(bundle: &Utf8Path, digest: &str, findings: &mut Vec<Finding>) {
    let path = provenance::path_of(bundle);
    let Ok(file) = crate::util::open_regular(&path) else {
        return;
    };
    let file_name = bundle.file_name().unwrap_or_default();
    let mut text = String::new();
    let parsed = std::io::Read::read_to_string(&mut std::io::Read::take(file, 1 << 20), &mut text)
        .ok()
        .and_then(|_| serde_json::from_str::<Statement>(text.trim_end()).ok());
    let problem = match parsed {
        None => Some("is not an in-toto statement".to_string()),
        Some(s) if s.kind != STATEMENT_TYPE || s.predicate_type != PREDICATE_TYPE => Some(format!(
            "is a `{}` statement, not SLSA provenance",
            s.predicate_type
        )),
        Some(s) => match s.subject.iter().find(|sub| sub.name == file_name) {
            None => Some(format!("does not name `{file_name}`")),
            Some(sub) if sub.digest.sha256 != digest => Some(format!(
                "says `{file_name}` has sha256 {}, the bundle's is {digest}",
                sub.digest.sha256
            )),
            Some(_) => None,
        },
    };
    // Silent when it describes this bundle: it is expected beside every bundle.
    if let Some(why) = problem {
        let shown = path.file_name().unwrap_or(path.as_str());
        let message = format!("`{shown}` {why}");
        findings.push(Finding::new(
            Severity::Error,
            "provenance-mismatch",
            None,
            message,
        ));
    }
}
