//! Every configuration under `fixtures/broken/` fails before anything is built, with the
//! expected first line, exit code 1, and nothing written.

use std::fs;

use crate::support::*;

/// `expected` may contain `…`, standing for any text (temporary paths).
fn matches(expected: &str, actual: &str) -> bool {
    let mut rest = actual;
    let parts: Vec<&str> = expected.split('…').collect();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

#[test]
fn wildcard_matching() {
    assert!(matches("a…c", "abbbc"));
    assert!(matches("a…c…e", "abcde"));
    assert!(!matches("a…c", "abd"));
    assert!(matches("abc", "abc"));
    assert!(!matches("abc", "abcd"));
}

#[test]
fn broken_configs_fail_cleanly() {
    let cases = repo().join("fixtures/broken");
    let mut count = 0;
    let mut failures = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for case in dirs {
        count += 1;
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected = fs::read_to_string(case.join("expected-error")).unwrap();
        let expected = format!("error: {}", expected.trim_end());
        let fx = Fixture::from_path(&case);
        let out_dir = fx.out();
        let mut args: Vec<String> = vec!["--out-dir".into(), out_dir.display().to_string()];
        if let Ok(extra) = fs::read_to_string(case.join("args")) {
            args.extend(extra.split_whitespace().map(String::from));
        }
        let env_text = fs::read_to_string(case.join("env")).unwrap_or_default();
        let env: Vec<(&str, &str)> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = fx.run_env(&args, &env);
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{name}: exit {:?}, expected 1\n{err}",
                out.status.code()
            ));
        } else if !matches(&expected, first) {
            failures.push(format!("{name}:\n  got:  {first}\n  want: {expected}"));
        } else if err.contains("panicked") {
            failures.push(format!("{name}: panicked\n{err}"));
        }
        if out_dir.exists() {
            failures.push(format!("{name}: the out dir was created"));
        }
        if fx.root.join("target").exists() {
            failures.push(format!("{name}: something was built"));
        }
    }
    assert!(count >= 15, "only {count} broken fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A source that cannot be read is reported as what failed, not as missing: a symlink loop
/// (ELOOP) and a file used as a directory (ENOTDIR) fail even for root, unlike permissions.
#[test]
fn unreadable_sources_say_what_failed() {
    let fx = Fixture::new("webapp");
    std::os::unix::fs::symlink("loop", fx.root.join("loop")).unwrap();
    fx.edit(
        "Cargo.toml",
        "pre-start = \"rel/hooks/pre_start.sh\"",
        "pre-start = \"loop/hook.sh\"",
    );
    let out = fx.run(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("hooks.pre-start") && !err.contains("does not exist"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("symbolic links"), "{err}");

    let fx = Fixture::new("webapp");
    fx.edit(
        "Cargo.toml",
        "include = [",
        "include = [\n  { source = \"README.md/x\", dest = \"./\" },",
    );
    let out = fx.run(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("include[0]") && err.to_lowercase().contains("not a directory"),
        "{err}"
    );
}

/// `plan` checks the profile too (it used to print a full plan for a profile cargo would
/// refuse); a profile defined in a cargo config file is found.
#[test]
fn plan_refuses_an_undefined_profile() {
    let fx = Fixture::new("webapp");
    let out = fx.run(&["plan", "--profile", "staging"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: profile `staging` is not defined in `"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "no plan is printed");
    fs::create_dir_all(fx.root.join(".cargo")).unwrap();
    fs::write(
        fx.root.join(".cargo/config.toml"),
        "[profile.staging]\ninherits = \"release\"\n",
    )
    .unwrap();
    assert_success(&fx.run(&["plan", "--profile", "staging"]));
    assert_success(&fx.run(&["plan", "--profile", "prod"]));
}

/// `profile.<name>.sign` (and `.image`) apply to that profile's bundles: the one section
/// lookup reads a profile's section before the release table's.
#[test]
fn a_profile_section_applies_to_that_profile() {
    let fx = Fixture::new("webapp");
    fx.append(
        "Cargo.toml",
        "\n[package.metadata.release.profile.prod.sign]\nkey = \"keys/prod_ed25519\"\n",
    );
    let out = fx.run(&[
        "--profile",
        "prod",
        "-q",
        "--out-dir",
        fx.out().to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "the prod profile's signing key was not used: {}",
        stderr(&out)
    );
    // The first line names the file, the key that set it and the path.
    let err = stderr(&out);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains("Cargo.toml: package.metadata.release.profile.prod.sign.key")
            && first.contains("keys/prod_ed25519"),
        "{err}"
    );
    // A missing key is found before the build: no unsigned bundle is left behind.
    let left = fs::read_dir(fx.out()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a bundle was written without its signature");
    // Planning needs no key (it signs nothing).
    assert_success(&fx.run(&["plan", "--profile", "prod"]));
}

/// Bundling the same version again with other bytes replaces the bundle and says so.
#[test]
fn rebundling_the_same_version_with_other_bytes_says_so() {
    let fx = Fixture::new("gapless");
    let out_dir = fx.out();
    let bundle = |fx: &Fixture| fx.run(&["--out-dir", out_dir.to_str().unwrap()]);
    assert_success(&bundle(&fx));
    let again = bundle(&fx);
    assert_success(&again);
    assert!(
        !stderr(&again).contains("replaced a bundle"),
        "the same bytes: {}",
        stderr(&again)
    );
    fx.edit(
        "Cargo.toml",
        "START_DELAY_MS = \"300\"",
        "START_DELAY_MS = \"301\"",
    );
    let changed = bundle(&fx);
    assert_success(&changed);
    assert!(
        stderr(&changed).contains("replaced a bundle of the same version with other bytes"),
        "{}",
        stderr(&changed)
    );
}
