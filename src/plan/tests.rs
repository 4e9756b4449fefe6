use serde_json::json;

use super::*;
use crate::config::{self, Overrides, TableSource};

fn config(release: serde_json::Value) -> ReleaseConfig {
    let pkg = json!({ "release": release });
    let none = TableSource {
        file: "Cargo.toml".into(),
        metadata: None,
        scope: "workspace",
    };
    let src = TableSource {
        file: "app/Cargo.toml".into(),
        metadata: Some(&pkg),
        scope: "package",
    };
    config::load(
        "app",
        &none,
        &src,
        &Overrides {
            profile: "release".into(),
            format: None,
        },
    )
    .unwrap()
    .config
}

fn facts() -> PackageFacts {
    PackageFacts {
        name: "app".into(),
        version: "1.2.0".into(),
        manifest: "app/Cargo.toml".into(),
        bin_targets: vec!["app".into(), "app-migrate".into()],
    }
}

fn file(rel: &str, exec: bool) -> Found {
    Found {
        source: format!("/src/{rel}").into(),
        rel: rel.into(),
        node: Node::File { size: 1, exec },
    }
}

fn dir(rel: &str) -> Found {
    Found {
        source: format!("/src/{rel}").into(),
        rel: rel.into(),
        node: Node::Dir,
    }
}

fn link(rel: &str, target: &str) -> Found {
    Found {
        source: format!("/src/{rel}").into(),
        rel: rel.into(),
        node: Node::Symlink {
            target: target.into(),
        },
    }
}

/// An include rule matching one file: the match is the root of its own tree.
fn one(rel: &str, found: Found) -> crate::sources::IncludeMatches {
    let found = Found {
        rel: String::new(),
        ..found
    };
    crate::sources::IncludeMatches {
        matches: vec![(rel.into(), vec![found])],
    }
}

fn paths(p: &BundlePlan) -> Vec<String> {
    p.entries
        .iter()
        .map(|e| format!("{} {:o}", e.path, e.mode))
        .collect()
}

#[test]
fn layout_and_canonical_order() {
    let sources = Sources {
        hooks: vec![],
        priv_tree: Some(vec![
            dir(""),
            file("b.txt", false),
            dir("a"),
            file("a/run.sh", true),
            link("latest", "b.txt"),
        ]),
        includes: vec![
            one("README.md", file("README.md", false)),
            one("deploy/x.service", file("x.service", true)),
        ],
    };
    let c = config(json!({
        "include": [{"source": "README.md", "dest": "./"},
                    {"source": "deploy/*.service", "dest": "share/systemd/", "mode": "0644"}]
    }));
    let p = plan(&facts(), &c, sources, "x86_64-unknown-linux-gnu").unwrap();
    assert_eq!(p.file_name, "app-1.2.0-x86_64-unknown-linux-gnu.tar.zst");
    assert_eq!(p.top_dir, "app-1.2.0");
    assert_eq!(p.binaries, ["app", "app-migrate"]);
    assert_eq!(
        paths(&p),
        [
            "README.md 644",
            "bin 755",
            "bin/app 755",
            "libexec 755",
            "libexec/app 755",
            "libexec/app-migrate 755",
            "priv 755",
            "priv/a 755",
            "priv/a/run.sh 755",
            "priv/b.txt 644",
            "priv/latest 777",
            "share 755",
            "share/systemd 755",
            "share/systemd/x.service 644",
        ]
    );
}

#[test]
fn bins_and_exclude() {
    let sources = Sources {
        hooks: vec![],
        priv_tree: Some(vec![
            dir(""),
            file("a.swp", false),
            dir("cache"),
            file("cache/x", false),
            file("keep", false),
        ]),
        includes: vec![],
    };
    let c = config(json!({"bins": ["app"], "exclude": ["**/*.swp", "priv/cache"]}));
    let p = plan(&facts(), &c, sources, "aarch64-pc-windows-msvc").unwrap();
    assert_eq!(
        paths(&p),
        ["bin 755", "bin/app.exe 755", "priv 755", "priv/keep 644"]
    );
    assert!(p.file_name.ends_with("-aarch64-pc-windows-msvc.tar.zst"));
}

