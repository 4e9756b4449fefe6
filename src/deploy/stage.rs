//! Staging: the transfer to a group of hosts that hold the same files (one stream,
//! compressed once, written to each), and installing it on each as `releases/<version>`
//! once its digest and every file's have been checked there.

use std::io::{BufReader, Write};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::notes::Happened;
use super::session::Session;
use super::state::{HeldFile, TransferPlan, Wire};
use super::{Event, Release, now};
use crate::archive;

/// Counts and hashes what goes to the host.
struct Tally<W: Write> {
    inner: W,
    bytes: u64,
    hash: Sha256,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write the transfer: `links` (three lines a file), then `release/...`: every entry of the
/// bundle except the regular files the host already holds.
fn write_transfer(release: &Release, links: &[HeldFile], out: impl Write) -> Result<()> {
    let bundle = release.bundle;
    let linked: std::collections::BTreeSet<&str> = links.iter().map(|l| l.to.as_str()).collect();
    let mut builder = tar::Builder::new(out);
    let mut list = Vec::new();
    for l in links {
        for line in [&l.from, &l.to, &l.mode] {
            list.extend_from_slice(line.as_bytes());
            list.push(b'\n');
        }
    }
    let mut header = tar::Header::new_ustar();
    header.set_size(list.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(release.manifest.timestamp.epoch);
    builder
        .append_data(&mut header, "links", &list[..])
        .context("cannot write the transfer")?;
    let file = crate::util::open_regular(bundle)
        .with_context(|| format!("`{bundle}`: cannot open the bundle"))?;
    let decoder = archive::decoder(release.format(), BufReader::new(file))?;
    let mut tar = tar::Archive::new(decoder);
    let top = format!("{}/", release.manifest.top_dir);
    for entry in tar
        .entries()
        .with_context(|| format!("`{bundle}`: cannot read"))?
    {
        let mut entry = entry.with_context(|| format!("`{bundle}`: cannot read"))?;
        let path = entry
            .path()
            .with_context(|| format!("`{bundle}`: an entry name"))?
            .to_string_lossy()
            .into_owned();
        let Some(rel) = path.strip_prefix(&top) else {
            continue;
        };
        let rel = rel.trim_end_matches('/');
        if rel.is_empty() || linked.contains(rel) {
            continue;
        }
        let mut header = entry.header().clone();
        let name = format!("release/{rel}");
        let kind = header.entry_type();
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .context("a symlink without a target")?
                .into_owned();
            builder
                .append_link(&mut header, &name, target)
                .context("cannot write the transfer")?;
        } else {
            builder
                .append_data(&mut header, &name, &mut entry)
                .context("cannot write the transfer")?;
        }
    }
    builder
        .into_inner()
        .context("cannot write the transfer")?
        .flush()?;
    Ok(())
}

/// Write what goes over the wire: the bundle's own bytes, or the transfer tar (plain, gzip
/// on every core, or zstd on every core).
fn send(
    release: &Release,
    plan: &TransferPlan,
    wire: Wire,
    out: &mut (impl Write + Send),
) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    match wire {
        Wire::Bundle => {
            let bundle = release.bundle;
            let mut file = crate::util::open_regular(bundle)
                .with_context(|| format!("`{bundle}`: cannot open the bundle"))?;
            std::io::copy(&mut file, out).context("cannot send the bundle")?;
            Ok(())
        }
        Wire::Gzip => {
            super::gzip::compress(out, workers, 6, |w| write_transfer(release, &plan.links, w))
                .map(drop)
        }
        Wire::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
            enc.multithread(workers as u32)?;
            write_transfer(release, &plan.links, &mut enc)?;
            enc.finish().context("cannot send the release")?;
            Ok(())
        }
        Wire::Tar => write_transfer(release, &plan.links, out),
    }
}

/// Writes the same bytes to every host of a group.
struct FanOut(Vec<std::io::BufWriter<std::process::ChildStdin>>);

impl Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for w in &mut self.0 {
            w.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.iter_mut().try_for_each(Write::flush)
    }
}

/// Each host's `receive` step, running, with a buffered stdin to write the transfer to.
fn receivers(
    members: &[&Session],
    release: &Release,
    id: &str,
    wire: Wire,
) -> Result<
    Vec<(
        std::process::Child,
        std::io::BufWriter<std::process::ChildStdin>,
    )>,
> {
    let format = release.format();
    members
        .iter()
        .map(|s| {
            let label = &s.target.label;
            let mut cmd = s.target.transport.step(
                &s.target.path,
                "receive",
                &[id, wire.step_arg(format), &release.manifest.top_dir],
            );
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .with_context(|| format!("{label}: cannot run the receive step"))?;
            let stdin = child.stdin.take().context("a piped stdin")?;
            Ok((child, std::io::BufWriter::with_capacity(256 * 1024, stdin)))
        })
        .collect()
}

/// Send the release to hosts that hold the same files (one stream, compressed once, written
/// to each), check on each that it arrived whole, and install it there as
/// `releases/<version>`. One result per host.
pub fn stage_group(
    members: &[&Session],
    release: &Release,
    plan: &TransferPlan,
    wire: Wire,
) -> Vec<Result<Happened>> {
    let version = &release.manifest.version;
    let id = format!("{}-{}", std::process::id(), now());
    let (children, stdins): (Vec<_>, Vec<_>) = match receivers(members, release, &id, wire) {
        Ok(spawned) => spawned.into_iter().unzip(),
        Err(e) => {
            return members
                .iter()
                .map(|_| Err(anyhow::anyhow!("{e:#}")))
                .collect();
        }
    };
    let mut tally = Tally {
        inner: FanOut(stdins),
        bytes: 0,
        hash: Sha256::new(),
    };
    let written = send(release, plan, wire, &mut tally);
    let sent = tally.bytes;
    let digest = archive::hex(&tally.hash.finalize_reset());
    drop(tally);
    let (written, digest, id) = (&written, &digest, &id);
    let pairs: Vec<(&&Session, std::process::Child)> = members.iter().zip(children).collect();
    super::parallel(pairs, |(s, child)| -> Result<Happened> {
        let label = &s.target.label;
        let out = child
            .wait_with_output()
            .with_context(|| format!("{label}: the receive step"))?;
        if let Err(e) = written {
            let _ = s.step("discard", &[id]);
            bail!("{label}: cannot send the release: {e:#}");
        }
        if !out.status.success() {
            let _ = s.step("discard", &[id]);
            bail!(
                "{label}: receive failed: {}",
                crate::output::printable(&out.stderr, 40).trim()
            );
        }
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if theirs != *digest {
            let _ = s.step("discard", &[id]);
            bail!(
                "{label}: the transfer arrived altered (sha256 {theirs} on the host, {digest} sent); nothing was installed"
            );
        }
        s.step("unpack", &[id, version])?;
        s.log(&Event::Staged {
            version: version.clone(),
            sha256: release.sha256.clone(),
            time: now(),
        })?;
        Ok(Happened::Staged {
            version: version.clone(),
            bytes_sent: sent,
            files_sent: plan.files_sent,
            files_linked: plan.links.len(),
        })
    })
}
