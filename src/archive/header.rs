//! The one definition of a bundle's tar header: where each field lives, how the writer encodes
//! it, and the strict reading the verifier applies.
//!
//! The writer produces exactly one byte string for each entry (name, kind, mode, size, mtime,
//! link target). The reader accepts a header only when it is that byte string: numbers are
//! zero-padded octal with a NUL terminator, strings are NUL-padded, the checksum is the
//! unsigned sum in the same form, and nothing else is set. Tools read lenient headers
//! differently (GNU tar and bsdtar stop a number at a space, others skip spaces), so
//! accepting only the canonical form is what makes the verifier see what `tar` extracts.

use super::{BLOCK, MODE_DIR, MODE_SYMLINK};

/// A fixed field of the 512-byte ustar header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub len: usize,
}

const fn field(name: &'static str, offset: usize, len: usize) -> Field {
    Field { name, offset, len }
}

pub const NAME: Field = field("name", 0, 100);
pub const MODE: Field = field("mode", 100, 8);
pub const UID: Field = field("uid", 108, 8);
pub const GID: Field = field("gid", 116, 8);
pub const SIZE: Field = field("size", 124, 12);
pub const MTIME: Field = field("mtime", 136, 12);
pub const CHECKSUM: Field = field("checksum", 148, 8);
pub const TYPEFLAG: Field = field("typeflag", 156, 1);
pub const LINKNAME: Field = field("linkname", 157, 100);
pub const MAGIC: Field = field("magic", 257, 6);
pub const VERSION: Field = field("version", 263, 2);
pub const UNAME: Field = field("uname", 265, 32);
pub const GNAME: Field = field("gname", 297, 32);
pub const DEVMAJOR: Field = field("devmajor", 329, 8);
pub const DEVMINOR: Field = field("devminor", 337, 8);
pub const PREFIX: Field = field("prefix", 345, 155);
pub const PAD: Field = field("padding", 500, 12);

/// Every field, in header order; together they cover all 512 bytes.
pub const FIELDS: [Field; 17] = [
    NAME, MODE, UID, GID, SIZE, MTIME, CHECKSUM, TYPEFLAG, LINKNAME, MAGIC, VERSION, UNAME, GNAME,
    DEVMAJOR, DEVMINOR, PREFIX, PAD,
];

pub const USTAR_MAGIC: &[u8; 6] = b"ustar\0";
pub const USTAR_VERSION: &[u8; 2] = b"00";

/// Typeflags. The writer uses only the first three.
pub const TYPE_REGULAR: u8 = b'0';
pub const TYPE_SYMLINK: u8 = b'2';
pub const TYPE_DIR: u8 = b'5';
pub const TYPE_OLD_REGULAR: u8 = 0;
pub const TYPE_HARDLINK: u8 = b'1';
pub const TYPE_CHAR_DEVICE: u8 = b'3';
pub const TYPE_BLOCK_DEVICE: u8 = b'4';
pub const TYPE_FIFO: u8 = b'6';
pub const TYPE_PAX: u8 = b'x';
pub const TYPE_PAX_GLOBAL: u8 = b'g';
pub const TYPE_GNU_LONGNAME: u8 = b'L';
pub const TYPE_GNU_LONGLINK: u8 = b'K';
pub const TYPE_GNU_SPARSE: u8 = b'S';

/// The kinds of entry a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

impl Kind {
    pub fn typeflag(self) -> u8 {
        match self {
            Kind::Dir => TYPE_DIR,
            Kind::File => TYPE_REGULAR,
            Kind::Symlink => TYPE_SYMLINK,
        }
    }

    pub fn from_typeflag(flag: u8) -> Option<Kind> {
        match flag {
            TYPE_DIR => Some(Kind::Dir),
            TYPE_REGULAR => Some(Kind::File),
            TYPE_SYMLINK => Some(Kind::Symlink),
            _ => None,
        }
    }

