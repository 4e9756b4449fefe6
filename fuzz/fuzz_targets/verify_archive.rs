//! Fuzz the archive reader and verifier: arbitrary bytes as a compressed bundle, and (when the
//! first byte is odd) arbitrary bytes as the tar stream inside a valid zstd frame, so the
//! fuzzer reaches the header, name, order and consistency checks directly.
#![no_main]

use cargo_release_bundle::verify::{Limits, verify_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_entries: 10_000,
        max_size: 64 << 20,
        max_ratio: 1_000,
        ratio_floor: 1 << 20,
        max_metadata: 1 << 20,
    };
    let name = "fuzz-1.0.0-x86_64-unknown-linux-gnu.tar.zst";
    match data.split_first() {
        Some((first, tar)) if first & 1 == 1 => {
            let compressed = zstd::stream::encode_all(tar, 1).expect("compressing in memory");
            let _ = verify_stream(&compressed[..], name, limits, &[], None);
        }
        _ => {
            let _ = verify_stream(data, name, limits, &[], None);
        }
    }
});
