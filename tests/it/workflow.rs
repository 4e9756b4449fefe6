//! The GitHub Actions recipe in `examples/`: valid YAML with the documented shape, and every
//! `cargo release-bundle` command it runs parses with this CLI.

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

use cargo_release_bundle::cli::{Cli, Commands};

use crate::support::repo;

fn commands(run: &str) -> Vec<Vec<String>> {
    run.split("&&")
        .filter_map(|part| part.trim().strip_prefix("cargo release-bundle"))
        .map(|rest| rest.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn github_recipe_is_valid_and_uses_real_commands() {
    let text = std::fs::read_to_string(repo().join("examples/github-release.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    let wf = &docs[0];
    let jobs = &wf["jobs"];
    let include = jobs["bundle"]["strategy"]["matrix"]["include"]
        .as_vec()
        .expect("a matrix");
    let targets: Vec<&str> = include
        .iter()
        .map(|m| m["target"].as_str().unwrap())
        .collect();
    for want in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
        assert!(targets.contains(&want), "{want} in the matrix");
    }
    assert!(
        targets.iter().any(|t| t.contains("apple-darwin")),
        "a macOS target"
    );
    assert_eq!(jobs["publish"]["needs"].as_str(), Some("bundle"));

    let mut seen = Vec::new();
    for (job, steps) in [
        ("bundle", &jobs["bundle"]["steps"]),
        ("publish", &jobs["publish"]["steps"]),
    ] {
        for step in steps.as_vec().unwrap() {
            let Some(run) = step["run"].as_str() else {
                continue;
            };
            for matrix in include {
                let expanded =
                    ["target", "os", "builder"]
                        .iter()
                        .fold(run.to_string(), |s, key| {
                            s.replace(
                                &format!("${{{{ matrix.{key} }}}}"),
                                matrix[*key].as_str().unwrap_or_default(),
                            )
                        });
                for args in commands(&expanded) {
                    let args: Vec<String> = args.iter().map(|a| a.replace('*', "x")).collect();
                    let argv = ["cargo-release-bundle", "release-bundle"]
                        .into_iter()
                        .map(String::from)
                        .chain(args.clone());
                    let Cli::ReleaseBundle(cli) = Cli::try_parse_from(argv)
                        .unwrap_or_else(|e| panic!("{job}: `{args:?}` does not parse:\n{e}"));
                    seen.push(match cli.command {
                        None => "bundle",
                        Some(Commands::Verify(_)) => "verify",
                        Some(Commands::Merge(_)) => "merge",
                        Some(_) => "other",
                    });
                }
            }
        }
    }
    for want in ["bundle", "verify", "merge"] {
        assert!(seen.contains(&want), "the recipe runs `{want}`: {seen:?}");
    }
    assert!(matches!(wf["on"]["push"]["tags"], Yaml::Array(_)));
}

/// The README's Quick start, run as written: the first block in an empty directory (with this
/// tool on PATH as `cargo-release-bundle`), then the second block line by line where the first
/// ended, with only the host triple and the port replaced.
#[test]
fn the_quick_start_runs_verbatim() {
    use crate::support::*;
    use std::fs;
    use std::process::Command;

    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find("## Quick start").unwrap()..];
    let section = &section[..section.find("\n## ").unwrap()];
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .collect();
    assert_eq!(blocks.len(), 2, "{section}");

    let scratch = Scratch::new();
    let bin = scratch.join("bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(tool(), bin.join("cargo-release-bundle")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let host = String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(String::from))
        .unwrap();
    let sh = |dir: &std::path::Path, script: &str| {
        let out = Command::new("sh")
            .args(["-ec", script])
            .current_dir(dir)
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert_success(&out);
        String::from_utf8(out.stdout).unwrap()
    };
    let build = blocks[0].replace("x86_64-unknown-linux-gnu", &host);
    sh(&scratch.path, &build);

    // The second block, in the same directory the first ended in, as a newcomer pastes it.
    let server = scratch.join("billing");
    let port = free_port();
    let lines: Vec<String> = blocks[1]
        .lines()
        .map(|l| {
            l.replace("x86_64-unknown-linux-gnu", &host)
                .replace("PORT=4000", &format!("PORT={port}"))
        })
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    sh(&server, &lines[0]);
    sh(&server, &lines[1]);
    let stop = lines[3].clone();
    let _stopped = StopOnDrop(&server, &stop);
    let status = sh(&server, &lines[2]);
    assert!(
        status.starts_with("billing 0.1.0 running (pid "),
        "{status}"
    );
    assert_eq!(
        http_get(port, "/", std::time::Duration::from_secs(10)),
        "hello\n"
    );
    let stopped = sh(&server, &stop);
    assert!(stopped.starts_with("billing 0.1.0 stopped"), "{stopped}");
}

/// Runs the Quick start's `stop` line when dropped, so a failing test leaves no service behind.
struct StopOnDrop<'a>(&'a std::path::Path, &'a str);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args(["-c", self.1])
            .current_dir(self.0)
            .output();
    }
}
