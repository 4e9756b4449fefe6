//! The keeper's keys: `listen` (the sockets that outlive each process), `ready` and
//! `ready-timeout`. Checked here, before anything is built, with errors naming the key.

use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::{Listen, Ready};
use super::layer::is_env_name;
use super::value::{self, Origin, Result, Spanned};

/// A socket name: what `LISTEN_FDNAMES` carries (systemd allows more; this keeps it one
/// shell word and one `FileDescriptorName=`).
fn is_socket_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `${VAR}` forms must name variables; the text between them is checked by `check`.
fn check_variables(address: &str, o: &Origin) -> Result<()> {
    let mut rest = address;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some((name, tail)) = after.split_once('}') else {
            return Err(o.error(format!("{address:?}: unclosed `${{`")));
        };
        if !is_env_name(name) {
            return Err(o.error(format!("{address:?}: `${{{name}}}` is not a variable name")));
        }
        rest = tail;
    }
    Ok(())
}

/// One address: `unix:/absolute/path`, or an IP literal and port (either may be `${VAR}`).
fn check_address(address: &str, o: &Origin) -> Result<()> {
    let help =
        "\"0.0.0.0:${PORT}\", \"[::]:8080\", \"127.0.0.1:4000\" or \"unix:/run/app/http.sock\"";
    if address
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(o.error(format!(
            "{address:?} holds whitespace or control characters"
        )));
    }
    check_variables(address, o)?;
    if let Some(path) = address.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(o
                .error(format!("{address:?}: a Unix socket needs an absolute path"))
                .with_help(help));
        }
        if !path.contains("${") && path.len() > 107 {
            return Err(o.error(format!(
                "{address:?}: a Unix socket path has at most 107 bytes"
            )));
        }
        return Ok(());
    }
    if address.contains("${") {
        let (_, port) = address.rsplit_once(':').unwrap_or(("", ""));
        let plain = port.starts_with("${") || port.parse::<u16>().is_ok();
        return match plain {
            true => Ok(()),
            false => Err(o
                .error(format!("{address:?} is not HOST:PORT"))
                .with_help(help)),
        };
    }
    match address.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(o
            .error(format!(
                "{address:?} is not an IP address and port (names are not resolved: a listening address is an IP)"
            ))
            .with_help(help)),
    }
}

fn socket_mode(v: &Value, o: &Origin) -> Result<u32> {
    let s = value::string(v, o)?;
    match u32::from_str_radix(&s.value, 8) {
        Ok(m) if m <= 0o777 && !s.value.is_empty() => Ok(m),
        _ => Err(o
            .error(format!("{:?} is not an octal mode", s.value))
            .with_help("e.g. \"0660\"")),
    }
}

fn listen_entry(v: &Value, o: &Origin) -> Result<Listen> {
    let (address, mode) = match v {
        Value::Object(map) => {
            for key in map.keys() {
                if key != "address" && key != "mode" {
                    return Err(o
                        .child(key)
                        .error("unknown key (expected address and mode)"));
                }
            }
            let address = map
                .get("address")
                .ok_or_else(|| o.error("expected `address`"))?;
            let address = value::string(address, &o.child("address"))?.value;
            let mode = match map.get("mode") {
                Some(m) => Some(socket_mode(m, &o.child("mode"))?),
                None => None,
            };
            (address, mode)
        }
        other => (value::string(other, o)?.value, None),
    };
    check_address(&address, o)?;
    if mode.is_some() && !address.starts_with("unix:") {
        return Err(o.child("mode").error("`mode` is for Unix sockets only"));
    }
    Ok(Listen { address, mode })
}

/// `listen = { NAME = ADDRESS | { address, mode } }`.
pub(super) fn parse_listen(v: &Value, o: &Origin) -> Result<BTreeMap<String, Spanned<Listen>>> {
    let mut out = BTreeMap::new();
    let table = value::table(v, o)?;
    if table.is_empty() {
        return Err(o
            .error("names no socket")
            .with_help("listen = { http = \"0.0.0.0:${PORT}\" }"));
    }
    for (name, entry) in table {
        let origin = o.child(name);
        if !is_socket_name(name) {
            return Err(origin.error(format!(
                "{name:?} is not a socket name (letters, digits, `_`, `-`)"
            )));
        }
        let listen = listen_entry(entry, &origin)?;
        out.insert(
            name.clone(),
            Spanned {
                value: listen,
                origin,
            },
        );
    }
    Ok(out)
}

