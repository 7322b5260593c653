//! The messages on the control socket: one JSON object per line, one
//! request and one response per connection.
//!
//! The shapes are part of Keel's interface (`keelctl status --json` prints
//! [`UnitStatus`] as is): fields are only ever added, never renamed.

use serde::{Deserialize, Serialize};

/// What a client asks init to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The state of one unit, or of every loaded unit when `unit` is `None`.
    Status {
        /// Full unit name, e.g. `ssh.service`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
    /// Start a unit (and what it requires).
    Start {
        /// Full unit name.
        unit: String,
    },
    /// Stop a unit (and what requires it).
    Stop {
        /// Full unit name.
        unit: String,
    },
    /// Stop, then start a unit.
    Restart {
        /// Full unit name.
        unit: String,
    },
    /// Create the unit's `[Install]` links below `/etc/systemd/system`.
    Enable {
        /// Full unit name.
        unit: String,
    },
    /// Remove the unit's `[Install]` links.
    Disable {
        /// Full unit name.
        unit: String,
    },
    /// Stop every unit and reboot.
    Reboot,
    /// Stop every unit and power off.
    Poweroff,
}

/// What init answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// The request was carried out (or accepted, for reboot/poweroff).
    Ok {
        /// What was done, for people; may be empty.
        message: String,
    },
    /// The answer to [`Request::Status`].
    Status {
        /// One entry per unit, sorted by name.
        units: Vec<UnitStatus>,
    },
    /// The request failed or was refused.
    Error {
        /// Why, for people.
        message: String,
    },
}

/// The state of one unit, as `systemctl status` would show it.
///
/// Field names are the JSON keys as written (`main_pid`, `since_unix_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    /// Full unit name.
    pub name: String,
    /// The unit type, as the name's suffix: `service`, `target`, `mount`,
    /// `swap`, ... (empty when an older init did not send it).
    #[serde(default)]
    pub kind: String,
    /// `Description=`
    pub description: Option<String>,
    /// `loaded`, `masked`, `not-found` or `error`.
    pub load: String,
    /// `active`, `activating`, `deactivating`, `inactive` or `failed`.
    pub active: String,
    /// Finer state, e.g. `running`, `exited`, `dead`, `start-pre`,
    /// `auto-restart`, `failed`.
    pub sub: String,
    /// PID of the main process while there is one.
    pub main_pid: Option<u32>,
    /// When `active` last changed, in milliseconds since the Unix epoch.
    pub since_unix_ms: Option<u64>,
    /// Why the unit failed, e.g. `exit code 1`, `signal SEGV`, `start timeout`.
    pub result: Option<String>,
    /// Automatic restarts since the unit was last started by hand or at boot.
    pub restarts: u32,
    /// Whether the `[Install]` links exist; `None` without `[Install]` rules.
    pub enabled: Option<bool>,
    /// `false` when the unit opted out of the boot health judgement.
    pub health: bool,
    /// Path of the unit file.
    pub fragment: Option<String>,
}

impl UnitStatus {
    /// Whether the unit is `active` (what `keelctl status UNIT` exits 0 for).
    pub fn is_active(&self) -> bool {
        self.active == "active"
    }

    /// Whether the unit is `failed`.
    pub fn is_failed(&self) -> bool {
        self.active == "failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    fn round_trip<T>(v: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let back: T = serde_json::from_str(&json(v)).unwrap();
        assert_eq!(&back, v);
    }

    pub(crate) fn sample() -> UnitStatus {
        UnitStatus {
            name: "ssh.service".into(),
            kind: "service".into(),
            description: Some("OpenBSD Secure Shell server".into()),
            load: "loaded".into(),
            active: "active".into(),
            sub: "running".into(),
            main_pid: Some(412),
            since_unix_ms: Some(1_700_000_000_000),
            result: None,
            restarts: 0,
            enabled: Some(true),
            health: true,
            fragment: Some("/usr/lib/systemd/system/ssh.service".into()),
        }
    }

    #[test]
    fn request_shapes_are_stable() {
        assert_eq!(json(&Request::Status { unit: None }), r#"{"op":"status"}"#);
        assert_eq!(
            json(&Request::Status {
                unit: Some("ssh.service".into())
            }),
            r#"{"op":"status","unit":"ssh.service"}"#
        );
        assert_eq!(
            json(&Request::Restart {
                unit: "a.service".into()
            }),
            r#"{"op":"restart","unit":"a.service"}"#
        );
        assert_eq!(json(&Request::Poweroff), r#"{"op":"poweroff"}"#);
        let parsed: Request = serde_json::from_str(r#"{"op":"reboot"}"#).unwrap();
        assert_eq!(parsed, Request::Reboot);
        let parsed: Request = serde_json::from_str(r#"{"unit":null,"op":"status"}"#).unwrap();
        assert_eq!(parsed, Request::Status { unit: None });
    }

    #[test]
    fn response_shapes_are_stable() {
        assert_eq!(
            json(&Response::Ok {
                message: "started".into()
            }),
            r#"{"result":"ok","message":"started"}"#
        );
        assert_eq!(
            json(&Response::Error {
                message: "no".into()
            }),
            r#"{"result":"error","message":"no"}"#
        );
        let mut failed = sample();
        failed.active = "failed".into();
        failed.sub = "failed".into();
        failed.main_pid = None;
        failed.result = Some("exit code 1".into());
        failed.restarts = 3;
        failed.enabled = None;
        failed.health = false;
        failed.fragment = None;
        assert_eq!(
            json(&Response::Status {
                units: vec![failed]
            }),
            concat!(
                r#"{"result":"status","units":[{"name":"ssh.service","kind":"service","#,
                r#""description":"OpenBSD Secure Shell server","load":"loaded","#,
                r#""active":"failed","sub":"failed","main_pid":null,"#,
                r#""since_unix_ms":1700000000000,"result":"exit code 1","restarts":3,"#,
                r#""enabled":null,"health":false,"fragment":null}]}"#
            )
        );
    }

    #[test]
    fn everything_round_trips() {
        for r in [
            Request::Status { unit: None },
            Request::Status {
                unit: Some("x.service".into()),
            },
            Request::Start { unit: "x".into() },
            Request::Stop { unit: "x".into() },
            Request::Restart { unit: "x".into() },
            Request::Enable { unit: "x".into() },
            Request::Disable { unit: "x".into() },
            Request::Reboot,
            Request::Poweroff,
        ] {
            round_trip(&r);
        }
        for r in [
            Response::Ok {
                message: String::new(),
            },
            Response::Error {
                message: "x\ny".into(),
            },
            Response::Status {
                units: vec![sample(), sample()],
            },
        ] {
            round_trip(&r);
        }
    }

    #[test]
    fn unknown_operations_are_rejected_by_name() {
        let err = serde_json::from_str::<Request>(r#"{"op":"frobnicate"}"#).unwrap_err();
        assert!(err.to_string().contains("frobnicate"), "{err}");
        let err = serde_json::from_str::<Request>(r#"{"op":"start"}"#).unwrap_err();
        assert!(err.to_string().contains("unit"), "{err}");
    }
}
