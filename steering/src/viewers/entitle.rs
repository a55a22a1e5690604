//! Whether a viewer may play a title, and which renditions: pure functions of
//! the account, the title, the device profile, the plan and `now`.

use super::store::UserRow;
use crate::config::{DeviceConfig, PlanConfig};
use crate::store::TitleRecord;

/// Why a play is refused; `code()` is the machine-readable reason in the 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    SubscriptionInactive(String),
    NotInRegion,
    NotReleased { release: u64 },
    StreamLimit { active: u32, max: u32 },
    PlanResolution { max_height: u64 },
}

impl Denied {
    pub fn code(&self) -> &'static str {
        match self {
            Denied::SubscriptionInactive(_) => "subscription_inactive",
            Denied::NotInRegion => "not_available_in_region",
            Denied::NotReleased { .. } => "not_released",
            Denied::StreamLimit { .. } => "stream_limit",
            Denied::PlanResolution { .. } => "plan_resolution",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Denied::SubscriptionInactive(s) => format!("the subscription is {s}"),
            Denied::NotInRegion => "the title is not available in the account's region".into(),
            Denied::NotReleased { release } => {
                format!("the title is released at unix time {release}")
            }
            Denied::StreamLimit { active, max } => {
                format!("{active} streams already playing; the plan allows {max}")
            }
            Denied::PlanResolution { max_height } => {
                format!("no rendition of this title fits the plan's {max_height}p limit")
            }
        }
    }
}

/// Subscription, region and release checks (the stream limit is checked
/// where streams are counted, atomically with starting one).
pub fn entitle(user: &UserRow, title: &TitleRecord, now: u64) -> Result<(), Denied> {
    if user.subscription != "active" {
        return Err(Denied::SubscriptionInactive(user.subscription.clone()));
    }
    let here = |r: &String| r == "*" || *r == user.region || *r == user.country;
    if !title.regions.iter().any(here) {
        return Err(Denied::NotInRegion);
    }
    if let Some(release) = title.release
        && release > now
    {
        return Err(Denied::NotReleased { release });
    }
    Ok(())
}

/// The renditions a play uses, per manifest format.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    pub hls: Vec<String>,
    pub dash: Vec<String>,
}

