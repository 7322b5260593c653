//! Kernel command line parameters that carry the boot contract.
//!
//! The boot entry of a release passes `keel.slot=<a|b>` and
//! `keel.roothash=<hex>`; stage 1 of `keel-init` trusts nothing else to
//! pick and verify the root.

use crate::layout::Slot;

pub const SLOT_KEY: &str = "keel.slot";
pub const ROOTHASH_KEY: &str = "keel.roothash";
/// `keel.debug=shell`: stage 1 offers a shell instead of halting on failure.
pub const DEBUG_KEY: &str = "keel.debug";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error("kernel command line has no {0}=")]
    Missing(&'static str),
    #[error("kernel command line has {key}={value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

/// A parsed kernel command line (`/proc/cmdline`).
#[derive(Debug, Clone, Default)]
pub struct Cmdline {
    params: Vec<(String, Option<String>)>,
}

impl Cmdline {
    /// Splits on whitespace, honouring double quotes as the kernel does.
    pub fn parse(text: &str) -> Self {
        let mut params = Vec::new();
        let mut cur = String::new();
        let mut in_quotes = false;
        let mut words = Vec::new();
        for c in text.chars() {
            match c {
                '"' => in_quotes = !in_quotes,
                c if c.is_whitespace() && !in_quotes => {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => params.push((k.to_string(), Some(v.to_string()))),
                None => params.push((w, None)),
            }
        }
        Cmdline { params }
    }

    /// The value of the last occurrence of `key=`, as the kernel would take it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The values of every `key=` in command line order (a key given
    /// several times, like `modules_load=`, adds up).
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == key)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    pub fn has_flag(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }

    pub fn slot(&self) -> Result<Slot, CmdlineError> {
        let v = self.get(SLOT_KEY).ok_or(CmdlineError::Missing(SLOT_KEY))?;
        v.parse()
            .map_err(|e: crate::layout::UnknownSlot| CmdlineError::Invalid {
                key: SLOT_KEY,
                value: v.to_string(),
                reason: e.to_string(),
            })
    }

    /// The dm-verity root hash (SHA-256, 32 bytes).
    pub fn roothash(&self) -> Result<[u8; 32], CmdlineError> {
        let v = self
            .get(ROOTHASH_KEY)
            .ok_or(CmdlineError::Missing(ROOTHASH_KEY))?;
        let invalid = |reason: &str| CmdlineError::Invalid {
            key: ROOTHASH_KEY,
            value: v.to_string(),
            reason: reason.to_string(),
        };
        let bytes = hex::decode(v).map_err(|_| invalid("not hexadecimal"))?;
        bytes
            .try_into()
            .map_err(|_| invalid("a SHA-256 root hash has 64 hex digits"))
    }
}

/// The options a release's boot entry carries for the contract.
pub fn contract_options(slot: Slot, roothash: &[u8; 32]) -> String {
    format!("{SLOT_KEY}={slot} {ROOTHASH_KEY}={}", hex::encode(roothash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contract() {
        let hash = [0xab; 32];
        let text = format!(
            "BOOT_IMAGE=/x quiet {} console=ttyS0 foo=\"a b\"\n",
            contract_options(Slot::B, &hash)
        );
        let c = Cmdline::parse(&text);
        assert_eq!(c.slot(), Ok(Slot::B));
        assert_eq!(c.roothash(), Ok(hash));
        assert_eq!(c.get("foo"), Some("a b"));
        assert!(c.has_flag("quiet"));
        assert_eq!(c.get("quiet"), None);
    }

    #[test]
    fn reports_bad_values() {
        let c = Cmdline::parse("keel.slot=c keel.roothash=zz");
        assert!(matches!(
            c.slot(),
            Err(CmdlineError::Invalid { key: SLOT_KEY, .. })
        ));
        assert!(matches!(
            c.roothash(),
            Err(CmdlineError::Invalid {
                key: ROOTHASH_KEY,
                ..
            })
        ));
        let c = Cmdline::parse("keel.roothash=abcd");
        assert!(c
            .roothash()
            .unwrap_err()
            .to_string()
            .contains("64 hex digits"));
        assert_eq!(
            Cmdline::parse("").slot(),
            Err(CmdlineError::Missing(SLOT_KEY))
        );
    }

    #[test]
    fn collects_repeated_keys() {
        let c = Cmdline::parse("modules_load=a,b quiet modules_load=c modules_load x=1");
        assert_eq!(c.get_all("modules_load"), ["a,b", "c"]);
        assert!(c.get_all("y").is_empty());
    }

    #[test]
    fn last_occurrence_wins() {
        let c = Cmdline::parse("keel.slot=a keel.slot=b");
        assert_eq!(c.slot(), Ok(Slot::B));
    }
}
