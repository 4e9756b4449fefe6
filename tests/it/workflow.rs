//! The documentation as users meet it: the GitHub Actions recipe in `examples/` (valid YAML
//! with the documented shape, every `cargo release-bundle` command it runs parses with this
//! CLI), the README's quick start run verbatim, and the pages by reader (the README leads to
//! every reference page; every relative link resolves).

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

/// A GitHub heading anchor: lower case, punctuation but `-` and `_` dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Relative link targets in a Markdown text: `](target)`, without web addresses.
fn relative_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_string()))
        .filter(|t| !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

/// The documentation by reader: the README is at most 300 lines and links every reference
/// page in docs/; ARCHITECTURE.md fits one screen (at most 700 words); every relative link
/// in them, CONTRIBUTING.md and docs/ names a file that exists, and a heading there when it
/// has an anchor.
#[test]
fn the_readme_leads_to_every_reference_page_and_links_resolve() {
    let root = repo();
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    let readme = read("README.md");
    assert!(
        readme.lines().count() <= 300,
        "the README is over 300 lines"
    );
    let words = read("ARCHITECTURE.md").split_whitespace().count();
    assert!(words <= 700, "ARCHITECTURE.md has {words} words");
    let mut pages = vec![
        "README.md".to_string(),
        "ARCHITECTURE.md".into(),
        "CONTRIBUTING.md".into(),
    ];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            assert!(
                readme.contains(&format!("](docs/{name}")),
                "README does not link docs/{name}"
            );
            pages.push(format!("docs/{name}"));
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let dir = std::path::Path::new(page).parent().unwrap();
        for link in relative_links(&read(page)) {
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                root.join(page)
            } else {
                root.join(dir).join(file)
            };
            let Ok(text) = std::fs::read_to_string(&target) else {
                broken.push(format!("{page}: {link}"));
                continue;
            };
            let headings = text
                .lines()
                .filter_map(|l| l.strip_prefix('#'))
                .map(|h| anchor(h.trim_start_matches('#')));
            if !fragment.is_empty() && !headings.collect::<Vec<_>>().contains(&fragment.to_string())
            {
                broken.push(format!("{page}: {link} (no such heading)"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}
