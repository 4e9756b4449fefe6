//! Printing verification reports (human lines or JSON objects).

use super::sidecar::Reference;
use super::{Report, Severity};
use crate::output::MessageFormat;
use crate::output::{Output, Tone};

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Print a report: findings, then a summary line (or JSON objects).
/// `strict`: warnings fail too.
pub fn print(report: &Report, strict: bool, format: MessageFormat, shell: &Output) {
    let passed = report.passes(strict);
    if format == MessageFormat::Json {
        for f in &report.findings {
            shell.json(&serde_json::json!({
                "reason": "finding",
                "bundle": report.bundle,
                "severity": f.severity,
                "code": f.code,
                "path": f.path,
                "message": f.message,
            }));
        }
        shell.json(&serde_json::json!({
            "reason": "verified",
            "bundle": report.bundle,
            "sha256": report.sha256,
            "name": report.name,
            "version": report.version,
            "files": report.files,
            "errors": report.count(Severity::Error),
            "warnings": report.count(Severity::Warning),
            "notes": report.count(Severity::Note),
            "ok": passed,
            "reference": report.reference,
            "origin_checked": matches!(report.reference, Reference::ExpectedDigest | Reference::Signature),
        }));
        return;
    }
    let file = report.bundle.file_name().unwrap_or(report.bundle.as_str());
    for f in &report.findings {
        let tone = match f.severity {
            Severity::Error => Tone::Error,
            Severity::Warning => Tone::Warning,
            Severity::Note => Tone::Note,
        };
        let place = f
            .path
            .as_deref()
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        shell.finding(tone, f.code, format!("{file}: {place}{}", f.message));
    }
    if shell.quiet() {
        return;
    }
    let what = match (&report.name, &report.version) {
        (Some(n), Some(v)) => format!("{n} {v}"),
        _ => file.to_string(),
    };
    let count = |n: usize, one: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    };
    let errors = count(report.count(Severity::Error), "error");
    let warnings = count(report.count(Severity::Warning), "warning");
    let files = thousands(report.files);
    let verb = if passed { "verified" } else { "FAILED" };
    shell.out(format!(
        "{verb} {what}: {files} files, {errors}, {warnings}"
    ));
    if passed
        && !matches!(
            report.reference,
            Reference::ExpectedDigest | Reference::Signature
        )
    {
        let against = match report.reference {
            Reference::SidecarOnly => "its own metadata and the `.sha256` beside it",
            _ => "its own metadata",
        };
        shell.out(format!(
            "  consistent with {against}: this shows the bundle is intact, not where it came from; pass --sha256 HEX with a digest from a trusted source, or --allowed-signers FILE, to check origin"
        ));
    }
}
