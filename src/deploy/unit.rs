//! The systemd unit for a deployed layout, and systemd's quoting rules for every value that
//! reaches it. Pure: the values come from the caller, each is validated (no control
//! character, names from their alphabets) and escaped for the directive it lands in, so
//! no value can add a directive (`ExecStartPre=+…` runs as root whatever `User=` says), split
//! a command line or be expanded by systemd (`%h`; `$HOME` only matters in arguments).

use anyhow::{Result, bail};

use crate::config::layer::is_release_name;

/// What a unit is made from: facts the tool holds (the release name from the package when it
/// has one), the host's deploy path and the user the service runs as.
pub struct UnitSpec<'a> {
    /// The deploy path, absolute.
    pub root: &'a str,
    pub name: &'a str,
    pub user: &'a str,
    /// The release has `listen`: `start` runs the keeper, which says READY=1 once the first
    /// generation is, and `reload` hands the sockets to a new generation.
    pub keeper: bool,
}

/// One socket of a `.socket` unit, as the installed release reports it (`__listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub name: String,
    /// `HOST:PORT` or `unix:/path`, the host's values filled in.
    pub address: String,
    pub mode: Option<u32>,
}

impl Socket {
    /// Parse a `NAME ADDRESS MODE` line, refusing anything that could reach another
    /// directive (the deploy user could have rewritten the release that printed it).
    pub fn parse(line: &str) -> Result<Socket> {
        let fields: Vec<&str> = line.split(' ').collect();
        let [name, address, mode] = fields[..] else {
            bail!("{line:?} is not `NAME ADDRESS MODE`");
        };
        let named = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !named
            || address.is_empty()
            || address.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            bail!("{line:?} is not `NAME ADDRESS MODE`");
        }
        let mode = match mode {
            "-" => None,
            m => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| anyhow::anyhow!("{line:?}: {m:?} is not a mode"))?,
            ),
        };
        Ok(Socket {
            name: name.into(),
            address: address.into(),
            mode,
        })
    }
}

/// A unit running the release `current` points at: `Type=exec`, because `start` execs the
/// service, so systemd supervises it directly; no pid file; the host's environment from
/// `shared/env`.
pub fn render(spec: &UnitSpec) -> Result<String> {
    if !is_release_name(spec.name) {
        bail!(
            "{:?} is not a release name (letters, digits, `.`, `_`, `+`, `-`); refusing to write it into a unit",
            spec.name
        );
    }
    if !is_user_name(spec.user) {
        bail!(
            "{:?} is not a user name systemd accepts (letters, digits, `_`, `-`, not starting with a digit or `-`)",
            spec.user
        );
    }
    if !spec.root.starts_with('/') {
        bail!("the deploy path {:?} is not absolute", spec.root);
    }
    let root = spec.root;
    let name = spec.name;
    let description = specifiers(&format!(
        "{name} (deployed by cargo release-bundle under {root})"
    ))?;
    let env_file = specifiers(&format!("{root}/shared/env"))?;
    let exec = exec_path(&format!("{root}/current/bin/{name}"))?;
    // With a keeper: READY=1 from the keeper (its main process), `systemctl reload` hands
    // over, and stopping signals the keeper alone first (it stops its generations).
    let service = match spec.keeper {
        false => String::from("Type=exec\n"),
        true => String::from("Type=notify\nNotifyAccess=main\nKillMode=mixed\n"),
    };
    let reload = match spec.keeper {
        false => String::new(),
        true => format!("ExecReload={exec} reload\n"),
    };
    Ok(format!(
        "[Unit]\nDescription={description}\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\n{service}User={user}\nEnvironmentFile=-{env_file}\nExecStart={exec} start\n{reload}Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n",
        user = spec.user
    ))
}

/// `<name>.socket`: systemd holds the release's sockets (across keeper restarts and reboots)
/// and passes them to `<name>.service`, whose keeper adopts them. One listen socket is named
/// (`FileDescriptorName=`); several are passed in name order.
pub fn render_socket(name: &str, sockets: &[Socket]) -> Result<String> {
    if !is_release_name(name) {
        bail!("{name:?} is not a release name; refusing to write it into a unit");
    }
    let mut text =
        format!("[Unit]\nDescription={name} sockets (held across restarts)\n\n[Socket]\n");
    for s in sockets {
        let address = specifiers(s.address.strip_prefix("unix:").unwrap_or(&s.address))?;
        text.push_str(&format!("ListenStream={address}\n"));
        if let Some(mode) = s.mode {
            text.push_str(&format!("SocketMode={mode:04o}\n"));
        }
    }
    if let [only] = sockets {
        text.push_str(&format!("FileDescriptorName={}\n", only.name));
    }
    text.push_str(&format!(
        "Service={name}.service\n\n[Install]\nWantedBy=sockets.target\n"
    ));
    Ok(text)
}