/// `ready = "notify"` or a duration (`"1s"`, `"300ms"`).
pub(super) fn parse_ready(v: &Value, o: &Origin) -> Result<Ready> {
    if let Value::String(s) = v
        && s == "notify"
    {
        return Ok(Ready::Notify);
    }
    let d = value::duration(v, o).map_err(|e| {
        e.with_help(
            "\"notify\" (the service sends READY=1) or how long it must stay up, e.g. \"1s\"",
        )
    })?;
    if d.as_secs() > 3600 {
        return Err(o.error("is longer than an hour"));
    }
    Ok(Ready::AfterMillis(d.as_millis() as u64))
}

/// `log-max-size`: bytes, as a number or with a `K`, `M` or `G` suffix (powers of 1024);
/// `0` turns rotation off.
pub(super) fn parse_size(v: &Value, o: &Origin) -> Result<u64> {
    let text = match v {
        Value::Number(_) => return Ok(value::integer(v, o, 0, 1 << 40)?.value as u64),
        Value::String(s) => s.trim().to_string(),
        other => {
            return Err(o.error(format!(
                "expected a size such as \"10M\", found {}",
                value::describe(other)
            )));
        }
    };
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => {
            return Err(o.error(format!(
                "{text:?} is not a size (e.g. 10M, 512K, 0 for no rotation)"
            )));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_shl(shift).filter(|s| *s <= 1 << 40))
        .ok_or_else(|| o.error(format!("{text:?} is not a size up to 1T")))
}

/// `ready-timeout`: whole seconds, 1 to 3600.
pub(super) fn parse_ready_timeout(v: &Value, o: &Origin) -> Result<u32> {
    let d = value::duration(v, o)?;
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || !(1..=3600).contains(&secs) {
        return Err(o.error("expected whole seconds from 1 to 3600"));
    }
    // Invariant: at most 3600.
    Ok(secs as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin {
        Origin::new("app/Cargo.toml", "package.metadata.release.listen")
    }

    #[test]
    fn addresses() {
        let ok = parse_listen(
            &json!({"http": "0.0.0.0:${PORT}", "v6": "[::1]:8080",
                    "api": {"address": "unix:/run/app.sock", "mode": "0660"}, "h": "${HOST}:80"}),
            &origin(),
        )
        .unwrap();
        assert_eq!(ok["api"].value.mode, Some(0o660));
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["api", "h", "http", "v6"]);
        for (value, error) in [
            (json!({}), "listen: names no socket"),
            (json!({"a b": "1.2.3.4:1"}), "is not a socket name"),
            (
                json!({"http": "localhost:80"}),
                "listen.http: \"localhost:80\" is not an IP address",
            ),
            (json!({"http": "0.0.0.0:${1X}"}), "is not a variable name"),
            (json!({"http": "0.0.0.0:${PORT"}), "unclosed"),
            (json!({"http": "unix:run/x"}), "needs an absolute path"),
            (json!({"http": "1.2.3.4:80 "}), "whitespace"),
            (
                json!({"http": {"address": "1.2.3.4:80", "mode": "0600"}}),
                "listen.http.mode: `mode` is for Unix",
            ),
            (
                json!({"http": {"address": "unix:/x", "mode": "rw"}}),
                "listen.http.mode: \"rw\" is not an octal mode",
            ),
            (
                json!({"http": {"adress": "unix:/x"}}),
                "listen.http.adress: unknown key",
            ),
            (json!({"http": 80}), "listen.http: expected a string"),
        ] {
            let e = parse_listen(&value, &origin()).unwrap_err().to_string();
            assert!(e.contains(error), "{value}: {e}");
        }
    }

    #[test]
    fn readiness() {
        let o = Origin::new("app/Cargo.toml", "package.metadata.release.ready");
        assert_eq!(parse_ready(&json!("notify"), &o).unwrap(), Ready::Notify);
        assert_eq!(
            parse_ready(&json!("300ms"), &o).unwrap(),
            Ready::AfterMillis(300)
        );
        assert_eq!(
            parse_ready(&json!(2), &o).unwrap(),
            Ready::AfterMillis(2000)
        );
        assert!(
            parse_ready(&json!("soon"), &o)
                .unwrap_err()
                .to_string()
                .contains("ready: \"soon\" is not a duration")
        );
        assert_eq!(parse_ready_timeout(&json!("90s"), &o).unwrap(), 90);
        assert!(parse_ready_timeout(&json!(0), &o).is_err());
        assert!(parse_ready_timeout(&json!("1500ms"), &o).is_err());
        assert_eq!(parse_size(&json!("10M"), &o).unwrap(), 10 << 20);
        assert_eq!(parse_size(&json!(0), &o).unwrap(), 0);
        assert!(
            parse_size(&json!("10 MB"), &o)
                .unwrap_err()
                .to_string()
                .contains("is not a size")
        );
    }
}
