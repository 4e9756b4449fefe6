//! What the keeper is asked to do, pure: its command line (which is also the request a
//! `reload` sends to a running keeper, one argument per line), the listen addresses with
//! `${VAR}` expanded from the environment, and the state file's lines.

use std::path::PathBuf;
use std::time::Duration;

/// One listening socket: `--listen NAME ADDRESS MODE` (`MODE` is `-` or octal, for Unix
/// sockets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub name: String,
    pub address: String,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// `READY=1` on `NOTIFY_SOCKET`.
    Notify,
    /// Still running this long after it started.
    After(Duration),
}

/// One generation's settings, from the launcher of the release it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The release's launcher; a generation is `LAUNCHER __generation`.
    pub launcher: PathBuf,
    pub version: String,
    pub ready: Ready,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    pub listen: Vec<Listen>,
    /// Variables the launcher set from its env file and defaults: removed, so each
    /// generation's launcher reads them afresh.
    pub unset: Vec<String>,
}

/// `release-keeper run|reload --name N --tmp DIR SPEC...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: String,
    pub name: String,
    pub tmp: PathBuf,
    pub spec: Spec,
}

fn seconds(value: &str, flag: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(s) if (1..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "{flag} {value:?}: expected whole seconds from 1 to 86400"
        )),
    }
}

fn ready(value: &str) -> Result<Ready, String> {
    if value == "notify" {
        return Ok(Ready::Notify);
    }
    match value.parse::<u64>() {
        Ok(ms) if ms <= 3_600_000 => Ok(Ready::After(Duration::from_millis(ms))),
        _ => Err(format!(
            "--ready {value:?}: expected notify or milliseconds"
        )),
    }
}

fn mode(value: &str) -> Result<Option<u32>, String> {
    if value == "-" {
        return Ok(None);
    }
    match u32::from_str_radix(value, 8) {
        Ok(m) if m <= 0o777 => Ok(Some(m)),
        _ => Err(format!(
            "--listen mode {value:?}: expected - or octal up to 777"
        )),
    }
}

/// Parse the command line (without the program name).
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let command = it
        .next()
        .ok_or("expected a command: run or reload")?
        .clone();
    let (mut name, mut tmp, mut launcher, mut version) = (None, None, None, None);
    let mut spec_ready = Ready::After(Duration::from_secs(1));
    let (mut ready_timeout, mut stop_timeout) = (Duration::from_secs(60), Duration::from_secs(30));
    let (mut listen, mut unset) = (Vec::new(), Vec::new());
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--tmp" => tmp = Some(PathBuf::from(value()?)),
            "--launcher" => launcher = Some(PathBuf::from(value()?)),
            "--version" => version = Some(value()?),
            "--ready" => spec_ready = ready(&value()?)?,
            "--ready-timeout" => ready_timeout = seconds(&value()?, flag)?,
            "--stop-timeout" => stop_timeout = seconds(&value()?, flag)?,
            "--unset" => unset.extend(value()?.split_whitespace().map(String::from)),
            "--listen" => {
                let (n, a, m) = (value()?, value()?, value()?);
                listen.push(Listen {
                    name: n,
                    address: a,
                    mode: mode(&m)?,
                });
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let missing = |what: &str| format!("--{what} is required");
    let spec = Spec {
        launcher: launcher.ok_or_else(|| missing("launcher"))?,
        version: version.ok_or_else(|| missing("version"))?,
        ready: spec_ready,
        ready_timeout,
        stop_timeout,
        listen,
        unset,
    };
    if spec.listen.is_empty() {
        return Err("at least one --listen is required".into());
    }
    Ok(Args {
        command,
        name: name.ok_or_else(|| missing("name"))?,
        tmp: tmp.ok_or_else(|| missing("tmp"))?,
        spec,
    })
}

/// `${NAME}` forms replaced by `lookup(NAME)`; an unset one is an error naming it.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let (name, tail) = after
            .split_once('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let value = lookup(name)
            .ok_or_else(|| format!("${{{name}}} is not set in the service's environment"))?;
        out.push_str(&value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The request a client sends: its arguments, one per line, then an empty line. Arguments
/// are paths and validated names, never a newline (refused).
pub fn request(args: &[String]) -> Result<String, String> {
    let mut text = String::new();
    for a in args {
        if a.contains('\n') || a.is_empty() {
            return Err(format!("argument {a:?} cannot travel in a request"));
        }
        text.push_str(a);
        text.push('\n');
    }
    text.push('\n');
    Ok(text)
}

/// The state file: what `status` and `pid` read. One `key value` per line.
pub fn state_text(keeper: u32, generation: u32, pid: u32, spec: &Spec, since: u64) -> String {
    format!(
        "keeper {keeper}\ngeneration {generation}\npid {pid}\nversion {}\nlauncher {}\nsince {since}\n",
        spec.version,
        spec.launcher.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_refuses() {
        let ok = parse(&strings(&[
            "run",
            "--name",
            "b",
            "--tmp",
            "/t",
            "--launcher",
            "/r/bin/b",
            "--version",
            "1.0.0",
            "--ready",
            "notify",
            "--listen",
            "http",
            "0.0.0.0:${PORT}",
            "-",
            "--listen",
            "api",
            "unix:/run/b.sock",
            "660",
            "--unset",
            "A B",
        ]))
        .unwrap();
        assert_eq!(ok.spec.ready, Ready::Notify);
        assert_eq!(ok.spec.listen[1].mode, Some(0o660));
        assert_eq!(ok.spec.unset, ["A", "B"]);
        for (args, error) in [
            (vec!["run"], "--launcher is required"),
            (
                vec!["run", "--ready", "soon"],
                "expected notify or milliseconds",
            ),
            (vec!["run", "--stop-timeout", "0"], "expected whole seconds"),
            (vec!["run", "--listen", "a", "b", "999"], "octal up to 777"),
            (vec!["run", "--bogus"], "unknown argument"),
            (
                vec!["run", "--launcher", "/x", "--version", "1"],
                "at least one --listen",
            ),
        ] {
            let e = parse(&strings(&args)).unwrap_err();
            assert!(e.contains(error), "{args:?}: {e}");
        }
    }

    #[test]
    fn expands_variables() {
        let env = |n: &str| (n == "PORT").then(|| "4000".to_string());
        assert_eq!(expand("0.0.0.0:${PORT}", &env).unwrap(), "0.0.0.0:4000");
        assert_eq!(expand("[::1]:80", &env).unwrap(), "[::1]:80");
        assert!(
            expand("${HOST}:1", &env)
                .unwrap_err()
                .contains("${HOST} is not set")
        );
        assert!(expand("${PORT", &env).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn state_lines_are_what_the_launcher_reads() {
        let args = parse(&strings(&[
            "run",
            "--name",
            "b",
            "--tmp",
            "/t",
            "--launcher",
            "/r/bin/b",
            "--version",
            "1.3.0",
            "--listen",
            "http",
            "127.0.0.1:1",
            "-",
        ]))
        .unwrap();
        assert_eq!(
            state_text(10, 3, 42, &args.spec, 1700000000),
            "keeper 10\ngeneration 3\npid 42\nversion 1.3.0\nlauncher /r/bin/b\nsince 1700000000\n"
        );
    }

    #[test]
    fn requests_carry_arguments_line_by_line() {
        assert_eq!(
            request(&strings(&["reload", "--name", "b"])).unwrap(),
            "reload\n--name\nb\n\n"
        );
        assert!(request(&strings(&["a\nb"])).is_err());
    }
}
