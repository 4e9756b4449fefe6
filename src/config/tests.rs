use serde_json::json;

use super::*;

fn src<'a>(scope: &'static str, metadata: &'a Value) -> TableSource<'a> {
    TableSource {
        file: if scope == "package" {
            "app/Cargo.toml".into()
        } else {
            "Cargo.toml".into()
        },
        metadata: Some(metadata),
        scope,
    }
}

fn load_with(ws: Value, pkg: Value, profile: &str) -> Result<Loaded, ConfigError> {
    load(
        "app",
        &src("workspace", &ws),
        &src("package", &pkg),
        &Overrides {
            profile: profile.into(),
            format: None,
        },
    )
}

fn err(pkg: Value) -> String {
    load_with(json!({}), pkg, "release")
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults() {
    let c = load_with(json!({}), json!({}), "release").unwrap().config;
    assert_eq!(c.name, "app");
    assert_eq!(c.format, Format::TarZst);
    assert_eq!(c.compression_level, 3);
    assert_eq!(c.priv_dir, PrivDir::Default);
    assert!(c.launcher.enabled);
    assert_eq!(c.launcher.stop_timeout, 30);
}

#[test]
fn layering_package_over_workspace_then_profile() {
    let ws = json!({"release": {
        "format": "tar.gz", "compression-level": 9, "env": {"A": "ws", "B": "ws"},
        "exclude": ["*.tmp"],
        "profile": {"prod": {"env": {"C": "wsprod"}, "compression-level": 1}}
    }});
    let pkg = json!({"release": {
        "format": "tar.zst", "env": {"B": "pkg"},
        "profile": {"prod": {"compression-level": 19}}
    }});
    let c = load_with(ws.clone(), pkg.clone(), "release")
        .unwrap()
        .config;
    assert_eq!(c.format, Format::TarZst);
    assert_eq!(c.compression_level, 9);
    assert_eq!(c.exclude[0].value, "*.tmp");
    let env: Vec<_> = c
        .launcher
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", v.value))
        .collect();
    assert_eq!(env, ["A=ws", "B=pkg"]);

    let c = load_with(ws, pkg, "prod").unwrap().config;
    assert_eq!(c.compression_level, 19);
    assert_eq!(c.launcher.env.len(), 3);
}

#[test]
fn deploy_inside_a_profile_is_flagged_image_and_sign_are_read() {
    let pkg = json!({"release": {"profile": {"prod": {"image": {"base": "x"}, "sign": {"key": "k"}, "deploy": {"hosts": []}}}}});
    let loaded = load_with(json!({}), pkg, "prod").unwrap();
    let flagged: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(
        flagged[0].contains("profile.prod.deploy: not read inside a profile")
            && flagged[0].contains("deploy.destinations"),
        "{flagged:?}"
    );
}

#[test]
fn release_bundle_table_wins_over_release() {
    let pkg = json!({"release": {"name": "ignored", "bogus": 1},
                     "release-bundle": {"name": "used"}});
    let loaded = load_with(json!({}), pkg, "release").unwrap();
    assert_eq!(loaded.config.name, "used");
    assert!(loaded.warnings.is_empty());
}

#[test]
fn cargo_release_keys_are_silent_unknown_keys_warn() {
    let pkg = json!({"release": {"sign-commit": true, "tag-prefix": "v", "compresion-level": 3}});
    let loaded = load_with(json!({}), pkg, "release").unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            "app/Cargo.toml: package.metadata.release.compresion-level: unknown key, ignored\nhelp: did you mean `compression-level`?"
        ]
    );
    // In our own table, cargo-release keys are not expected.
    let pkg = json!({"release-bundle": {"sign-commit": true}});
    assert_eq!(
        load_with(json!({}), pkg, "release").unwrap().warnings.len(),
        1
    );
}

#[test]
fn launcher_keys_parse_without_warnings() {
    let pkg = json!({"release": {
        "main": "app", "env": {"RUST_LOG": "info", "PORT": 4000}, "required-env": ["DATABASE_URL"],
        "env-file": "/etc/app/env", "stop-timeout": 5, "launcher": true,
        "commands": {"migrate": {"bin": "app-migrate", "args": ["up"], "description": "Migrate"}},
        "hooks": {"pre-start": "rel/pre.sh"}
    }});
    let loaded = load_with(json!({}), pkg, "release").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.launcher.env["PORT"].value, "4000");
    assert_eq!(
        loaded.config.launcher.commands["migrate"].value.bin.value,
        "app-migrate"
    );
}