impl Selection {
    /// Every rendition, for steering (an appliance must hold them all).
    pub fn all(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .hls
            .iter()
            .chain(&self.dash)
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Why no rendition could be selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRendition {
    /// The device decodes none of the title's video renditions.
    Device,
    /// It does, but none within the plan's resolution.
    Plan(Denied),
}

/// Device-appropriate renditions capped by the plan: for each format the
/// device plays, video renditions whose codecs it decodes and whose height fits
/// both the device and the plan, with the audio and text renditions it decodes.
/// A format without a playable video rendition is left out.
pub fn select(
    title: &TitleRecord,
    device: &DeviceConfig,
    plan: &PlanConfig,
) -> Result<Selection, NoRendition> {
    let decodes = |codec: &Option<String>| {
        codec.as_deref().is_none_or(|c| {
            c.split(',').map(str::trim).all(|one| {
                device
                    .codecs
                    .iter()
                    .any(|family| one.starts_with(family.as_str()))
            })
        })
    };
    let mut out = Selection::default();
    let mut device_could = false;
    for protocol in &device.protocols {
        let renditions = title.renditions.iter().filter(|r| &r.protocol == protocol);
        let mut video = Vec::new();
        let mut other = Vec::new();
        for r in renditions.filter(|r| decodes(&r.codec)) {
            if r.kind != "video" {
                other.push(r.id.clone());
                continue;
            }
            let h = r.height.unwrap_or(0);
            if h > device.max_height {
                continue;
            }
            device_could = true;
            if h <= plan.max_height {
                video.push(r.id.clone());
            }
        }
        if video.is_empty() {
            continue;
        }
        video.extend(other);
        match protocol.as_str() {
            "hls" => out.hls = video,
            _ => out.dash = video,
        }
    }
    if out.hls.is_empty() && out.dash.is_empty() {
        return Err(if device_could {
            NoRendition::Plan(Denied::PlanResolution {
                max_height: plan.max_height,
            })
        } else {
            NoRendition::Device
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TitleRendition;

    fn user(sub: &str) -> UserRow {
        UserRow {
            id: "u".into(),
            plan: "basic".into(),
            subscription: sub.into(),
            country: "NL".into(),
            region: "eu-west".into(),
        }
    }

    fn rendition(id: &str, kind: &str, codec: &str, h: u64, protocol: &str) -> TitleRendition {
        TitleRendition {
            id: id.into(),
            kind: kind.into(),
            codec: Some(codec.into()),
            width: (h > 0).then_some(h * 16 / 9),
            height: (h > 0).then_some(h),
            bandwidth: h * 1000,
            protocol: protocol.into(),
            segment_duration: 4.0,
            playlist: None,
        }
    }

    fn title(regions: &[&str], release: Option<u64>) -> TitleRecord {
        let av = "avc1.4d401f,mp4a.40.2";
        TitleRecord {
            id: "t1".into(),
            name: "T".into(),
            regions: regions.iter().map(|s| s.to_string()).collect(),
            release,
            renditions: vec![
                rendition("t/v360", "video", av, 360, "hls"),
                rendition("t/v720", "video", av, 720, "hls"),
                rendition("t/v2160", "video", "hvc1.2.4.L153,mp4a.40.2", 2160, "hls"),
                rendition("t/d/r0", "video", "avc1.4d401e", 360, "dash"),
                rendition("t/d/r1", "video", "avc1.4d401f", 720, "dash"),
                rendition("t/d/r3", "audio", "mp4a.40.2", 0, "dash"),
            ],
            manifests: vec![],
            artwork: vec![],
        }
    }

    fn device(codecs: &[&str], max_height: u64, protocols: &[&str]) -> DeviceConfig {
        DeviceConfig {
            name: "d".into(),
            codecs: codecs.iter().map(|s| s.to_string()).collect(),
            max_height,
            protocols: protocols.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn plan(max_height: u64) -> PlanConfig {
        PlanConfig {
            name: "p".into(),
            max_height,
            max_streams: 1,
        }
    }

    #[test]
    fn entitlement_reasons() {
        let t = title(&["eu-west"], Some(100));
        let cases: Vec<(&str, UserRow, &TitleRecord, u64, Result<(), &str>)> = vec![
            ("ok", user("active"), &t, 100, Ok(())),
            (
                "suspended",
                user("suspended"),
                &t,
                100,
                Err("subscription_inactive"),
            ),
            (
                "before release",
                user("active"),
                &t,
                99,
                Err("not_released"),
            ),
        ];
        for (name, u, t, now, want) in cases {
            assert_eq!(entitle(&u, t, now).map_err(|d| d.code()), want, "{name}");
        }
        let elsewhere = title(&["us-east"], None);
        assert_eq!(
            entitle(&user("active"), &elsewhere, 0).unwrap_err(),
            Denied::NotInRegion
        );
        assert!(entitle(&user("active"), &title(&["NL"], None), 0).is_ok());
        assert!(entitle(&user("active"), &title(&["*"], None), 0).is_ok());
        assert!(entitle(&user("active"), &title(&[], None), 0).is_err());
    }

    #[test]
    fn selection_by_device_and_plan() {
        let t = title(&["*"], None);
        let browser = device(&["avc1", "mp4a"], 1080, &["hls", "dash"]);
        let s = select(&t, &browser, &plan(1080)).unwrap();
        assert_eq!(s.hls, ["t/v360", "t/v720"], "no HEVC for a browser");
        assert_eq!(s.dash, ["t/d/r0", "t/d/r1", "t/d/r3"]);
        let s = select(&t, &browser, &plan(540)).unwrap();
        assert_eq!(s.hls, ["t/v360"], "the plan caps resolution");
        assert_eq!(s.dash, ["t/d/r0", "t/d/r3"], "audio stays");
        let tv = device(&["avc1", "hvc1", "mp4a"], 2160, &["hls"]);
        let s = select(&t, &tv, &plan(2160)).unwrap();
        assert_eq!(s.hls, ["t/v360", "t/v720", "t/v2160"]);
        assert!(s.dash.is_empty(), "only the formats the device plays");
        assert_eq!(
            select(&t, &browser, &plan(240)).unwrap_err(),
            NoRendition::Plan(Denied::PlanResolution { max_height: 240 })
        );
        let audio_only = device(&["mp4a"], 1080, &["hls", "dash"]);
        assert_eq!(
            select(&t, &audio_only, &plan(1080)).unwrap_err(),
            NoRendition::Device
        );
        let s = select(&t, &browser, &plan(1080)).unwrap();
        assert_eq!(s.all().len(), 5);
    }
}
