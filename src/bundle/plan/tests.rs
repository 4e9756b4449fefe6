use serde_json::json;

use super::*;
use crate::bundle::sources::IncludeMatches;
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

/// An include rule matching one file.
fn one(rel: &str, found: Found) -> IncludeMatches {
    let found = Found {
        rel: String::new(),
        ..found
    };
    IncludeMatches {
        matches: vec![(rel.into(), Match::One(found))],
    }
}

/// What a test puts on "disk": the priv tree and directory include trees as listed objects.
#[derive(Default)]
struct Src {
    hooks: Vec<(crate::config::HookName, Found)>,
    priv_tree: Option<Vec<Found>>,
    includes: Vec<IncludeMatches>,
    /// `(root, tree)` for `Match::Tree` includes.
    trees: Vec<(&'static str, Vec<Found>)>,
}

/// A plan with the entries one full, checked pass produced.
#[derive(Debug)]
struct Planned {
    plan: BundlePlan,
    entries: Vec<Entry>,
}

impl std::ops::Deref for Planned {
    type Target = BundlePlan;
    fn deref(&self) -> &BundlePlan {
        &self.plan
    }
}

/// Plan, then list the entries the way the bundler does, with trees listed from memory in
/// canonical order (the order `SortedWalk` produces, tested in `sources`).
fn plan(facts: &PackageFacts, c: &ReleaseConfig, src: Src, target: &str) -> Result<Planned> {
    let mut trees: Vec<(Utf8PathBuf, Vec<Found>)> =
        src.trees.into_iter().map(|(r, t)| (r.into(), t)).collect();
    if let Some(tree) = src.priv_tree {
        trees.push(("/src".into(), tree));
    }
    let sources = Sources {
        priv_root: trees
            .iter()
            .any(|(r, _)| r == "/src")
            .then(|| "/src".into()),
        includes: src.includes,
        hooks: src.hooks,
        skip: vec![],
    };
    let walk = move |root: &Utf8Path, _: &[Utf8PathBuf], keep: Box<dyn Fn(&str) -> bool>| {
        let mut tree = trees
            .iter()
            .find(|(r, _)| r == root)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        tree.sort_by(|a, b| a.rel.cmp(&b.rel));
        let kept = |rel: &str| {
            std::iter::successors(Some(rel), |r| r.rsplit_once('/').map(|(p, _)| p)).all(&keep)
        };
        tree.retain(|f| kept(&f.rel));
        Box::new(tree.into_iter().map(Ok)) as Box<dyn Iterator<Item = Result<Found>>>
    };
    let plan = super::plan(facts, c, sources, target)?;
    plan.check(&walk)?;
    let entries = plan.entries(&walk).collect::<Result<_>>()?;
    Ok(Planned { plan, entries })
}

fn paths(p: &Planned) -> Vec<String> {
    p.entries
        .iter()
        .map(|e| format!("{} {:o}", e.path, e.mode))
        .collect()
}

#[test]
fn layout_and_canonical_order() {
    let sources = Src {
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
        ..Default::default()
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
    let sources = Src {
        hooks: vec![],
        priv_tree: Some(vec![
            dir(""),
            file("a.swp", false),
            dir("cache"),
            file("cache/x", false),
            file("keep", false),
        ]),
        includes: vec![],
        ..Default::default()
    };
    let c = config(json!({"bins": ["app"], "exclude": ["**/*.swp", "priv/cache"]}));
    let p = plan(&facts(), &c, sources, "aarch64-pc-windows-msvc").unwrap();
    assert_eq!(
        paths(&p),
        ["bin 755", "bin/app.exe 755", "priv 755", "priv/keep 644"]
    );
    assert!(p.file_name.ends_with("-aarch64-pc-windows-msvc.tar.zst"));
}

fn plan_err(release: serde_json::Value, sources: Src) -> String {
    plan(&facts(), &config(release), sources, "t")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn errors_name_key_or_path() {
    let none = Src::default;
    let inc = |rel: &str| Src {
        hooks: vec![],
        priv_tree: None,
        includes: vec![one(rel, file(rel, false))],
        ..Default::default()
    };
    let cases: Vec<(serde_json::Value, Src, &str)> = vec![
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
            json!({"processes": {"worker": {"bin": "nope"}}}),
            none(),
            "app/Cargo.toml: package.metadata.release.processes.worker.bin: \"nope\" is not one of the shipped binaries",
        ),
        (
            json!({"processes": {"migrate": {"bin": "app"}}, "commands": {"migrate": {"bin": "app"}}}),
            none(),
            "app/Cargo.toml: package.metadata.release.processes.migrate: `migrate` is also a command; a process and a command may not share a name",
        ),
        (
            json!({"listen": {"http": "127.0.0.1:1"}, "launcher": false}),
            none(),
            "app/Cargo.toml: package.metadata.release.listen.http: `listen` needs the launcher",
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
            Src {
                hooks: vec![],
                priv_tree: None,
                includes: vec![Default::default()],
                ..Default::default()
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
            Src {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), file("readme", false)]),
                includes: vec![one("README", file("README", false))],
                ..Default::default()
            },
            "",
        ),
        (
            json!({}),
            Src {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), link("l", "../../etc/passwd")]),
                includes: vec![],
                ..Default::default()
            },
            "symlink `priv/l` (from the priv file `/src/l`) points to `../../etc/passwd`, which leaves the bundle",
        ),
        (
            json!({}),
            Src {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), link("l", "/etc/passwd")]),
                includes: vec![],
                ..Default::default()
            },
            "symlink `priv/l` (from the priv file `/src/l`) points to the absolute path `/etc/passwd`",
        ),
        (
            json!({}),
            Src {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), link("l", "missing")]),
                includes: vec![],
                ..Default::default()
            },
            "symlink `priv/l` (from the priv file `/src/l`) points to `missing`, which is not in the bundle",
        ),
        (
            json!({}),
            Src {
                hooks: vec![],
                priv_tree: Some(vec![dir(""), file(&"n".repeat(120), false)]),
                includes: vec![],
                ..Default::default()
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
    let sources = Src {
        hooks: vec![],
        priv_tree: None,
        includes: vec![IncludeMatches {
            matches: vec![
                ("a.txt".into(), Match::One(file("", false))),
                ("b.txt".into(), Match::One(file("", false))),
            ],
        }],
        ..Default::default()
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
    let sources = Src {
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
    let e = plan(&facts, &config(json!({})), Src::default(), "t")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("app/Cargo.toml: package `other` ships several binaries (app, app-migrate) and none is named like the package"), "{e}");
    assert!(e.contains("help: set `main`"), "{e}");
    // launcher = false needs no main.
    assert!(
        plan(
            &facts,
            &config(json!({"launcher": false})),
            Src::default(),
            "t"
        )
        .is_ok()
    );
}

/// A tree listed below `root`, in the shape `SortedWalk` reports it.
fn tree(root: &str, objects: &[Found]) -> Vec<Found> {
    objects
        .iter()
        .map(|f| Found {
            source: format!("{root}/{}", f.rel).into(),
            ..f.clone()
        })
        .collect()
}

fn dir_include(rel: &str, root: &'static str) -> IncludeMatches {
    IncludeMatches {
        matches: vec![(rel.into(), Match::Tree(root.into()))],
    }
}

#[test]
fn trees_merge_in_canonical_order() {
    // A directory include lands inside priv; names chosen so that per-directory order and
    // bytewise path order differ (`a` < `a-b` < `a.txt` < `a/x`).
    let src = Src {
        priv_tree: Some(vec![
            dir(""),
            dir("a"),
            file("a/x", false),
            file("a-b", false),
            link("up", "a/x"),
        ]),
        includes: vec![dir_include("assets", "/assets")],
        trees: vec![(
            "/assets",
            tree(
                "/assets",
                &[
                    dir(""),
                    file("a.txt", false),
                    dir("a"),
                    link("a/l", "../a.txt"),
                ],
            ),
        )],
        ..Default::default()
    };
    let c = config(json!({"launcher": false, "bins": ["app"],
        "include": [{"source": "assets", "dest": "priv/"}]}));
    let p = plan(&facts(), &c, src, "t").unwrap();
    assert_eq!(
        paths(&p),
        [
            "bin 755",
            "bin/app 755",
            "priv 755",
            "priv/a 755",
            "priv/a-b 644",
            "priv/a/x 644",
            "priv/assets 755",
            "priv/assets/a 755",
            "priv/assets/a.txt 644",
            "priv/assets/a/l 777",
            "priv/up 777",
        ]
    );
    let listed = paths(&p);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "entries come out sorted bytewise");
}

#[test]
fn conflicts_between_trees() {
    let priv_with = |objects: Vec<Found>| Some([vec![dir("")], objects].concat());
    // A priv tree beside an include of the directory `d` (holding `f`) into `priv/`.
    let with_d = |objects: Vec<Found>| Src {
        priv_tree: priv_with(objects),
        includes: vec![dir_include("d", "/d")],
        trees: vec![("/d", tree("/d", &[dir(""), file("f", false)]))],
        ..Default::default()
    };
    let cases: Vec<(Src, &str)> = vec![
        (
            with_d(vec![dir("d"), file("d/f", false)]),
            "app/Cargo.toml: package.metadata.release.include[0].dest: two files land on `priv/d/f`: the priv file `/src/d/f` and package.metadata.release.include[0] (`/d/f`)",
        ),
        (
            with_d(vec![file("d", false)]),
            "app/Cargo.toml: package.metadata.release.include[0].dest: `priv/d` is a directory of package.metadata.release.include[0], but the priv file `/src/d` puts a file there",
        ),
        (
            with_d(vec![dir("D"), file("D/f", false)]),
            "`priv/D` and `priv/d` differ only in case",
        ),
        (
            Src {
                priv_tree: priv_with(vec![
                    dir("x"),
                    file("x/Readme", false),
                    file("x/README", false),
                ]),
                ..Default::default()
            },
            "`priv/x/README` and `priv/x/Readme` differ only in case",
        ),
        (
            Src {
                priv_tree: priv_with(vec![link("l", "gone/file")]),
                ..Default::default()
            },
            "symlink `priv/l` (from the priv file `/src/l`) points to `gone/file`, which is not in the bundle",
        ),
        (with_d(vec![]), ""),
    ];
    for (src, want) in cases {
        let release = if want.is_empty() {
            json!({"include": [{"source": "d", "dest": "priv/"}], "exclude": ["priv/d"]})
        } else {
            json!({"include": [{"source": "d", "dest": "priv/"}]})
        };
        let got = plan_err(release, src);
        let want = if want.is_empty() {
            "package.metadata.release.include[0].source: \"d\" matches nothing (everything it matches is excluded)"
        } else {
            want
        };
        assert!(got.contains(want), "\n got: {got}\nwant: {want}");
    }
}
