//! The control plane's URLs, in order of preference (own region first): in a
//! config, `url = "http://steering:7000"` or `url = ["http://eu:7000",
//! "http://us:7000"]`.

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Urls(pub Vec<String>);

impl Urls {
    pub fn one(url: &str) -> Urls {
        Urls(vec![url.to_owned()])
    }

    /// At least one, each http:// or https://; the reason otherwise.
    pub fn check(&self) -> Result<(), String> {
        if self.0.is_empty() {
            return Err("needs at least one URL".into());
        }
        match self
            .0
            .iter()
            .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            Some(bad) => Err(format!("{bad:?} is not an http:// or https:// URL")),
            None => Ok(()),
        }
    }
}

impl PartialEq<&str> for Urls {
    fn eq(&self, other: &&str) -> bool {
        self.0.len() == 1 && self.0[0] == *other
    }
}

impl<'de> Deserialize<'de> for Urls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Urls, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(u) => Urls(vec![u]),
            OneOrMany::Many(v) => Urls(v),
        })
    }
}

impl std::fmt::Display for Urls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_or_a_list_in_order() {
        let one: Urls = serde_json::from_str(r#""http://a:7000""#).unwrap();
        assert_eq!(one, "http://a:7000");
        let two: Urls = serde_json::from_str(r#"["http://eu:7000", "https://us:7000"]"#).unwrap();
        assert_eq!(two.0, ["http://eu:7000", "https://us:7000"]);
        assert!(two.check().is_ok());
        assert!(Urls(vec![]).check().is_err());
        let bad: Urls = serde_json::from_str(r#"["http://eu:7000", "eu:7000"]"#).unwrap();
        assert_eq!(
            bad.check().unwrap_err(),
            "\"eu:7000\" is not an http:// or https:// URL"
        );
        assert!(serde_json::from_str::<Urls>("7").is_err());
    }
}
