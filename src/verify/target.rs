//! Executables against the manifest's target triple: ELF machine, Mach-O CPU type or PE, read
//! from the first bytes of each file.

/// ELF `e_machine` for a target triple's architecture, if we know it.
fn elf_machine(arch: &str) -> Option<u16> {
    Some(match arch {
        "x86_64" => 62,
        "i386" | "i586" | "i686" => 3,
        "aarch64" => 183,
        a if a.starts_with("arm") || a.starts_with("thumb") => 40,
        a if a.starts_with("riscv64") => 243,
        "powerpc64" | "powerpc64le" => 21,
        "powerpc" => 20,
        "s390x" => 22,
        "loongarch64" => 258,
        _ => return None,
    })
}

/// Whether a file's first bytes look like an executable of some platform. Verify keeps the
/// head only of such files: [`check_executable`] fails every other head as it fails an empty one.
pub(super) fn executable_magic(head: &[u8]) -> bool {
    [
        &b"\x7fELF"[..],
        b"MZ",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
    ]
    .iter()
    .any(|m| head.starts_with(m))
}

/// Whether the first bytes of an executable fit the target triple.
pub fn check_executable(head: &[u8], target: &str) -> Result<(), String> {
    let arch = target.split('-').next().unwrap_or_default();
    if target.contains("windows") {
        return if head.starts_with(b"MZ") {
            Ok(())
        } else {
            Err("is not a PE executable".into())
        };
    }
    if target.contains("apple") {
        let cpu = match head {
            [0xcf, 0xfa, 0xed, 0xfe, a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
            [0xca, 0xfe, 0xba, 0xbe, ..] => return Ok(()),
            _ => return Err("is not a Mach-O executable".into()),
        };
        let want = match arch {
            "x86_64" => 0x0100_0007,
            "aarch64" | "arm64" => 0x0100_000c,
            _ => return Ok(()),
        };
        return if cpu == want {
            Ok(())
        } else {
            Err(format!(
                "is a Mach-O executable for CPU type {cpu:#x}, not {arch}"
            ))
        };
    }
    if !head.starts_with(b"\x7fELF") || head.len() < 20 {
        return Err("is not an ELF executable".into());
    }
    let machine = match head[5] {
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => u16::from_le_bytes([head[18], head[19]]),
    };
    match elf_machine(arch) {
        Some(want) if want != machine => Err(format!(
            "is an ELF executable for machine {machine}, not {arch} ({want})"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_targets() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        assert!(check_executable(&elf, "x86_64-unknown-linux-gnu").is_ok());
        assert_eq!(
            check_executable(&elf, "aarch64-unknown-linux-gnu").unwrap_err(),
            "is an ELF executable for machine 62, not aarch64 (183)"
        );
        assert!(check_executable(b"#!/bin/sh\n", "x86_64-unknown-linux-gnu").is_err());
        assert!(check_executable(b"MZ\x90\0", "x86_64-pc-windows-msvc").is_ok());
        let macho = [0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 0x01];
        assert!(check_executable(&macho, "aarch64-apple-darwin").is_ok());
        assert!(check_executable(&macho, "x86_64-apple-darwin").is_err());
        // Verify drops the heads `executable_magic` refuses: for them, the verdict must be
        // the one an empty head gets.
        for target in [
            "x86_64-unknown-linux-gnu",
            "aarch64-apple-darwin",
            "x86_64-pc-windows-msvc",
        ] {
            for head in [
                &b"#!/bin/sh\n"[..],
                b"\x7fEL",
                b"M",
                &[0xcf, 0xfa],
                b"PK\x03\x04",
            ] {
                assert!(!executable_magic(head));
                assert_eq!(
                    check_executable(head, target),
                    check_executable(&[], target)
                );
            }
            assert!(executable_magic(&elf) && executable_magic(&macho));
        }
    }
}
