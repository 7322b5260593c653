//! FAT names: validation of long names, 8.3 short names with numeric tails
//! (basis-name rules of Microsoft's FAT specification) and VFAT long-name
//! (LFN) directory entries.

use std::collections::BTreeSet;

/// Longest long name in UTF-16 code units.
const MAX_LFN_UNITS: usize = 255;
/// UTF-16 code units per LFN directory entry.
const LFN_UNITS_PER_ENTRY: usize = 13;
/// Attribute byte of an LFN entry (read-only | hidden | system | volume).
const ATTR_LFN: u8 = 0x0F;

/// Why a name cannot be stored; used in `FatError::InvalidName`.
pub(crate) fn check_long_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are reserved");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err("names cannot end with a period or a space");
    }
    if name.encode_utf16().count() > MAX_LFN_UNITS {
        return Err("name is longer than 255 UTF-16 code units");
    }
    if name
        .chars()
        .any(|c| c < ' ' || c == '\u{7f}' || "\"*/:<>?\\|".contains(c))
    {
        return Err("name contains a character FAT forbids (control, \" * / : < > ? \\ |)");
    }
    Ok(())
}

/// Case-insensitive key under which a name is stored in its directory.
pub(crate) fn fold_case(name: &str) -> String {
    name.to_uppercase()
}

/// Characters allowed in a short name besides A-Z and 0-9.
fn is_short_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || "$%'-_@~`!(){}^#&".contains(c)
}

/// The 11-byte short name of `name` if `name` already is a pure uppercase 8.3
/// name (then no LFN entries are written for it).
pub(crate) fn exact_short_name(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = match name.split_once('.') {
        Some((b, e)) => (b, e),
        None => (name, ""),
    };
    let base_ok = (1..=8).contains(&base.len()) && base.chars().all(is_short_char);
    let ext_ok = ext.len() <= 3 && ext.chars().all(is_short_char);
    let dot_ok = !name.ends_with('.');
    (base_ok && ext_ok && dot_ok).then(|| pack(base.as_bytes(), ext.as_bytes()))
}

/// Pads base and extension with spaces into the on-disk 11-byte form.
fn pack(base: &[u8], ext: &[u8]) -> [u8; 11] {
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base);
    out[8..8 + ext.len()].copy_from_slice(ext);
    out
}

/// Basis name of a long name: (base, extension, lossy).
/// `lossy` is true when characters were replaced or dropped, or when the name
/// does not fit 8.3, so that a numeric tail is required.
fn basis_name(name: &str) -> (String, String, bool) {
    let mut lossy = false;
    let mut converted = String::new();
    for c in name.to_uppercase().chars() {
        if c == ' ' {
            lossy = true;
        } else if c == '.' || is_short_char(c) {
            converted.push(c);
        } else {
            converted.push('_');
            lossy = true;
        }
    }
    let trimmed = converted.trim_start_matches('.');
    if trimmed.len() != converted.len() {
        lossy = true;
    }
    let (primary, ext_src) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    // Everything up to the first period is the base; embedded periods drop.
    let base_src = primary.split('.').next().unwrap_or("");
    if base_src.len() != primary.len() {
        lossy = true;
    }
    if base_src.len() > 8 || ext_src.len() > 3 {
        lossy = true;
    }
    let mut base: String = base_src.chars().take(8).collect();
    if base.is_empty() {
        base.push('_');
        lossy = true;
    }
    let ext: String = ext_src.chars().take(3).collect();
    (base, ext, lossy)
}

/// Generates a short name for `name` that is not in `taken`, and records it.
/// Returns `None` when every numeric tail is taken.
pub(crate) fn generate_short_name(name: &str, taken: &mut BTreeSet<[u8; 11]>) -> Option<[u8; 11]> {
    let (base, ext, lossy) = basis_name(name);
    if !lossy {
        let plain = pack(base.as_bytes(), ext.as_bytes());
        if taken.insert(plain) {
            return Some(plain);
        }
    }
    for n in 1..=999_999u32 {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let candidate = format!("{}{tail}", &base[..keep]);
        let short = pack(candidate.as_bytes(), ext.as_bytes());
        if taken.insert(short) {
            return Some(short);
        }
    }
    None
}

