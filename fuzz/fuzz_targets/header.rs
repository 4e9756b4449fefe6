//! Fuzz the header parser on its own: for any 512 bytes, a header the strict reader accepts in
//! full (checksum, every number, no non-canonical field) must be exactly the header the writer
//! encodes for the values read, and re-encoding must be stable.
#![no_main]

use cargo_release_bundle::archive::header::{Entry, Kind, RawHeader, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = <[u8; 512]>::try_from(data.get(..512).unwrap_or(&[])) else {
        return;
    };
    let h = RawHeader { bytes };
    // Every accessor is total: no panics on any input.
    let (size, mode, mtime) = (h.size(), h.mode(), h.mtime());
    let _ = (h.uid(), h.gid(), h.dev_major(), h.dev_minor(), h.checksum());
    let _ = (h.path_bytes(), h.link_bytes(), h.uname(), h.gname(), h.is_ustar());
    let Some(fields) = h.noncanonical_fields() else {
        return;
    };
    if !fields.is_empty() || h.checksum().is_err() {
        return;
    }
    // Accepted: it must be the writer's bytes for the values it holds.
    let path = String::from_utf8(h.path_bytes()).expect("accepted names are UTF-8");
    let link = std::str::from_utf8(h.link_bytes()).expect("accepted links are UTF-8");
    let entry = Entry {
        kind: Kind::from_typeflag(h.typeflag()).expect("accepted kinds are known"),
        path: &path,
        mode: mode.expect("accepted") as u32,
        size: size.expect("accepted"),
        mtime: mtime.expect("accepted"),
        link,
    };
    let again = encode(&entry).expect("accepted headers re-encode");
    assert_eq!(&again[..], &bytes[..], "an accepted header differs from the writer's");
});