#[test]
fn errors_name_file_and_key() {
    let cases = [
        (
            json!({"release": {"format": "zip"}}),
            "app/Cargo.toml: package.metadata.release.format: unknown format \"zip\"",
        ),
        (
            json!({"release": {"compression-level": "high"}}),
            "app/Cargo.toml: package.metadata.release.compression-level: expected an integer from 1 to 22, found string \"high\"",
        ),
        (
            json!({"release": {"format": "tar.gz", "compression-level": 19}}),
            "app/Cargo.toml: package.metadata.release.compression-level: 19 is out of range for tar.gz",
        ),
        (
            json!({"release": {"bins": "app"}}),
            "app/Cargo.toml: package.metadata.release.bins: expected an array of strings, found string \"app\"",
        ),
        (
            json!({"release": {"include": [{"source": "a", "dest": "b"}, {"source": "x"}]}}),
            "app/Cargo.toml: package.metadata.release.include[1]: missing `dest`",
        ),
        (
            json!({"release": {"include": [{"source": "a", "dest": "b", "mode": "0600"}]}}),
            "app/Cargo.toml: package.metadata.release.include[0].mode: \"0600\" is not an allowed mode",
        ),
        (
            json!({"release": {"include": [{"source": "a[", "dest": "b"}]}}),
            "app/Cargo.toml: package.metadata.release.include[0].source: \"a[\" is not a valid glob",
        ),
        (
            json!({"release": {"priv": 3}}),
            "app/Cargo.toml: package.metadata.release.priv: expected a directory path or `false`, found number `3`",
        ),
        (
            json!({"release": {"env": {"1BAD": "x"}}}),
            "app/Cargo.toml: package.metadata.release.env.1BAD: \"1BAD\" is not a valid environment variable name",
        ),
        (
            json!({"release": {"required-env": ["OK", "NOT OK"]}}),
            "app/Cargo.toml: package.metadata.release.required-env[1]: \"NOT OK\" is not a valid environment variable name",
        ),
        (
            json!({"release": {"commands": {"stop": {"bin": "app"}}}}),
            "app/Cargo.toml: package.metadata.release.commands.stop: `stop` is a built-in launcher command",
        ),
        (
            json!({"release": {"commands": {"Bad Name": {"bin": "app"}}}}),
            "app/Cargo.toml: package.metadata.release.commands.\"Bad Name\": \"Bad Name\" is not a valid command name",
        ),
        (
            json!({"release": {"hooks": {"pre_start": "x.sh"}}}),
            "app/Cargo.toml: package.metadata.release.hooks.pre_start: unknown hook",
        ),
        (
            json!({"release": {"stop-timeout": 0}}),
            "app/Cargo.toml: package.metadata.release.stop-timeout: 0 is out of range",
        ),
        (
            json!({"release": {"env-file": "env"}}),
            "app/Cargo.toml: package.metadata.release.env-file: \"env\" is not an absolute path",
        ),
        (
            json!({"release": {"name": "../evil"}}),
            "app/Cargo.toml: package.metadata.release.name: \"../evil\" is not a valid release name",
        ),
        (
            json!({"release": {"profile": {"prod": {"format": 1}}}}),
            "app/Cargo.toml: package.metadata.release.profile.prod.format: expected a string, found number `1`",
        ),
        (
            json!({"release": {"launcher": "yes"}}),
            "app/Cargo.toml: package.metadata.release.launcher: expected `true` or `false`, found string \"yes\"",
        ),
        (
            json!({"release": "yes"}),
            "app/Cargo.toml: package.metadata.release: expected a table, found string \"yes\"",
        ),
    ];
    for (pkg, expected) in cases {
        let got = err(pkg.clone());
        assert!(
            got.starts_with(expected),
            "for {pkg}:\n got: {got}\nwant: {expected}"
        );
    }
}

#[test]
fn workspace_errors_name_the_workspace_manifest() {
    let e = load_with(json!({"release": {"format": "rar"}}), json!({}), "release").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Cargo.toml: workspace.metadata.release.format: unknown format")
    );
}

#[test]
fn secret_looking_env_values_warn() {
    let pkg = json!({"release": {"env": {"DB_PASSWORD": "hunter2", "RUST_LOG": "info"}}});
    let loaded = load_with(json!({}), pkg, "release").unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with(
            "app/Cargo.toml: package.metadata.release.env.DB_PASSWORD: looks like a secret"
        ),
        "{}",
        w[0]
    );
}

/// `KNOWN_KEYS` is what the parser reads: each key, set alone (to a value of some type), is
/// never reported as unknown, and a key not in the list is.
#[test]
fn known_keys_are_the_keys_the_parser_reads() {
    for key in keys::KNOWN_KEYS {
        for value in [json!("x"), json!(1), json!(true), json!([]), json!({})] {
            let pkg = json!({"release": {*key: value}});
            let warned = match load_with(json!({}), pkg, "release") {
                Ok(loaded) => loaded
                    .warnings
                    .iter()
                    .any(|w| w.to_string().contains("unknown key")),
                Err(e) => e.to_string().contains("unknown key"),
            };
            assert!(!warned, "`{key}` = {value} is reported as unknown");
        }
    }
    let loaded = load_with(json!({}), json!({"release": {"no-such-key": 1}}), "release").unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains("unknown key")),
        "{:?}",
        loaded
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
    );
}