    /// The modes an entry of this kind may have.
    pub fn modes(self) -> &'static [u32] {
        match self {
            Kind::Dir => &[MODE_DIR],
            Kind::Symlink => &[MODE_SYMLINK],
            Kind::File => &[super::MODE_FILE, super::MODE_EXEC],
        }
    }
}

/// Largest value an octal field of `len` bytes holds (`len - 1` digits and a NUL).
pub const fn max_octal(len: usize) -> u64 {
    (1u64 << (3 * (len as u32 - 1))) - 1
}

/// Everything that varies between the writer's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub kind: Kind,
    /// The full path inside the archive (top directory included).
    pub path: &'a str,
    pub mode: u32,
    pub size: u64,
    pub mtime: u64,
    pub link: &'a str,
}

/// Split a full archive name into ustar `(prefix, name)` fields, or `None` if it cannot fit.
/// The name field is made as long as possible, so the prefix is as short as possible.
pub fn split_name(path: &str) -> Option<(&str, &str)> {
    if path.len() <= NAME.len {
        return Some(("", path));
    }
    path.match_indices('/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(prefix, name)| {
            name.len() <= NAME.len && !name.is_empty() && prefix.len() <= PREFIX.len
        })
}

fn put(block: &mut [u8; BLOCK], f: Field, bytes: &[u8]) {
    block[f.offset..f.offset + bytes.len()].copy_from_slice(bytes);
}

/// `len - 1` zero-padded octal digits and a NUL.
fn put_octal(block: &mut [u8; BLOCK], f: Field, value: u64) {
    let text = format!("{value:0width$o}\0", width = f.len - 1);
    put(block, f, text.as_bytes());
}

/// The unsigned byte sum with the checksum field counted as spaces.
pub fn checksum(block: &[u8; BLOCK]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let in_field = (CHECKSUM.offset..CHECKSUM.offset + CHECKSUM.len).contains(&i);
            u64::from(if in_field { b' ' } else { b })
        })
        .sum()
}

