//! Workspaces: member selection, workspace defaults, and the `release-bundle` table.

use std::fs;
use std::path::Path;

use crate::support::*;

fn names(msgs: &[serde_json::Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            m["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn virtual_root_bundles_members_with_tables() {
    let fx = Fixture::new("workspace");
    let out = fx.out();
    let msgs = fx.bundle(&["--out-dir", out.to_str().unwrap()]);
    let got = names(&msgs);
    assert_eq!(got.len(), 2, "{got:?}");
    // api uses the `release-bundle` table (cargo-release owns its `release` table).
    assert!(
        got[0].starts_with("api-server-0.3.1-") && got[0].ends_with(".tar.zst"),
        "{got:?}"
    );
    // worker inherits the workspace default format.
    assert!(
        got[1].starts_with("worker-0.3.1-") && got[1].ends_with(".tar.gz"),
        "{got:?}"
    );
    assert_eq!(msgs[0]["package"], "api");
    assert_eq!(msgs[0]["name"], "api-server");

    if !have("tar") {
        return;
    }
    let worker = extract(
        Path::new(msgs[1]["path"].as_str().unwrap()),
        &fx.scratch.join("w"),
        "gnu",
    )
    .join("worker-0.3.1");
    let man = manifest(&worker);
    assert_eq!(man["compression"]["level"], 9, "workspace default level");
    assert!(worker.join("priv/rules/default.rules").exists());
    assert!(
        !worker.join("priv/rules/default.rules.bak").exists(),
        "workspace exclude applies"
    );
    let api = extract(
        Path::new(msgs[0]["path"].as_str().unwrap()),
        &fx.scratch.join("a"),
        "gnu",
    )
    .join("api-server-0.3.1");
    assert!(api.join("libexec/api").exists());
    assert!(
        api.join("bin/api-server").exists(),
        "the launcher carries the release name"
    );
    assert!(api.join("priv/routes.json").exists());
}

#[test]
fn selection_flags() {
    let fx = Fixture::new("workspace");
    let out = fx.out();
    let o = out.to_str().unwrap();
    assert_eq!(
        names(&fx.bundle(&["--out-dir", o, "-p", "worker", "--profile", "prod"])).len(),
        1
    );
    let m = fx.bundle(&["--out-dir", o, "-p", "worker", "--profile", "prod"]);
    assert_eq!(m[0]["package"], "worker");
    assert_eq!(m[0]["profile"], "prod");

    // From a member directory: that member only; with --workspace: every member with a table.
    let member = fx.root.join("worker");
    let one = run_tool(&member, &["--out-dir", o, "--message-format", "json"], &[]);
    assert_success(&one);
    assert_eq!(String::from_utf8_lossy(&one.stdout).lines().count(), 1);
    let all = run_tool(
        &member,
        &["--out-dir", o, "--message-format", "json", "--workspace"],
        &[],
    );
    assert_success(&all);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 2);

    // A package without a table can still be picked explicitly... but `shared` has no bins.
    let out = fx.run(&["-p", "shared", "--out-dir", o]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("error: shared/Cargo.toml: package `shared` has no bin targets to ship"),
        "{}",
        stderr(&out)
    );

    let out = fx.run(&["-p", "nope", "--out-dir", o]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: package `nope` is not a member of the workspace"),
        "{err}"
    );
    assert!(
        err.contains("`api`, `shared`, `worker`") || err.contains("`api`, `worker`, `shared`"),
        "{err}"
    );
}

#[test]
fn virtual_root_without_tables_lists_candidates() {
    let fx = Fixture::new("workspace");
    for member in ["api", "worker"] {
        let p = fx.root.join(member).join("Cargo.toml");
        let text = fs::read_to_string(&p).unwrap();
        let cut = text.find("[package.metadata").unwrap_or(text.len());
        fs::write(&p, &text[..cut]).unwrap();
    }
    let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: `Cargo.toml` is a virtual workspace and no member has a `[package.metadata.release]` table"), "{err}");
    assert!(err.contains("help: pick packages with `-p`"), "{err}");
    assert!(!fx.out().exists());
}

/// Each "Finished … in Ns" of a multi-package run is that bundle's own time, not the time
/// since the run began: the times add up to no more than the whole run.
#[test]
fn each_bundle_reports_its_own_time() {
    let fx = Fixture::new("workspace");
    let start = std::time::Instant::now();
    let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
    let elapsed = start.elapsed().as_secs_f64();
    assert_success(&out);
    let err = stderr(&out);
    let times: Vec<f64> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("Finished") && l.contains(" files) in "))
        .map(|l| {
            l.rsplit(" in ")
                .next()
                .unwrap()
                .trim_end_matches('s')
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(times.len(), 2, "{err}");
    let sum: f64 = times.iter().sum();
    // Printed to 0.1 s: allow the rounding of two times.
    assert!(
        sum <= elapsed + 0.1,
        "{times:?} add up to more than the run ({elapsed:.2}s)"
    );
}
