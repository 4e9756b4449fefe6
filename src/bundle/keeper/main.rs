//! release-keeper: holds a release's listening sockets and hands them to each generation of
//! the service (systemd's socket-activation protocol: fds 3..., `LISTEN_FDS`,
//! `LISTEN_FDNAMES`; the launcher sets `LISTEN_PID`). A reload starts the next generation on
//! the same sockets, waits until it is ready, then sends SIGTERM to the one before, which
//! drains: both accept from one kernel queue, so no connection is refused.
//!
//! `release-keeper run ...` keeps; `release-keeper reload ...` asks a running keeper (over
//! `<tmp>/<name>.keeper.sock`) to hand over to the release named in the request. Shipped in
//! every bundle with `listen`, built by cargo-release-bundle for the bundle's target.

mod generation;
mod spec;
mod sys;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::RawFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use generation::{Generation, NotifyReader, Pending, exit_code};
use spec::{Args, Ready, Spec};

pub fn say(text: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "release-keeper[{}]: {text}",
        std::process::id()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match spec::parse(&args) {
        Ok(a) if a.command == "run" => run(a),
        Ok(a) if a.command == "reload" => reload(&a, &args),
        Ok(a) if a.command == "addresses" => addresses(&a),
        Ok(a) => Err(format!(
            "unknown command {:?} (expected run or reload)",
            a.command
        )),
        Err(e) => Err(e),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            say(&e);
            std::process::exit(2)
        }
    }
}

fn control_path(a: &Args) -> PathBuf {
    a.tmp.join(format!("{}.keeper.sock", a.name))
}

/// `NAME ADDRESS MODE` per socket, `${VAR}` expanded (for a systemd `.socket` unit).
fn addresses(a: &Args) -> Result<i32, String> {
    let lookup = |n: &str| std::env::var(n).ok();
    for l in &a.spec.listen {
        let address =
            spec::expand(&l.address, &lookup).map_err(|e| format!("listen.{}: {e}", l.name))?;
        let mode = l.mode.map_or("-".to_string(), |m| format!("{m:o}"));
        println!("{} {address} {mode}", l.name);
    }
    Ok(0)
}

/// The client: send the request, print the keeper's answer; 0 when it handed over.
fn reload(a: &Args, args: &[String]) -> Result<i32, String> {
    let path = control_path(a);
    let mut stream = UnixStream::connect(&path)
        .map_err(|e| format!("no keeper answers on {}: {e}", path.display()))?;
    let mut request = vec!["reload".to_string()];
    request.extend(args[1..].iter().cloned());
    stream
        .write_all(spec::request(&request)?.as_bytes())
        .map_err(|e| format!("cannot send the request to {}: {e}", path.display()))?;
    let mut last = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("reading the keeper's answer: {e}"))?;
        println!("{line}");
        last = line;
    }
    Ok(if last.starts_with("ok ") { 0 } else { 1 })
}

/// What the main loop hears.
pub enum Event {
    Signal(u8),
    Ready(u32),
    Reload(Box<Spec>, UnixStream),
}

struct Keeper {
    args: Args,
    fds: Vec<RawFd>,
    held: Vec<sys::Held>,
    tx: Sender<Event>,
    next: u32,
    serving: Option<Generation>,
    pending: Option<Pending>,
    draining: Vec<Generation>,
    /// Set once the keeper is stopping: the exit code so far.
    exit: Option<i32>,
    /// systemd's notification socket, when systemd started the keeper.
    systemd: Option<String>,
}

fn reply(client: Option<UnixStream>, line: &str) {
    if let Some(mut c) = client {
        let _ = writeln!(c, "{line}");
    }
}

/// Bind (or adopt from systemd) the sockets, start generation 1, keep until stopped.
fn run(args: Args) -> Result<i32, String> {
    let held = match sys::adopt(&args.spec.listen)? {
        Some(held) => held,
        None => {
            let lookup = |n: &str| std::env::var(n).ok();
            let mut expanded = Vec::new();
            for l in &args.spec.listen {
                let address = spec::expand(&l.address, &lookup)
                    .map_err(|e| format!("listen.{}: {e}", l.name))?;
                expanded.push((l.clone(), address));
            }
            sys::bind(&expanded)?
        }
    };
    let path = control_path(&args);
    let _ = std::fs::remove_file(&path);
    let control = UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e} (a Unix socket path has at most 107 bytes; a shorter RELEASE_TMP helps)", path.display()))?;
    let (tx, rx) = mpsc::channel();
    let signals = sys::catch_signals().map_err(|e| format!("cannot catch signals: {e}"))?;
    spawn_signal_reader(signals, tx.clone());
    spawn_acceptor(control, tx.clone());
    let systemd = std::env::var("NOTIFY_SOCKET").ok();
    let mut keeper = Keeper {
        fds: held.iter().map(|h| h.fd).collect(),
        held,
        tx,
        next: 1,
        serving: None,
        pending: None,
        draining: Vec::new(),
        exit: None,
        systemd,
        args,
    };
    let first = keeper.args.spec.clone();
    keeper.start(first, None);
    let code = keeper.keep(rx);
    keeper.clean_up(&path);
    Ok(code)
}