/// Checksum of a short name, stored in each of its LFN entries.
pub(crate) fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short.iter().fold(0u8, |sum, &b| {
        ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(b)
    })
}

/// Number of LFN entries needed for `name`.
pub(crate) fn lfn_entry_count(name: &str) -> usize {
    name.encode_utf16().count().div_ceil(LFN_UNITS_PER_ENTRY)
}

/// The LFN entries for `name`, in on-disk order (last part first), to be
/// followed directly by the short entry whose name is `short`.
pub(crate) fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let count = lfn_entry_count(name);
    let checksum = lfn_checksum(short);
    let mut out = Vec::with_capacity(count);
    for ord in (1..=count).rev() {
        let mut e = [0u8; 32];
        e[0] = ord as u8 | if ord == count { 0x40 } else { 0 };
        e[11] = ATTR_LFN;
        e[13] = checksum;
        let start = (ord - 1) * LFN_UNITS_PER_ENTRY;
        // Name, then one 0x0000 terminator if there is room, then 0xFFFF padding.
        let slots = [1usize, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (i, &off) in slots.iter().enumerate() {
            let idx = start + i;
            let unit = match idx.cmp(&units.len()) {
                std::cmp::Ordering::Less => units[idx],
                std::cmp::Ordering::Equal => 0x0000,
                std::cmp::Ordering::Greater => 0xFFFF,
            };
            e[off..off + 2].copy_from_slice(&unit.to_le_bytes());
        }
        out.push(e);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(b: &[u8; 11]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn exact_names() {
        assert_eq!(s(&exact_short_name("BOOTX64.EFI").unwrap()), "BOOTX64 EFI");
        assert_eq!(s(&exact_short_name("EFI").unwrap()), "EFI        ");
        assert!(exact_short_name("efi").is_none());
        assert!(exact_short_name("A.B.C").is_none());
        assert!(exact_short_name("ABCDEFGHI").is_none());
        assert!(exact_short_name("A.ABCD").is_none());
        assert!(exact_short_name("A+B").is_none());
        assert!(exact_short_name(".A").is_none());
    }

    #[test]
    fn generated_names() {
        let mut taken = BTreeSet::new();
        let g = |n: &str, t: &mut BTreeSet<[u8; 11]>| s(&generate_short_name(n, t).unwrap());
        assert_eq!(g("loader", &mut taken), "LOADER     ");
        assert_eq!(g("keel-1.0+3.conf", &mut taken), "KEEL-1~1CON");
        assert_eq!(g("keel-1.1+3.conf", &mut taken), "KEEL-1~2CON");
        assert_eq!(g("Loader.Cfg", &mut taken), "LOADER  CFG");
        assert_eq!(g("a b", &mut taken), "AB~1       ");
        assert_eq!(g(".bashrc", &mut taken), "BASHRC~1   ");
        assert_eq!(g("verylongname.txt", &mut taken), "VERYLO~1TXT");
        for _ in 0..20 {
            g("verylongname.txt", &mut taken);
        }
        assert_eq!(g("verylongname.txt", &mut taken), "VERYL~22TXT");
    }

    #[test]
    fn bad_names() {
        for bad in [
            "", ".", "..", "a.", "a ", "a:b", "a*", "tab\t", "a\\b", "q?",
        ] {
            assert!(check_long_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_long_name(&"x".repeat(256)).is_err());
        assert!(check_long_name(&"x".repeat(255)).is_ok());
        assert!(check_long_name("keel-1.0+3.conf").is_ok());
    }

    #[test]
    fn lfn_layout() {
        let short = *b"KEEL-1~1CON";
        let e = lfn_entries("keel-1.0+3.conf", &short);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][0], 0x42);
        assert_eq!(e[1][0], 0x01);
        // second part holds "nf", terminator, padding
        assert_eq!(&e[0][1..7], &[b'n', 0, b'f', 0, 0, 0]);
        assert_eq!(&e[0][7..9], &[0xFF, 0xFF]);
        assert_eq!(e[0][11], 0x0F);
        assert_eq!(e[0][13], lfn_checksum(&short));
    }
}
