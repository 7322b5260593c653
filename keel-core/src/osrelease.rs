//! os-release(5) content for a Keel image.

/// The fields Keel's programs read back from `/usr/lib/os-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    /// `IMAGE_ID`: the image config's name (e.g. `containerd`).
    pub image_id: String,
    /// `IMAGE_VERSION` and `VERSION_ID`: the release version.
    pub version: String,
}

pub const ID: &str = "keel";
pub const NAME: &str = "Keel";

impl OsRelease {
    pub fn render(&self) -> String {
        format!(
            "NAME=\"{NAME}\"\nID={ID}\nID_LIKE=debian\nPRETTY_NAME=\"{NAME} {v} ({img})\"\n\
             VERSION=\"{v}\"\nVERSION_ID=\"{v}\"\nIMAGE_ID=\"{img}\"\nIMAGE_VERSION=\"{v}\"\n\
             VARIANT_ID=\"{img}\"\nHOME_URL=\"https://example.invalid/keel\"\n",
            v = self.version,
            img = self.image_id,
        )
    }

    /// Reads the fields back; `None` when the file is not a Keel os-release.
    pub fn parse(text: &str) -> Option<Self> {
        let mut id = None;
        let mut image_id = None;
        let mut version = None;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "ID" => id = Some(v),
                "IMAGE_ID" => image_id = Some(v),
                "IMAGE_VERSION" => version = Some(v),
                _ => {}
            }
        }
        (id.as_deref() == Some(ID)).then_some(())?;
        Some(OsRelease {
            image_id: image_id?,
            version: version?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = OsRelease {
            image_id: "minimal".into(),
            version: "0.1.0".into(),
        };
        assert_eq!(OsRelease::parse(&r.render()), Some(r));
        assert_eq!(
            OsRelease::parse("ID=debian\nIMAGE_ID=x\nIMAGE_VERSION=1\n"),
            None
        );
    }
}