fn spawn_signal_reader(mut signals: UnixStream, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while std::io::Read::read_exact(&mut signals, &mut byte).is_ok() {
            if tx.send(Event::Signal(byte[0])).is_err() {
                break;
            }
        }
    });
}

/// Accept control connections; read each request (bounded in time) and pass it on.
fn spawn_acceptor(control: UnixListener, tx: Sender<Event>) {
    std::thread::spawn(move || {
        for stream in control.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut lines = Vec::new();
            for line in BufReader::new(&stream).lines() {
                match line {
                    Ok(l) if l.is_empty() => break,
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            match spec::parse(&lines) {
                Ok(a) if a.command == "reload" => {
                    if tx.send(Event::Reload(Box::new(a.spec), stream)).is_err() {
                        break;
                    }
                }
                Ok(a) => reply(
                    Some(stream),
                    &format!("error unknown request {:?}", a.command),
                ),
                Err(e) => reply(Some(stream), &format!("error {e}")),
            }
        }
    });
}

impl Keeper {
    /// Start the next generation from `spec`'s launcher; `client` hears how it ends.
    fn start(&mut self, spec: Spec, client: Option<UnixStream>) {
        let n = self.next;
        self.next += 1;
        match self.spawn(n, &spec) {
            Ok(generation) => {
                say(&format!("started {}", generation.label()));
                self.pending = Some(Pending { generation, client });
            }
            Err(e) => self.failed(client, &format!("cannot start generation {n}: {e}")),
        }
    }

    fn spawn(&self, n: u32, spec: &Spec) -> Result<Generation, String> {
        let notify = match spec.ready {
            Ready::Notify => {
                let path = self
                    .args
                    .tmp
                    .join(format!("{}.g{n}.notify", self.args.name));
                Some(NotifyReader::bind(path, n, self.tx.clone())?)
            }
            Ready::After(_) => None,
        };
        let mut command = Command::new(&spec.launcher);
        command.arg("__generation").stdin(Stdio::null());
        for var in [
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
        ] {
            command.env_remove(var);
        }
        for var in &spec.unset {
            command.env_remove(var);
        }
        let names: Vec<&str> = self.held.iter().map(|h| h.name.as_str()).collect();
        command
            .env("LISTEN_FDS", self.fds.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env("RELEASE_GENERATION", n.to_string());
        if let Some(reader) = &notify {
            command.env("NOTIFY_SOCKET", &reader.path);
        }
        let fds = self.fds.clone();
        // Invariant: place_fds makes only async-signal-safe calls.
        unsafe {
            command.pre_exec(move || sys::place_fds(&fds));
        }
        let child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", spec.launcher.display()))?;
        Ok(Generation {
            n,
            child,
            spec: spec.clone(),
            started: Instant::now(),
            stopping_since: None,
            killed: false,
            notify,
        })
    }

    /// A handover that did not happen: tell the client; with nothing serving, stop.
    fn failed(&mut self, client: Option<UnixStream>, why: &str) {
        let keeps = match &self.serving {
            Some(g) => format!("; {} keeps serving", g.label()),
            None => String::new(),
        };
        say(&format!("{why}{keeps}"));
        reply(client, &format!("error {why}{keeps}"));
        if self.serving.is_none() && self.exit.is_none() {
            self.exit = Some(1);
        }
    }

    /// The loop: events, then reaping, then deadlines, every 20 ms at most.
    fn keep(&mut self, rx: Receiver<Event>) -> i32 {
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(event) => self.on(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.begin_stop(sys::SIGTERM),
            }
            self.reap();
            self.deadlines();
            if let Some(code) = self.exit
                && self.serving.is_none()
                && self.pending.is_none()
                && self.draining.is_empty()
            {
                return code;
            }
        }
    }

    fn on(&mut self, event: Event) {
        match event {
            Event::Signal(sig) if sig as i32 == sys::SIGHUP => {
                if let Some(spec) = self.serving.as_ref().map(|g| g.spec.clone())
                    && self.pending.is_none()
                    && self.exit.is_none()
                {
                    self.start(spec, None);
                }
            }
            Event::Signal(sig) => self.begin_stop(sig as i32),
            Event::Ready(n) => {
                // Not while stopping: the pending generation was told to stop too.
                if self.exit.is_none() && self.pending.as_ref().is_some_and(|p| p.generation.n == n)
                {
                    self.promote();
                }
            }
            Event::Reload(spec, client) => self.reload_request(*spec, client),
        }
    }

    fn reload_request(&mut self, spec: Spec, client: UnixStream) {
        let busy = self.pending.as_ref().map(|p| p.generation.label());
        if self.exit.is_some() {
            reply(Some(client), "error the keeper is stopping");
        } else if let Some(busy) = busy {
            reply(
                Some(client),
                &format!("error a handover is in progress ({busy} is starting); try again"),
            );
        } else if spec.listen != self.args.spec.listen {
            reply(
                Some(client),
                "error the release listens on other addresses than the keeper holds; a cold restart (stop, then daemon) is needed to change `listen`",
            );
        } else {
            self.start(spec, Some(client));
        }
    }

    /// The pending generation is ready: it serves; the one before drains.
    fn promote(&mut self) {
        let Some(Pending {
            mut generation,
            client,
        }) = self.pending.take()
        else {
            return;
        };
        generation.notify = None;
        let label = generation.label();
        let old = self.serving.replace(generation);
        let drained = match old {
            Some(mut old) => {
                old.stop(sys::SIGTERM);
                let l = old.label();
                self.draining.push(old);
                format!("; {l} drains")
            }
            None => String::new(),
        };
        say(&format!("{label} is ready and serving{drained}"));
        self.write_state();
        self.tell_systemd(&format!("READY=1\nSTATUS=serving {label}"));
        if let Some(g) = &self.serving {
            reply(
                client,
                &format!(
                    "ok generation {} pid {} version {}",
                    g.n,
                    g.child.id(),
                    g.spec.version
                ),
            );
        }
    }

    fn begin_stop(&mut self, sig: i32) {
        if self.exit.is_none() {
            say("stopping");
            self.tell_systemd("STOPPING=1");
            self.exit = Some(0);
        }
        let forwarded = if sig == sys::SIGHUP {
            sys::SIGTERM
        } else {
            sig
        };
        if let Some(p) = &mut self.pending {
            p.generation.stop(forwarded);
        }
        if let Some(g) = &mut self.serving {
            g.stop(forwarded);
        }
    }

    /// Collect every generation that exited and decide what it means.
    fn reap(&mut self) {
        if let Some(p) = &mut self.pending
            && let Ok(Some(status)) = p.generation.child.try_wait()
        {
            let Some(p) = self.pending.take() else { return };
            let why = format!(
                "{} exited ({status}) before it was ready",
                p.generation.label()
            );
            self.failed(p.client, &why);
        }
        if let Some(g) = &mut self.serving
            && let Ok(Some(status)) = g.child.try_wait()
        {
            let label = g.label();
            self.serving = None;
            if self.exit.is_none() {
                say(&format!(
                    "{label} exited ({status}) while serving; stopping"
                ));
                self.begin_stop(sys::SIGTERM);
            }
            self.exit = Some(exit_code(status));
            let _ = std::fs::remove_file(self.state_path());
        }
        self.draining.retain_mut(|g| match g.child.try_wait() {
            Ok(Some(status)) => {
                say(&format!("{} exited ({status})", g.label()));
                false
            }
            _ => true,
        });
    }

    fn deadlines(&mut self) {
        if let Some(p) = &self.pending {
            let age = p.generation.started.elapsed();
            let ready_after = match p.generation.spec.ready {
                Ready::After(d) => Some(d),
                Ready::Notify => None,
            };
            if ready_after.is_some_and(|d| age >= d) && self.exit.is_none() {
                self.promote();
            } else if age >= p.generation.spec.ready_timeout
                && let Some(mut p) = self.pending.take()
            {
                let why = format!(
                    "{} was not ready within {:?}",
                    p.generation.label(),
                    p.generation.spec.ready_timeout
                );
                // SIGTERM first: connections it did accept are answered if it can; SIGKILL
                // follows after its stop-timeout.
                p.generation.stop(sys::SIGTERM);
                self.draining.push(p.generation);
                self.failed(p.client, &why);
            }
        }
        for g in self.draining.iter_mut().chain(self.serving.as_mut()) {
            g.enforce_timeout();
        }
        if let Some(p) = &mut self.pending {
            p.generation.enforce_timeout();
        }
    }

    fn state_path(&self) -> PathBuf {
        self.args.tmp.join(format!("{}.keeper", self.args.name))
    }

    /// Write the state file by rename, so a reader never sees half of it.
    fn write_state(&self) {
        let Some(g) = &self.serving else { return };
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = spec::state_text(std::process::id(), g.n, g.child.id(), &g.spec, since);
        let path = self.state_path();
        let new = path.with_extension(format!("keeper.new.{}", std::process::id()));
        if let Err(e) = std::fs::write(&new, text).and_then(|_| std::fs::rename(&new, &path)) {
            say(&format!("cannot write {}: {e}", path.display()));
        }
    }

    fn tell_systemd(&self, text: &str) {
        let Some(path) = &self.systemd else { return };
        if let Ok(socket) = UnixDatagram::unbound() {
            let _ = match path.strip_prefix('@') {
                Some(name) => send_abstract(&socket, name, text),
                None => socket.send_to(text.as_bytes(), path).map(|_| ()),
            };
        }
    }

    fn clean_up(&mut self, control: &Path) {
        let _ = std::fs::remove_file(control);
        let _ = std::fs::remove_file(self.state_path());
        for h in &self.held {
            if let Some(p) = &h.unix_path {
                let _ = std::fs::remove_file(p);
            }
        }
        say("stopped");
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &str, text: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    socket.send_to_addr(text.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &str) -> std::io::Result<()> {
    Ok(())
}
