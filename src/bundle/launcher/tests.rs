use super::*;

fn spec() -> LauncherSpec {
    LauncherSpec {
        name: "billing".into(),
        version: "1.2.0".into(),
        main: "billing".into(),
        bins: vec!["billing".into(), "billing-migrate".into()],
        env: BTreeMap::from([
            ("RUST_LOG".into(), "info".into()),
            ("EVIL".into(), "it's $(touch /tmp/x) `id`\nline2".into()),
        ]),
        required_env: vec!["PORT".into(), "DATABASE_URL".into()],
        env_file: Some("/etc/billing/env".into()),
        stop_timeout: 30,
        log_max_size: 10 << 20,
        log_keep: 5,
        args: vec!["--root=${RELEASE_PRIV}/www".into(), "$HOME".into()],
        workdir: Some("priv/www".into()),
        commands: BTreeMap::from([(
            "migrate".into(),
            CustomCommand {
                bin: "billing-migrate".into(),
                args: vec!["up".into(), "it's".into()],
                description: Some("Run $(reboot) migrations `now`".into()),
            },
        )]),
        keeper: None,
        processes: Vec::new(),
    }
}

#[test]
fn quoting() {
    assert_eq!(quote("plain"), "'plain'");
    assert_eq!(quote("it's"), r"'it'\''s'");
    assert_eq!(quote("$(x) `y` \"z\""), "'$(x) `y` \"z\"'");
    assert_eq!(quote(""), "''");
}

#[test]
fn values_are_embedded_quoted() {
    let script = render(&spec());
    assert!(script.starts_with("#!/bin/sh\n"));
    assert!(!script.contains("{{"), "every placeholder is filled");
    assert!(script.contains("RELEASE_NAME='billing'\n"));
    assert!(script.contains("rb_env_file_default='/etc/billing/env'\n"));
    assert!(script.contains("  rb_default EVIL 'it'\\''s $(touch /tmp/x) `id`\nline2'\n"));
    assert!(script.contains("  rb_default RUST_LOG 'info'\n"));
    assert!(script.contains("rb_required_env='PORT DATABASE_URL'\n"));
    assert!(
        script
            .contains("exec \"$RELEASE_ROOT/libexec/\"'billing-migrate' 'up' 'it'\\''s' \"$@\" ;;")
    );
    // Descriptions land in an unquoted here-document: expansions are escaped.
    assert!(script.contains(r"  migrate     Run \$(reboot) migrations \`now\`"));
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render(&spec()), render(&spec()));
}

/// Configuration text that looks like every placeholder is rendered as text, once.
#[test]
fn placeholders_in_values_are_not_filled_again() {
    let placeholders: Vec<String> = TEMPLATE
        .match_indices("{{")
        .filter_map(|(at, _)| {
            let rest = &TEMPLATE[at + 2..];
            rest.find("}}")
                .map(|end| format!("{{{{{}}}}}", &rest[..end]))
        })
        .collect();
    assert!(placeholders.len() >= 14, "{placeholders:?}");
    let all = placeholders.join(" ");
    let mut s = spec();
    s.env.insert("LOOKS_LIKE".into(), all.clone());
    s.commands.get_mut("migrate").unwrap().description = Some(all.clone());
    s.commands
        .get_mut("migrate")
        .unwrap()
        .args
        .push(all.clone());
    let script = render(&s);
    // Each value appears as given (quoted or escaped), and nothing else was substituted.
    assert!(script.contains(&format!("  rb_default LOOKS_LIKE {}\n", quote(&all))));
    assert!(script.contains(&format!("  migrate     {}\n", heredoc_text(&all))));
    let clean = render(&spec());
    let extra = script.matches("{{").count() - clean.matches("{{").count();
    assert_eq!(
        extra,
        3 * placeholders.len(),
        "values were rendered more than once"
    );
    assert_eq!(
        clean.matches("{{").count(),
        0,
        "every template placeholder is filled"
    );
}

/// The built-in commands config refuses to shadow are exactly the launcher's own case arms.
#[test]
fn builtin_commands_are_the_templates_case_arms() {
    let mut s = spec();
    s.commands.clear();
    let script = render(&s);
    let dispatch = &script[script.rfind("case $rb_command in").unwrap()..];
    let mut arms: Vec<&str> = dispatch
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(')').map(|(arm, _)| arm))
        .filter(|arm| !arm.starts_with(' ') && *arm != "*")
        .flat_map(|arm| arm.split('|'))
        .filter(|name| !name.starts_with('-'))
        .collect();
    arms.sort_unstable();
    let mut builtins = crate::config::keys::BUILTIN_COMMANDS.to_vec();
    builtins.sort_unstable();
    assert_eq!(arms, builtins);
}

#[test]
fn release_variables_are_substituted_as_data() {
    assert_eq!(word("plain"), "'plain'");
    assert_eq!(word(""), "''");
    assert_eq!(word("${RELEASE_PRIV}/www"), "\"$RELEASE_PRIV\"'/www'");
    assert_eq!(
        word("a${RELEASE_ROOT}b${RELEASE_VSN}"),
        "'a'\"$RELEASE_ROOT\"'b'\"$RELEASE_VSN\""
    );
    // Anything else stays literal, quoted: no shell ever sees it unquoted.
    assert_eq!(
        word("$HOME ${HOME} ${RELEASE_PRIV"),
        "'$HOME ${HOME} ${RELEASE_PRIV'"
    );
    assert_eq!(word("$(id)${RELEASE_TMP}"), "'$(id)'\"$RELEASE_TMP\"");
    // The arguments are one quoted string of such words, `eval`ed into "$@" at start.
    let script = render(&spec());
    let args = quote("'--root='\"$RELEASE_PRIV\"'/www' '$HOME'");
    let arm = format!("    web) rb_main='billing' rb_args={args} rb_wd='priv/www' ;;\n");
    assert!(script.contains(&arm), "{script}");
    let mut s = spec();
    s.workdir = None;
    assert!(render(&s).contains("rb_wd='-' ;;"));
    s.processes.push(ProcessSpec {
        name: "worker".into(),
        bin: "billing-migrate".into(),
        args: vec!["--queue".into()],
        workdir: Some(String::new()),
    });
    let script = render(&s);
    let arm = format!(
        "    worker) rb_main='billing-migrate' rb_args={} rb_wd='' ;;\n",
        quote("'--queue'")
    );
    assert!(script.contains(&arm), "{script}");
    assert!(script.contains("rb_processes='web worker'\n"));
}
