//! Image configuration: one TOML file describes one image.
//!
//! Unknown keys are errors, and every error names the file and the key path
//! (`packages.includes`), so a typo never silently changes an image.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading image config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image config {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// Where the TOML parser stopped: syntax errors, and values of the
    /// wrong type or form.
    #[error("image config {}:{line}:{column}: {}{message} (line {line}: `{text}`)", path.display(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        /// The key path, when the parser got as far as a key.
        key: Option<String>,
        message: String,
        /// The offending line, trimmed.
        text: String,
    },
}

/// The largest partition an image config may ask for: images are
/// starting points (`var` grows to fill the disk on first boot), and
/// sums of sizes stay far from overflowing.
pub const MAX_PARTITION: u64 = 1 << 40;

/// 1-based line and column (in characters) of byte `offset` in `text`,
/// and that line.
fn locate(text: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let rest = &text[line_start..];
    let line_text = rest.split('\n').next().unwrap_or("").trim_end_matches('\r');
    (line, column, line_text)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ImageConfig {
    pub image: Image,
    pub packages: Packages,
    pub kernel: Kernel,
    #[serde(default)]
    pub partitions: Partitions,
    #[serde(default)]
    pub files: Files,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Image {
    /// Image name: output files are `<name>-<version>.<format>`.
    pub name: String,
    /// Release version; becomes IMAGE_VERSION and the boot entry name.
    pub version: String,
    /// Timestamp for every file and filesystem. `SOURCE_DATE_EPOCH` in the
    /// environment overrides it; without either, the newest Release date of
    /// the package sources is used, so builds are reproducible by default.
    pub source_date_epoch: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Packages {
    /// Debian suites to take packages from, highest version wins
    /// (e.g. bookworm, bookworm-updates, bookworm-security).
    pub suites: Vec<String>,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Packages to install; their Depends and Pre-Depends are resolved.
    pub include: Vec<String>,
    /// Packages left out although an included package depends on them
    /// (for dependencies of parts of a package the image does not use).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Mirror URL for every suite. Default: the build host's apt sources.
    pub mirror: Option<String>,
    /// OpenPGP keyring that signs the mirror's Release files.
    /// Default: the keyring the build host's apt sources name.
    pub keyring: Option<PathBuf>,
}

fn default_components() -> Vec<String> {
    vec!["main".to_string()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Kernel {
    /// Debian kernel package (a metapackage such as linux-image-cloud-amd64
    /// is followed to the versioned linux-image package it depends on).
    pub package: String,
    /// Modules the initramfs loads, by name; their dependencies are added
    /// from modules.dep. Built-in modules are skipped.
    #[serde(default)]
    pub initrd_modules: Vec<String>,
    /// Extra kernel command line arguments for every boot entry.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Partitions {
    #[serde(default = "default_esp")]
    pub esp: Size,
    /// Size of each root slot (root-a, root-b); the verity partitions are
    /// sized from it.
    #[serde(default = "default_root")]
    pub root: Size,
    /// Initial size of `var`; it grows to fill the disk on first boot.
    #[serde(default = "default_var")]
    pub var: Size,
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions {
            esp: default_esp(),
            root: default_root(),
            var: default_var(),
        }
    }
}

fn default_esp() -> Size {
    Size(256 << 20)
}
fn default_root() -> Size {
    Size(1 << 30)
}
fn default_var() -> Size {
    Size(512 << 20)
}

/// Files the image gets besides its packages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Files {
    /// Directories, relative to the config file, whose content is copied
    /// into the root after the packages (regular files, directories and
    /// symlinks; modes kept, owners root). Later trees win.
    #[serde(default)]
    pub trees: Vec<PathBuf>,
}

/// A byte size written as `"512MiB"`, `"1GiB"`, `"64M"` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as \"512MiB\""))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use KiB, MiB, GiB, TiB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MiB", self.0 >> 20)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"512MiB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n).map(Size).map_err(|_| {
                    E::custom(format!(
                        "{n} is negative; expected {}",
                        "a size like \"512MiB\" or a number of bytes"
                    ))
                })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                Size::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl ImageConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The directories of `files.trees`, resolved against the directory of
    /// the config file at `config_path`, with every symlink and `..`
    /// resolved. A missing tree, one that is not a directory, or one that
    /// resolves outside the config file's directory (`../x`, or a symlink
    /// pointing elsewhere) is an error naming the file and the key.
    pub fn tree_dirs(&self, config_path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
        let parent = match config_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(parent).map_err(|source| ConfigError::Read {
            path: parent.to_path_buf(),
            source,
        })?;
        self.files
            .trees
            .iter()
            .enumerate()
            .map(|(i, tree)| {
                let named = parent.join(tree);
                match std::fs::canonicalize(&named) {
                    Ok(dir) if !dir.starts_with(&base) => Err(format!(
                        "{} resolves to {}, outside {} (the config's directory): trees must be inside it",
                        named.display(),
                        dir.display(),
                        base.display()
                    )),
                    Ok(dir) if dir.is_dir() => Ok(dir),
                    Ok(_) => Err(format!("{} is not a directory", named.display())),
                    Err(e) => Err(format!("directory {}: {e}", named.display())),
                }
                .map_err(|message| ConfigError::Invalid {
                    path: config_path.to_path_buf(),
                    key: format!("files.trees[{i}]"),
                    message,
                })
            })
            .collect()
    }

    /// Parses and validates; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: ImageConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // toml puts what it expected on lines of their own.
            let message = inner
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            match inner.span() {
                Some(span) => {
                    let (line, column, text) = locate(text, span.start);
                    ConfigError::At {
                        path: path.to_path_buf(),
                        line,
                        column,
                        key: (key != ".").then_some(key),
                        message,
                        text: text.trim().to_string(),
                    }
                }
                None => ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: if key == "." {
                        "(top level)".into()
                    } else {
                        key
                    },
                    message,
                },
            }
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let name_ok = !self.image.name.is_empty()
            && self
                .image
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(bad(
                "image.name",
                format!(
                    "{:?} must be non-empty ASCII letters, digits, '-' or '_'",
                    self.image.name
                ),
            ));
        }
        keel_core::entry::check_version(&self.image.version)
            .map_err(|e| bad("image.version", e.to_string()))?;
        if self.packages.suites.is_empty() {
            return Err(bad(
                "packages.suites",
                "at least one suite is needed".into(),
            ));
        }
        if self.packages.include.is_empty() {
            return Err(bad(
                "packages.include",
                "at least one package is needed".into(),
            ));
        }
        for (key, size, min) in [
            ("partitions.esp", self.partitions.esp, 64u64 << 20),
            ("partitions.root", self.partitions.root, 64 << 20),
            ("partitions.var", self.partitions.var, 64 << 20),
        ] {
            if size.0 < min || size.0 > MAX_PARTITION || size.0 % (1 << 20) != 0 {
                return Err(bad(
                    key,
                    format!(
                        "{} bytes: must be a whole number of MiB, at least {} MiB and at most {} GiB",
                        size.0,
                        min >> 20,
                        MAX_PARTITION >> 30
                    ),
                ));
            }
        }
        for (i, tree) in self.files.trees.iter().enumerate() {
            if tree.as_os_str().is_empty() || tree.is_absolute() {
                return Err(bad(
                    &format!("files.trees[{i}]"),
                    format!(
                        "{:?}: must be a directory relative to the config file",
                        tree.display().to_string()
                    ),
                ));
            }
        }
        for arg in &self.kernel.cmdline {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                return Err(bad(
                    "kernel.cmdline",
                    format!("{arg:?}: one argument per list item, no spaces"),
                ));
            }
            let key = arg.split('=').next().unwrap_or_default();
            if [
                keel_core::cmdline::SLOT_KEY,
                keel_core::cmdline::ROOTHASH_KEY,
            ]
            .contains(&key)
            {
                return Err(bad(
                    "kernel.cmdline",
                    format!("{arg:?}: {key} is set by osbuild for each slot"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[image]
name = "t"
version = "1.0"

[packages]
suites = ["bookworm"]
include = ["busybox-static"]

[kernel]
package = "linux-image-cloud-amd64"
initrd-modules = ["erofs"]

[partitions]
root = "512MiB"
"#;

    #[test]
    fn parses_and_defaults() {
        let c = ImageConfig::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(c.packages.components, ["main"]);
        assert_eq!(c.partitions.root, Size(512 << 20));
        assert_eq!(c.partitions.esp, Size(256 << 20));
    }

    #[test]
    fn unknown_key_names_path_and_file() {
        let text = GOOD.replace("include =", "includes =");
        let e = ImageConfig::parse(&text, Path::new("x/bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x/bad.toml"), "{e}");
        assert!(
            e.contains("packages.includes") || e.contains("`packages`"),
            "{e}"
        );
        assert!(e.contains("unknown field `includes`"), "{e}");

        let text = GOOD.replace("[partitions]", "[partitions]\nswap = 1");
        let e = ImageConfig::parse(&text, Path::new("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("partitions.swap"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = GOOD.replace("\"512MiB\"", "\"512 parsecs\"");
        let e = ImageConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("partitions.root") && e.contains("parsecs"),
            "{e}"
        );
        let text = GOOD.replace("version = \"1.0\"", "version = \"1-0\"");
        let e = ImageConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("image.version"), "{e}");
        let text = GOOD.replace(
            "initrd-modules",
            "cmdline = [\"keel.slot=b\"]\ninitrd-modules",
        );
        let e = ImageConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernel.cmdline"), "{e}");
    }

    #[test]
    fn every_shipped_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../image-configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                ImageConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > 0, "no configs in {}", dir.display());
    }

    #[test]
    fn trees_resolve_against_the_config_file() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg_path = tmp.path().join("img.toml");
        std::fs::create_dir(tmp.path().join("img.tree")).unwrap();
        let text = format!("{GOOD}\n[files]\ntrees = [\"img.tree\"]\n");
        let c = ImageConfig::parse(&text, &cfg_path).unwrap();
        assert_eq!(
            c.tree_dirs(&cfg_path).unwrap(),
            [tmp.path().join("img.tree").canonicalize().unwrap()]
        );

        let text = format!("{GOOD}\n[files]\ntrees = [\"img.tree\", \"gone.tree\"]\n");
        let c = ImageConfig::parse(&text, &cfg_path).unwrap();
        let e = c.tree_dirs(&cfg_path).unwrap_err().to_string();
        assert!(
            e.contains("img.toml") && e.contains("files.trees[1]") && e.contains("gone.tree"),
            "{e}"
        );

        let text = format!("{GOOD}\n[files]\ntrees = [\"/etc\"]\n");
        let e = ImageConfig::parse(&text, &cfg_path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("files.trees[0]") && e.contains("relative"),
            "{e}"
        );

        let text = format!("{GOOD}\n[files]\ntree = [\"x\"]\n");
        let e = ImageConfig::parse(&text, &cfg_path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("files.tree") && e.contains("unknown field"),
            "{e}"
        );
        // Without [files], no trees.
        let c = ImageConfig::parse(GOOD, &cfg_path).unwrap();
        assert!(c.tree_dirs(&cfg_path).unwrap().is_empty());
    }

    #[test]
    fn syntax_and_type_errors_give_line_column_and_text() {
        let text = GOOD.replace(
            "include = [\"busybox-static\"]",
            "include = [\"busybox-static\"",
        );
        let e = ImageConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        // Where the parser noticed: the next table, at line 10.
        assert_eq!(
            e,
            "image config c.toml:10:1: invalid array: expected `]` (line 10: `[kernel]`)"
        );

        let text = GOOD.replace("root = \"512MiB\"", "root = true");
        let e = ImageConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("image config c.toml:15:8: key `partitions.root`: "),
            "{e}"
        );
        assert!(
            e.contains("expected a size like \"512MiB\" or a number of bytes"),
            "{e}"
        );
        assert!(!e.contains("untagged") && !e.contains("Raw"), "{e}");
        assert!(e.contains("`root = true`"), "{e}");
        let text = GOOD.replace("root = \"512MiB\"", "root = -5");
        let e = ImageConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("-5 is negative"), "{e}");
        // Numbers still work.
        let text = GOOD.replace("root = \"512MiB\"", "root = 536870912");
        let c = ImageConfig::parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(c.partitions.root, Size(512 << 20));
    }

    #[test]
    fn huge_partitions_are_refused() {
        for size in ["\"2TiB\"", "\"16777215T\"", "18446744073709551615"] {
            let text = GOOD.replace("\"512MiB\"", size);
            let e = ImageConfig::parse(&text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                (e.contains("partitions.root") && e.contains("at most 1024 GiB"))
                    || (e.contains("c.toml:15:8:") && e.contains("too large")),
                "{size}: {e}"
            );
        }
    }

    #[test]
    fn trees_outside_the_config_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg_dir = tmp.path().join("configs");
        std::fs::create_dir_all(cfg_dir.join("inside.tree")).unwrap();
        std::fs::create_dir_all(tmp.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), cfg_dir.join("link.tree"))
            .unwrap();
        std::os::unix::fs::symlink("inside.tree", cfg_dir.join("alias.tree")).unwrap();
        let cfg_path = cfg_dir.join("img.toml");
        for (tree, ok) in [
            ("../elsewhere", false),
            ("inside.tree/../../elsewhere", false),
            ("link.tree", false),
            ("alias.tree", true),
            ("inside.tree/../inside.tree", true),
        ] {
            let text = format!("{GOOD}\n[files]\ntrees = [\"{tree}\"]\n");
            let c = ImageConfig::parse(&text, &cfg_path).unwrap();
            match c.tree_dirs(&cfg_path) {
                Ok(dirs) => {
                    assert!(ok, "{tree} accepted");
                    assert_eq!(dirs, [cfg_dir.join("inside.tree").canonicalize().unwrap()]);
                }
                Err(e) => {
                    assert!(!ok, "{tree}: {e}");
                    let e = e.to_string();
                    assert!(
                        e.contains("img.toml")
                            && e.contains("files.trees[0]")
                            && e.contains(tree)
                            && e.contains("outside"),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("1GiB"), Ok(Size(1 << 30)));
        assert_eq!(Size::parse("64M"), Ok(Size(64 << 20)));
        assert!(Size::parse("x").is_err());
        assert!(Size::parse("99999999999999T").is_err());
    }
}