/// systemd's user and group name rule (the strict one, `valid_user_group_name`): portable
/// names only.
pub fn is_user_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= 31
        && matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A value where systemd expands specifiers: `%` doubled; a control character refused (a
/// newline would end the directive and start another).
fn specifiers(value: &str) -> Result<String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        bail!("{value:?} holds the control character {c:?}; it cannot go into a unit file");
    }
    Ok(value.replace('%', "%%"))
}

/// The executable of an `Exec*=` line: specifiers escaped, then double-quoted with `\` and
/// `"` escaped when it holds anything that would split or unquote it. systemd takes the
/// executable's path literally (`$VAR` is expanded in arguments only), so `$` stays.
fn exec_path(word: &str) -> Result<String> {
    let value = specifiers(word)?;
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._+-:@%$=,".contains(&b));
    if plain {
        return Ok(value);
    }
    let mut quoted = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(root: &str, name: &str, user: &str) -> Result<String> {
        render(&UnitSpec {
            root,
            name,
            user,
            keeper: false,
        })
    }

    #[test]
    fn a_keeper_is_notified_reloaded_and_its_sockets_held() {
        let spec = UnitSpec {
            root: "/srv/app",
            name: "app",
            user: "deploy",
            keeper: true,
        };
        let text = render(&spec).unwrap();
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "KillMode=mixed",
            "ExecReload=/srv/app/current/bin/app reload",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
        let one = [Socket::parse("http 0.0.0.0:4000 -").unwrap()];
        let text = render_socket("app", &one).unwrap();
        assert!(
            text.contains(
                "ListenStream=0.0.0.0:4000\nFileDescriptorName=http\nService=app.service\n"
            ),
            "{text}"
        );
        let two = [
            Socket::parse("api unix:/run/a%b.sock 660").unwrap(),
            Socket::parse("http [::]:80 -").unwrap(),
        ];
        let text = render_socket("app", &two).unwrap();
        assert!(
            text.contains(
                "ListenStream=/run/a%%b.sock\nSocketMode=0660\nListenStream=[::]:80\nService="
            ),
            "{text}"
        );
        assert!(!text.contains("FileDescriptorName"), "{text}");
        for bad in [
            "http 1.2.3.4:80",
            "h\nx 1:1 -",
            "http a\rb -",
            "http 1:1 999",
            "a b c d",
            "ht/tp 1:1 -",
        ] {
            assert!(Socket::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_escaped_by_systemds_rules() {
        let cases = [
            ("/srv/app", "ExecStart=/srv/app/current/bin/app start"),
            (
                "/srv/my app",
                "ExecStart=\"/srv/my app/current/bin/app\" start",
            ),
            ("/srv/%h", "ExecStart=/srv/%%h/current/bin/app start"),
            ("/srv/$HOME", "ExecStart=/srv/$HOME/current/bin/app start"),
            (
                "/srv/a\"b\\c",
                "ExecStart=\"/srv/a\\\"b\\\\c/current/bin/app\" start",
            ),
        ];
        for (root, line) in cases {
            let text = unit(root, "app", "deploy").unwrap();
            assert!(text.lines().any(|l| l == line), "{root}: {text}");
        }
        let text = unit("/srv/%h", "app", "deploy").unwrap();
        assert!(
            text.contains("EnvironmentFile=-/srv/%%h/shared/env"),
            "{text}"
        );
        assert!(text.contains("under /srv/%%h)"), "{text}");
    }

    #[test]
    fn values_that_could_add_a_directive_are_refused() {
        let cases = [
            (
                "/srv/app",
                "app\nExecStartPre=+/bin/sh",
                "deploy",
                "not a release name",
            ),
            ("/srv/app", "app start", "deploy", "not a release name"),
            (
                "/srv/a\nExecStartPre=+/x",
                "app",
                "deploy",
                "control character",
            ),
            ("/srv/a\rb", "app", "deploy", "control character"),
            ("srv/app", "app", "deploy", "not absolute"),
            ("/srv/app", "app", "root\nGroup=x", "not a user name"),
            ("/srv/app", "app", "", "not a user name"),
            ("/srv/app", "app", "1abc", "not a user name"),
        ];
        for (root, name, user, why) in cases {
            let err = unit(root, name, user).unwrap_err().to_string();
            assert!(err.contains(why), "{root:?} {name:?} {user:?}: {err}");
        }
    }
}