fn plan_err(release: serde_json::Value, sources: Sources) -> String {
    plan(&facts(), &config(release), sources, "t")
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_key_or_path() {
    let none = Sources::default;
    let inc = |rel: &str| Sources {
        hooks: vec![],
        priv_tree: None,
        includes: vec![one(rel, file(rel, false))],
    };
    let cases: Vec<(serde_json::Value, Sources, &str)> = vec![
        (
            json!({"bins": ["nope"]}),
            none(),
            "app/Cargo.toml: package.metadata.release.bins[0]: \"nope\" is not a bin target of package `app` (it has: app, app-migrate)",
        ),
        (
            json!({"bins": ["app"], "main": "app-migrate"}),
            none(),
            "app/Cargo.toml: package.metadata.release.main: \"app-migrate\" is not one of the shipped binaries (app)",
        ),
        (
            json!({"commands": {"migrate": {"bin": "nope"}}}),
            none(),
            "app/Cargo.toml: package.metadata.release.commands.migrate.bin: \"nope\" is not one of the shipped binaries",
        ),
        (
            json!({"include": [{"source": "x", "dest": "../../etc/"}]}),
            inc("x"),
            "app/Cargo.toml: package.metadata.release.include[0].dest: \"../../etc/\" leaves the bundle",
        ),
        (
            json!({"include": [{"source": "x", "dest": "/etc/x"}]}),
            inc("x"),
            "app/Cargo.toml: package.metadata.release.include[0].dest: \"/etc/x\" is absolute",
        ),
        (
            json!({"include": [{"source": "x", "dest": "bin/app"}]}),
            inc("x"),
            "app/Cargo.toml: package.metadata.release.include[0].dest: two files land on `bin/app`: the launcher and package.metadata.release.include[0] (`/src/x`)",
        ),
        (
            json!({"include": [{"source": "x", "dest": "bin/app/y"}]}),
            inc("x"),
            "app/Cargo.toml: package.metadata.release.include[0].dest: `bin/app/y` needs `bin/app` to be a directory",
        ),
        (
            json!({"include": [{"source": "x", "dest": "MANIFEST.json"}]}),
            inc("x"),
            "app/Cargo.toml: package.metadata.release.include[0].dest: `MANIFEST.json` is reserved",
        ),
        (
            json!({"include": [{"source": "nothing*", "dest": "./"}]}),
            Sources {
                hooks: vec![],
                priv_tree: None,
                includes: vec![Default::default()],
            },
            "app/Cargo.toml: package.metadata.release.include[0].source: \"nothing*\" matches nothing",
        ),
        (
            json!({"include": [{"source": "x", "dest": "./"}], "exclude": ["x"]}),
            inc("x"),
            "app/Cargo.toml: package.metadata.release.include[0].source: \"x\" matches nothing (everything it matches is excluded)",
        ),
        (
            json!({"include": [{"source": "README", "dest": "priv/"}]}),
            Sources {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), file("readme", false)]),
                includes: vec![one("README", file("README", false))],
            },
            "",
        ),
        (
            json!({}),
            Sources {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), link("l", "../../etc/passwd")]),
                includes: vec![],
            },
            "symlink `priv/l` (from the priv file `/src/l`) points to `../../etc/passwd`, which leaves the bundle",
        ),
        (
            json!({}),
            Sources {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), link("l", "/etc/passwd")]),
                includes: vec![],
            },
            "symlink `priv/l` (from the priv file `/src/l`) points to the absolute path `/etc/passwd`",
        ),
        (
            json!({}),
            Sources {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), link("l", "missing")]),
                includes: vec![],
            },
            "symlink `priv/l` (from the priv file `/src/l`) points to `missing`, which is not in the bundle",
        ),
        (
            json!({}),
            Sources {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), file(&"n".repeat(120), false)]),
                includes: vec![],
            },
            "is too long for a plain ustar header",
        ),
    ];
    for (release, sources, want) in cases {
        let got = plan_err(release.clone(), sources);
        if want.is_empty() {
            assert!(got.contains("differ only in case"), "{got}");
        } else {
            assert!(
                got.starts_with(want) || got.contains(want),
                "for {release}:\n got: {got}\nwant: {want}"
            );
        }
    }
}

#[test]
fn several_matches_need_a_directory_dest() {
    let sources = Sources {
        hooks: vec![],
        priv_tree: None,
        includes: vec![crate::sources::IncludeMatches {
            matches: vec![
                ("a.txt".into(), vec![file("", false)]),
                ("b.txt".into(), vec![file("", false)]),
            ],
        }],
    };
    let e = plan_err(
        json!({"include": [{"source": "*.txt", "dest": "docs"}]}),
        sources,
    );
    assert!(
        e.contains("matches 2 files but dest \"docs\" names a single file"),
        "{e}"
    );
}

#[test]
fn dest_normalisation() {
    let o = Origin::new("C", "k");
    assert_eq!(normalize_dest("./", &o).unwrap(), ("".into(), true));
    assert_eq!(normalize_dest("a/../b/", &o).unwrap(), ("b".into(), true));
    assert_eq!(
        normalize_dest("etc/app.conf", &o).unwrap(),
        ("etc/app.conf".into(), false)
    );
    assert!(normalize_dest("a/../../b", &o).is_err());
}

#[test]
fn launcher_main_and_hooks() {
    let sources = Sources {
        hooks: vec![(crate::config::HookName::PreStart, file("pre.sh", false))],
        ..Default::default()
    };
    let c = config(json!({"name": "svc", "hooks": {"pre-start": "rel/pre.sh"}}));
    let p = plan(&facts(), &c, sources, "t").unwrap();
    let launcher = p.entries.iter().find(|e| e.path == "bin/svc").unwrap();
    assert_eq!(launcher.kind, Some(FileKind::Launcher));
    let Content::Generated(script) = &launcher.content else {
        panic!("launcher is generated")
    };
    // Two bins, one named like the package: that one is main.
    assert!(String::from_utf8_lossy(script).contains("rb_main='app'\n"));
    let hook = p
        .entries
        .iter()
        .find(|e| e.path == "hooks/pre-start.sh")
        .unwrap();
    assert_eq!((hook.mode, hook.kind), (0o755, Some(FileKind::Hook)));

    let mut facts = facts();
    facts.name = "other".into();
    let e = plan(&facts, &config(json!({})), Sources::default(), "t")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("app/Cargo.toml: package `other` ships several binaries (app, app-migrate) and none is named like the package"), "{e}");
    assert!(e.contains("help: set `main`"), "{e}");
    // launcher = false needs no main.
    assert!(
        plan(
            &facts,
            &config(json!({"launcher": false})),
            Sources::default(),
            "t"
        )
        .is_ok()
    );
}
