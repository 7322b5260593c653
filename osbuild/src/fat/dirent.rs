//! FAT timestamps and 32-byte short directory entries.

pub(crate) const ATTR_VOLUME_ID: u8 = 0x08;
pub(crate) const ATTR_DIRECTORY: u8 = 0x10;
pub(crate) const ATTR_ARCHIVE: u8 = 0x20;

/// 1980-01-01T00:00:00Z, the earliest time FAT can store.
const FAT_EPOCH: u64 = 315_532_800;
/// 2107-12-31T23:59:58Z, the latest time FAT can store.
const FAT_END: u64 = 4_354_819_198;

/// A timestamp in FAT's encoding (local time taken as UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FatTime {
    pub date: u16,
    pub time: u16,
    /// Hundredths of a second on top of `time` (0 or 100), for creation time.
    pub tenths: u8,
}

impl FatTime {
    /// Converts unix seconds, clamped to the range FAT can represent.
    pub(crate) fn from_unix(secs: u64) -> Self {
        let secs = secs.clamp(FAT_EPOCH, FAT_END);
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let (h, min, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
        FatTime {
            date: (((y - 1980) << 9) | (m << 5) | d) as u16,
            time: ((h << 11) | (min << 5) | (s / 2)) as u16,
            tenths: ((s % 2) * 100) as u8,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar
/// (Howard Hinnant's algorithm, restricted to dates after 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Encodes a short directory entry.
pub(crate) fn short_entry(
    name: &[u8; 11],
    attr: u8,
    cluster: u32,
    size: u32,
    t: FatTime,
) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    e[13] = t.tenths;
    e[14..16].copy_from_slice(&t.time.to_le_bytes());
    e[16..18].copy_from_slice(&t.date.to_le_bytes());
    e[18..20].copy_from_slice(&t.date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&t.time.to_le_bytes());
    e[24..26].copy_from_slice(&t.date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        // 1980-01-01 00:00:00
        let t = FatTime::from_unix(0);
        assert_eq!((t.date, t.time, t.tenths), ((1 << 5) | 1, 0, 0));
        // 2024-02-29 13:45:31 UTC = 1709214331
        let t = FatTime::from_unix(1_709_214_331);
        assert_eq!(t.date, (44 << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (13 << 11) | (45 << 5) | 15);
        assert_eq!(t.tenths, 100);
        // clamped at the top
        let t = FatTime::from_unix(u64::MAX);
        assert_eq!(t.date, (127 << 9) | (12 << 5) | 31);
        assert_eq!(t.time, (23 << 11) | (59 << 5) | 29);
    }

    #[test]
    fn entry_fields() {
        let t = FatTime::from_unix(0);
        let e = short_entry(b"BOOTX64 EFI", ATTR_ARCHIVE, 0x0001_0003, 1234, t);
        assert_eq!(&e[..11], b"BOOTX64 EFI");
        assert_eq!(e[11], ATTR_ARCHIVE);
        assert_eq!(u16::from_le_bytes([e[20], e[21]]), 1);
        assert_eq!(u16::from_le_bytes([e[26], e[27]]), 3);
        assert_eq!(u32::from_le_bytes([e[28], e[29], e[30], e[31]]), 1234);
    }
}
