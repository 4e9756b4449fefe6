//! Assembly: stream the planned entries and the built executables into the archive, then the
//! manifest and checksums; write to a temporary file in the output directory and rename it into
//! place only when complete.

use std::fs::{self, File};
use std::io::{BufWriter, Write};

use anyhow::{Context, Result, anyhow, bail};
use camino::{Utf8Path, Utf8PathBuf};
use tempfile::NamedTempFile;

use crate::archive::Format;
use crate::archive::manifest::{CompressionInfo, FileKind, FileRecord, Manifest, Spool};
use crate::archive::{self, ArchiveWriter, Compression};
use crate::bundle::compile::Artifacts;
use crate::bundle::plan::{BundlePlan, Content, Totals};
use crate::bundle::sources;

/// A finished bundle on disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub path: Utf8PathBuf,
    pub sha256: String,
    pub size: u64,
    pub files: usize,
    /// The OCI image written beside it, when asked for.
    pub image: Option<crate::image::build::Built>,
    /// The digest of a bundle of the same name with other bytes that this one replaced.
    pub replaced: Option<String>,
}

pub fn compression_info(c: Compression) -> CompressionInfo {
    CompressionInfo {
        format: c.format.extension().into(),
        level: c.level,
        encoder: match c.format {
            Format::TarZst => match archive::zstd_job_size(c.level) {
                0 => format!(
                    "libzstd {}, multithreaded, checksummed",
                    archive::zstd_version()
                ),
                job => format!(
                    "libzstd {}, multithreaded, {} KiB jobs, checksummed",
                    archive::zstd_version(),
                    job >> 10
                ),
            },
            Format::TarGz => format!("{GZIP_ENCODER}, mtime 0, OS 255"),
        },
    }
}

/// The gzip backend, as pinned in `Cargo.toml` (checked against `Cargo.lock` by a test).
const GZIP_ENCODER: &str = "flate2 1.1.11 (miniz_oxide 0.9.1)";