/// The one header the writer produces for `e`, or why it cannot be written.
pub fn encode(e: &Entry) -> Result<[u8; BLOCK], String> {
    let (prefix, name) = split_name(e.path).ok_or_else(|| {
        format!(
            "is too long for a plain ustar header ({} bytes; at most 100, or 255 split at a `/` into 155 + 100)",
            e.path.len()
        )
    })?;
    if e.link.len() > LINKNAME.len {
        return Err(format!(
            "symlink target is too long for a plain ustar header ({} bytes; at most 100)",
            e.link.len()
        ));
    }
    if e.size > max_octal(SIZE.len) {
        return Err("is larger than 8 GiB, which a plain ustar header cannot describe".into());
    }
    if e.mtime > max_octal(MTIME.len) {
        return Err(format!("timestamp {} does not fit a ustar header", e.mtime));
    }
    if u64::from(e.mode) > max_octal(MODE.len) {
        return Err(format!("mode {:o} does not fit a ustar header", e.mode));
    }
    let mut b = [0u8; BLOCK];
    put(&mut b, NAME, name.as_bytes());
    put_octal(&mut b, MODE, e.mode.into());
    put_octal(&mut b, UID, 0);
    put_octal(&mut b, GID, 0);
    put_octal(&mut b, SIZE, e.size);
    put_octal(&mut b, MTIME, e.mtime);
    b[TYPEFLAG.offset] = e.kind.typeflag();
    put(&mut b, LINKNAME, e.link.as_bytes());
    put(&mut b, MAGIC, USTAR_MAGIC);
    put(&mut b, VERSION, USTAR_VERSION);
    put_octal(&mut b, DEVMAJOR, 0);
    put_octal(&mut b, DEVMINOR, 0);
    put(&mut b, PREFIX, prefix.as_bytes());
    let sum = checksum(&b);
    put_octal(&mut b, CHECKSUM, sum);
    Ok(b)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// One raw 512-byte header as read from an archive, with strict accessors.
#[derive(Clone)]
pub struct RawHeader {
    pub bytes: [u8; BLOCK],
}

impl RawHeader {
    pub fn field(&self, f: Field) -> &[u8] {
        &self.bytes[f.offset..f.offset + f.len]
    }

    pub fn is_ustar(&self) -> bool {
        self.field(MAGIC) == USTAR_MAGIC && self.field(VERSION) == USTAR_VERSION
    }

    /// The full name: `prefix/name` (the prefix only counts in ustar headers).
    pub fn path_bytes(&self) -> Vec<u8> {
        let name = cstr(self.field(NAME));
        let prefix = if self.is_ustar() {
            cstr(self.field(PREFIX))
        } else {
            &[]
        };
        if prefix.is_empty() {
            name.to_vec()
        } else {
            [prefix, b"/", name].concat()
        }
    }

    pub fn link_bytes(&self) -> &[u8] {
        cstr(self.field(LINKNAME))
    }

    pub fn typeflag(&self) -> u8 {
        self.bytes[TYPEFLAG.offset]
    }

    pub fn uname(&self) -> &[u8] {
        cstr(self.field(UNAME))
    }

    pub fn gname(&self) -> &[u8] {
        cstr(self.field(GNAME))
    }

    /// A numeric field in exactly the writer's form: `len - 1` octal digits, then a NUL.
    /// Spaces, NULs among the digits, base-256, signs and missing terminators are refused:
    /// tar implementations disagree on all of them.
    pub fn octal(&self, f: Field) -> Result<u64, String> {
        let raw = self.field(f);
        let (digits, end) = raw.split_at(f.len - 1);
        let canonical = end == [0] && digits.iter().all(|b| (b'0'..=b'7').contains(b));
        if !canonical {
            return Err(format!(
                "is not {} zero-padded octal digits and a NUL (found \"{}\")",
                f.len - 1,
                raw.escape_ascii()
            ));
        }
        // Invariant: at most 11 octal digits, which fit a u64, and all are octal digits.
        Ok(digits
            .iter()
            .fold(0u64, |n, &d| (n << 3) | u64::from(d - b'0')))
    }

    pub fn mode(&self) -> Result<u64, String> {
        self.octal(MODE)
    }
    pub fn uid(&self) -> Result<u64, String> {
        self.octal(UID)
    }
    pub fn gid(&self) -> Result<u64, String> {
        self.octal(GID)
    }
    pub fn size(&self) -> Result<u64, String> {
        self.octal(SIZE)
    }
    pub fn mtime(&self) -> Result<u64, String> {
        self.octal(MTIME)
    }
    pub fn dev_major(&self) -> Result<u64, String> {
        self.octal(DEVMAJOR)
    }
    pub fn dev_minor(&self) -> Result<u64, String> {
        self.octal(DEVMINOR)
    }

    /// Whether the stored checksum is canonical and matches the header.
    pub fn checksum(&self) -> Result<(), String> {
        let stored = self.octal(CHECKSUM)?;
        let sum = checksum(&self.bytes);
        if stored != sum {
            return Err(format!("says {stored:o}, the header sums to {sum:o}"));
        }
        Ok(())
    }

    /// The fields that differ from the header the writer would produce for the same entry,
    /// or `None` when the entry cannot be re-encoded (a field that does not parse, an unknown
    /// kind or a name that does not fit: the caller reports those on their own).
    pub fn noncanonical_fields(&self) -> Option<Vec<&'static str>> {
        let kind = Kind::from_typeflag(self.typeflag())?;
        let path = String::from_utf8(self.path_bytes()).ok()?;
        let link = std::str::from_utf8(self.link_bytes()).ok()?;
        let entry = Entry {
            kind,
            path: &path,
            mode: u32::try_from(self.mode().ok()?).ok()?,
            size: self.size().ok()?,
            mtime: self.mtime().ok()?,
            link,
        };
        let canonical = RawHeader {
            bytes: encode(&entry).ok()?,
        };
        Some(
            FIELDS
                .iter()
                // The checksum is checked on its own by [`RawHeader::checksum`].
                .filter(|f| **f != CHECKSUM && self.field(**f) != canonical.field(**f))
                .map(|f| f.name)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            kind: Kind::File,
            path,
            mode: 0o644,
            size: 1024,
            mtime: 1_700_000_000,
            link: "",
        }
    }

    #[test]
    fn fields_tile_the_block() {
        let mut at = 0;
        for f in FIELDS {
            assert_eq!(f.offset, at, "{}", f.name);
            at += f.len;
        }
        assert_eq!(at, BLOCK);
    }

    #[test]
    fn encoding_matches_the_tar_crate() {
        // The bytes every bundle so far was written with.
        let mut h = tar::Header::new_ustar();
        h.set_path("top/a/file").unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(1024);
        h.set_mtime(1_700_000_000);
        h.set_username("").unwrap();
        h.set_groupname("").unwrap();
        h.set_device_major(0).unwrap();
        h.set_device_minor(0).unwrap();
        h.set_cksum();
        assert_eq!(&encode(&entry("top/a/file")).unwrap()[..], h.as_bytes());
    }

    #[test]
    fn canonical_headers_read_back_and_round_trip() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        for path in ["top", "top/x", &long] {
            let h = RawHeader {
                bytes: encode(&entry(path)).unwrap(),
            };
            assert_eq!(h.path_bytes(), path.as_bytes());
            assert_eq!(h.size(), Ok(1024));
            assert_eq!(h.checksum(), Ok(()));
            assert_eq!(h.noncanonical_fields(), Some(vec![]));
        }
    }

    /// Each lenient spelling of 1024 that some tar reads as 1024 and another as something else.
    #[test]
    fn lenient_numbers_are_refused() {
        let good = encode(&entry("top/f")).unwrap();
        for size in [
            &b"0 0000002000"[..],
            b" 0000002000\0",
            b"00000002000 ",
            b"0000000200\0\0",
            b"000000002000",
            b"\x80\0\0\0\0\0\0\0\0\0\x04\0",
            b"0000000200x\0",
            b"+0000002000\0",
        ] {
            let mut h = RawHeader { bytes: good };
            h.bytes[SIZE.offset..SIZE.offset + SIZE.len].copy_from_slice(size);
            let sum = checksum(&h.bytes);
            put_octal(&mut h.bytes, CHECKSUM, sum);
            assert!(h.size().is_err(), "{}", size.escape_ascii());
        }
        let mut h = RawHeader { bytes: good };
        let sum = checksum(&h.bytes);
        h.bytes[CHECKSUM.offset..CHECKSUM.offset + 8]
            .copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert!(h.checksum().is_err(), "the `%06o\\0 ` checksum spelling");
    }

    #[test]
    fn other_splits_and_stray_bytes_are_noncanonical() {
        let long = format!("{}/{}/{}", "a".repeat(60), "b".repeat(30), "c".repeat(60));
        let good = encode(&entry(&long)).unwrap();
        // The same path split at the other `/`.
        let mut h = RawHeader { bytes: good };
        h.bytes[NAME.offset..NAME.offset + NAME.len].fill(0);
        h.bytes[PREFIX.offset..PREFIX.offset + PREFIX.len].fill(0);
        let (p, n) = long.split_at(91);
        put(&mut h.bytes, PREFIX, p.as_bytes());
        put(&mut h.bytes, NAME, &n.as_bytes()[1..]);
        assert_eq!(h.path_bytes(), long.as_bytes());
        assert_eq!(h.noncanonical_fields(), Some(vec!["name", "prefix"]));
        let mut h = RawHeader { bytes: good };
        h.bytes[PAD.offset] = 1;
        assert_eq!(h.noncanonical_fields(), Some(vec!["padding"]));
        let mut h = RawHeader { bytes: good };
        h.bytes[UNAME.offset + 1] = b'x';
        assert_eq!(h.uname(), b"");
        assert_eq!(h.noncanonical_fields(), Some(vec!["uname"]));
    }
}
