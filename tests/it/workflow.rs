//! The GitHub Actions recipe in `examples/`: valid YAML with the documented shape, and every
//! `cargo release-bundle` command it runs parses with this CLI.

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

use cargo_release_bundle::cli::{Cli, Command};

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
                        Some(Command::Verify(_)) => "verify",
                        Some(Command::Merge(_)) => "merge",
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