/// Test hook, in debug builds only: with `CARGO_RELEASE_BUNDLE_PAUSE_FOR_TEST=MARKER` set, stop
/// once the temporary bundle exists, write its path to `MARKER` and wait to be killed, so a
/// test can interrupt a run at a known point instead of racing it.
fn pause_for_tests(temp: &std::path::Path) {
    if cfg!(debug_assertions)
        && let Some(marker) = std::env::var_os("CARGO_RELEASE_BUNDLE_PAUSE_FOR_TEST")
    {
        let _ = fs::write(marker, temp.as_os_str().as_encoded_bytes());
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// A hidden temporary file next to its final name, readable like any published file.
fn temp_in(dir: &Utf8Path, name: &str) -> Result<NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{dir}`"))
}

/// Reports bytes as they are read, for the progress bar.
struct Reporting<'a, R> {
    inner: R,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: std::io::Read> std::io::Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// How the archive is written: what changes its bytes (compression), what does not (workers),
/// and what it refuses to ship.
#[derive(Clone, Copy)]
pub struct WriteSettings<'a> {
    pub compression: Compression,
    pub workers: u32,
    pub guard: &'a LeakGuard,
}

/// What bundling refuses to ship: the build machine's own paths, searched in every file from
/// disk, and in the executables when their paths were remapped (otherwise they hold the
/// workspace path by design).
pub struct LeakGuard {
    pub paths: crate::bundle::machine_paths::MachinePaths,
    pub executables: bool,
}

/// Bytes the bundle's files will stream (for a progress bar): the planned files plus the
/// built executables.
pub fn total_bytes(totals: &Totals, artifacts: &Artifacts) -> u64 {
    let executables: u64 = artifacts
        .executables
        .values()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    totals.bytes + executables
}

/// The archive being written, and the manifest records spooled beside it.
struct Writing<'p> {
    ar: ArchiveWriter<BufWriter<File>>,
    spool: Spool,
    machine: &'p LeakGuard,
    files: usize,
}

/// Write the bundle for `plan`. `manifest` carries everything but `files`, which is filled here.
pub fn assemble(
    plan: &BundlePlan,
    artifacts: &Artifacts,
    manifest: Manifest,
    settings: &WriteSettings,
    out_dir: &Utf8Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Bundle> {
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create `{out_dir}`"))?;
    let tmp = temp_in(out_dir, &plan.file_name)?;
    let out = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
    let ar = ArchiveWriter::new(
        out,
        settings.compression,
        settings.workers,
        &plan.top_dir,
        manifest.timestamp.epoch,
    )?;
    let spool_file = || {
        tempfile::tempfile_in(out_dir)
            .with_context(|| format!("cannot create a temporary file in `{out_dir}`"))
    };
    let spool = Spool::new(&manifest, spool_file()?, spool_file()?)?;
    pause_for_tests(tmp.path());
    let mut w = Writing {
        ar,
        spool,
        machine: settings.guard,
        files: 2,
    };
    for entry in plan.entries(&sources::walk) {
        w.add(&entry?, artifacts, progress)?;
    }
    let Writing {
        mut ar,
        spool,
        files,
        ..
    } = w;
    let (json, sums) = spool
        .finish_manifest()
        .context("cannot write the manifest")?;
    let manifest_sha = ar.file(archive::MANIFEST, archive::MODE_FILE, json.len, json.file)?;
    let sums = Spool::finish_sums(sums, &manifest_sha).context("cannot write SHA256SUMS")?;
    ar.file(archive::SHA256SUMS, archive::MODE_FILE, sums.len, sums.file)?;
    let (out, written) = ar.finish()?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write `{}`", tmp.path().display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write `{}`", tmp.path().display()))?;
    let (path, replaced) = publish(tmp, out_dir, &plan.file_name, &written.sha256)?;
    Ok(Bundle {
        path,
        sha256: written.sha256,
        size: written.size,
        files,
        image: None,
        replaced,
    })
}

impl Writing<'_> {
    /// One planned entry into the archive and the manifest.
    fn add(
        &mut self,
        entry: &crate::bundle::plan::Entry,
        artifacts: &Artifacts,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mode = format!("{:04o}", entry.mode);
        let source = match &entry.content {
            Content::Dir => return self.ar.dir(&entry.path),
            Content::Symlink { target, .. } => {
                self.ar.symlink(&entry.path, target)?;
                self.files += 1;
                return Ok(self.spool.record(&FileRecord {
                    path: entry.path.clone(),
                    kind: FileKind::Symlink,
                    mode,
                    size: 0,
                    sha256: None,
                    target: Some(target.clone()),
                })?);
            }
            Content::Generated(bytes) => {
                let sha256 = self.ar.generated(&entry.path, entry.mode, bytes)?;
                self.files += 1;
                return Ok(self.spool.record(&FileRecord {
                    path: entry.path.clone(),
                    kind: entry.kind.unwrap_or(FileKind::Launcher),
                    mode,
                    size: bytes.len() as u64,
                    sha256: Some(sha256),
                    target: None,
                })?);
            }
            Content::File { source, .. } => source,
            Content::Binary(bin) => artifacts
                .executables
                .get(bin)
                .ok_or_else(|| anyhow!("no executable was built for `{bin}`"))?,
        };
        let (size, sha256) = self.file(entry, source, progress)?;
        self.files += 1;
        self.spool.record(&FileRecord {
            path: entry.path.clone(),
            // Invariant: the planner gives every non-directory entry a kind.
            kind: entry.kind.unwrap_or(FileKind::Priv),
            mode,
            size,
            sha256: Some(sha256),
            target: None,
        })?;
        Ok(())
    }

    /// A file streamed from disk into the archive, searched for this machine's paths on the
    /// way (executables only when reproducible); its size and digest.
    fn file(
        &mut self,
        entry: &crate::bundle::plan::Entry,
        source: &Utf8Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(u64, String)> {
        let file =
            crate::util::open_regular(source).with_context(|| format!("cannot open `{source}`"))?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot stat `{source}`"))?
            .len();
        let binary = matches!(entry.content, Content::Binary(_));
        let scanned = !binary || self.machine.executables;
        let mut reader = self.machine.paths.scan(Reporting {
            inner: file,
            progress,
        });
        let sha256 = if scanned {
            self.ar.file(&entry.path, entry.mode, size, &mut reader)
        } else {
            self.ar
                .file(&entry.path, entry.mode, size, reader.get_mut())
        }
        .with_context(|| format!("cannot add `{source}` to the bundle"))?;
        if let (true, Some(hit)) = (scanned, reader.hit()) {
            let help = if binary {
                "a path the remapping does not cover (a path dependency outside the workspace, a build script that embeds one) is compiled in; move that code into the workspace, or set `reproducible = false` to ship the executable as built"
            } else {
                "remove it from the file; if it is an example, not this machine's, list it in [package.metadata.release.verify] allow-paths"
            };
            bail!(
                "`{}` (from `{source}`) contains `{}`, {}, at offset {}: a path of the build machine would ship\nhelp: {help}",
                entry.path,
                hit.path,
                hit.what,
                hit.offset
            );
        }
        Ok((size, sha256))
    }
}

/// Move the finished bundle into place with its `.sha256`: the old sidecar goes first, so a
/// crash between the renames can leave a bundle without a sidecar, but never one with the
/// wrong sidecar. The digest of a replaced bundle with other bytes, as its sidecar said.
fn publish(
    tmp: NamedTempFile,
    out_dir: &Utf8Path,
    file_name: &str,
    sha256: &str,
) -> Result<(Utf8PathBuf, Option<String>)> {
    let final_path = out_dir.join(file_name);
    let sidecar_path = out_dir.join(format!("{file_name}.sha256"));
    let replaced = fs::read_to_string(&sidecar_path)
        .ok()
        .and_then(|t| t.split_whitespace().next().map(String::from))
        .filter(|old| old != sha256 && final_path.exists());
    let mut sidecar = temp_in(out_dir, &format!("{file_name}.sha256"))?;
    writeln!(sidecar, "{sha256}  {file_name}")
        .and_then(|_| sidecar.as_file().sync_all())
        .with_context(|| format!("cannot write `{sidecar_path}`"))?;
    match fs::remove_file(&sidecar_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot replace `{sidecar_path}`"));
        }
        _ => {}
    }
    tmp.persist(&final_path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the bundle into place at `{final_path}`"))?;
    sidecar
        .persist(&sidecar_path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move `{sidecar_path}` into place"))?;
    if let Ok(dir) = File::open(out_dir) {
        let _ = dir.sync_all();
    }
    Ok((final_path, replaced))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoder the manifest names is the one compiled in: its versions are those of
    /// `Cargo.lock`.
    #[test]
    fn the_gzip_encoder_string_matches_cargo_lock() {
        let lock: toml::Table = include_str!("../../Cargo.lock").parse().unwrap();
        let version = |name: &str| {
            lock["package"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["version"].as_str())
                .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"))
                .to_string()
        };
        let expected = format!(
            "flate2 {} (miniz_oxide {})",
            version("flate2"),
            version("miniz_oxide")
        );
        assert_eq!(GZIP_ENCODER, expected);
    }
}
