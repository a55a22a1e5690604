//! Enrolment: a new appliance joins without anyone editing steering's config.
//! An operator issues a one-time, short-lived token bound to a tier and site
//! (`steering appliances enroll`); the appliance presents it once with its
//! facts and the SHA-256 of a credential it chose, and is in the registry.
//! Only SHA-256 digests of tokens and credentials are stored.
//!
//! `decide` is the whole rule, pure; the store runs it inside the transaction
//! that marks the token used, so a token enrols once however many instances
//! it is presented to.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use control_client::wire::{EnrolRequest, EnrolResponse};

use super::Fleet;
use super::store::{EnrolmentRow, Placement};
use crate::http::{ApiError, bearer, json};
use crate::metrics::ReasonLabel;

/// What an enrolment token looks like, so a token pasted into the wrong
/// field (a credential, a viewer token) is told apart at once.
pub const TOKEN_PREFIX: &str = "enrol-";

/// A new token: the prefix and 256 random bits.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", urlsign::generate_secret())
}

/// An appliance of that id as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub revoked: bool,
}

/// The outcome of presenting a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write the appliance (a new one, or one whose credential was revoked
    /// and that this token names) with `bound`, and mark the token used.
    Enrol {
        id: String,
        bound: Placement,
    },
    /// This appliance already enrolled with this token and this credential
    /// (its answer was lost): the same answer again, nothing written.
    Again {
        id: String,
    },
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    UnknownToken,
    Expired,
    /// Used by another appliance, or with another credential.
    Used {
        by: String,
    },
    /// The token names another id.
    WrongId {
        bound: String,
    },
    /// An appliance of that id exists (and is not revoked, or the token does
    /// not name it).
    IdTaken {
        id: String,
    },
    /// The appliance states another tier, site or region than the token binds.
    Mismatch {
        what: String,
    },
}

impl Refusal {
    /// The error code the API answers with (and the metric's label).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownToken => "bad_enrolment_token",
            Refusal::Expired => "enrolment_token_expired",
            Refusal::Used { .. } => "enrolment_token_used",
            Refusal::WrongId { .. } => "wrong_appliance",
            Refusal::IdTaken { .. } => "id_taken",
            Refusal::Mismatch { .. } => "placement_mismatch",
        }
    }

    pub fn to_api(&self) -> ApiError {
        let (status, message) = match self {
            Refusal::UnknownToken => (
                StatusCode::UNAUTHORIZED,
                "no such enrolment token".to_owned(),
            ),
            Refusal::Expired => (
                StatusCode::UNAUTHORIZED,
                "the enrolment token has expired; issue a new one".to_owned(),
            ),
            Refusal::Used { by } => (
                StatusCode::CONFLICT,
                format!("the enrolment token was used already (by appliance {by:?})"),
            ),
            Refusal::WrongId { bound } => (
                StatusCode::FORBIDDEN,
                format!("the enrolment token is for appliance {bound:?}"),
            ),
            Refusal::IdTaken { id } => (
                StatusCode::CONFLICT,
                format!(
                    "appliance {id:?} exists; choose another id, or revoke it and issue a token with --id {id}"
                ),
            ),
            Refusal::Mismatch { what } => (StatusCode::UNPROCESSABLE_ENTITY, what.clone()),
        };
        ApiError::new(status, self.code(), message)
    }
}

/// The id an enrolment writes: the token's, else the one proposed.
pub fn id_for<'a>(token: Option<&'a EnrolmentRow>, req: &'a EnrolRequest) -> &'a str {
    token
        .and_then(|t| t.appliance.as_deref())
        .unwrap_or(&req.id)
}

/// Judge a presentation of `token` (as stored, `None` if unknown) by the
/// appliance `req`, where `existing` is the stored appliance of the id it
/// would get (`id_for`). Pure.
pub fn decide(
    token: Option<&EnrolmentRow>,
    existing: Option<&Existing>,
    req: &EnrolRequest,
    now: u64,
) -> Verdict {
    let Some(token) = token else {
        return Verdict::Refused(Refusal::UnknownToken);
    };
    // A used token is judged by its use alone: the appliance that used it
    // may retry after its token expired (its answer was lost at the end).
    if let Some(used) = &token.used {
        return if used.by == req.id && used.credential_sha256 == req.credential_sha256 {
            Verdict::Again {
                id: used.by.clone(),
            }
        } else {
            Verdict::Refused(Refusal::Used {
                by: used.by.clone(),
            })
        };
    }
    if now >= token.expires {
        return Verdict::Refused(Refusal::Expired);
    }
    if let Some(bound) = &token.appliance
        && *bound != req.id
    {
        return Verdict::Refused(Refusal::WrongId {
            bound: bound.clone(),
        });
    }
    let p = &token.placement;
    let info = &req.info;
    let mut wrong = Vec::new();
    if p.tier != info.tier {
        wrong.push(format!("tier {:?} (token: {:?})", info.tier, p.tier));
    }
    if p.site != info.site {
        wrong.push(format!("site {:?} (token: {:?})", info.site, p.site));
    }
    if let Some(region) = &p.region
        && *region != info.region
    {
        wrong.push(format!("region {:?} (token: {region:?})", info.region));
    }
    if !wrong.is_empty() {
        return Verdict::Refused(Refusal::Mismatch {
            what: format!("the appliance states {}", wrong.join(", ")),
        });
    }
    match existing {
        None => {}
        // Taking over a revoked id needs a token issued for that id: the
        // operator meant to replace that appliance.
        Some(e) if e.revoked && token.appliance.is_some() => {}
        Some(_) => {
            return Verdict::Refused(Refusal::IdTaken { id: req.id.clone() });
        }
    }
    let mut bound = p.clone();
    bound.region = Some(info.region.clone());
    Verdict::Enrol {
        id: req.id.clone(),
        bound,
    }
}

/// Whether a register call's info keeps to what enrolment bound.
pub fn keeps_to(bound: &Placement, info: &control_client::wire::ApplianceInfo) -> bool {
    bound.tier == info.tier
        && bound.site == info.site
        && bound.region.as_ref().is_none_or(|r| *r == info.region)
}

/// The request's own checks, before any token is looked at.
fn check(req: &EnrolRequest) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_request", m);
    if !crate::config::valid_id(&req.id) {
        return Err(bad("id: use 1-64 of A-Z a-z 0-9 - _ ."));
    }
    let hex = |s: &str| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(&req.credential_sha256) {
        return Err(bad("credential_sha256: 64 lowercase hex digits"));
    }
    if req.info.capacity_bps == 0 || req.info.admin_url.is_empty() {
        return Err(bad("capacity_bps and admin_url are required"));
    }
    if req.info.http_url.is_none() && req.info.https_url.is_none() {
        return Err(bad("http_url or https_url is required"));
    }
    if req.info.site.is_empty() || req.info.region.is_empty() {
        return Err(bad("site and region are required"));
    }
    Ok(())
}

/// `POST /v1/appliances/enroll`.
pub async fn enrol(
    State(state): State<Arc<Fleet>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<EnrolResponse>, ApiError> {
    let token = bearer(&headers)
        .filter(|t| t.starts_with(TOKEN_PREFIX))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("missing Bearer enrolment token ({TOKEN_PREFIX}…)"),
            )
        })?;
    let req: EnrolRequest = json(body)?;
    check(&req)?;
    let verdict = state
        .store
        .enrol(&crate::sha256_hex(token), &req, crate::unix_now())
        .await?;
    let outcome = match &verdict {
        Verdict::Enrol { .. } => "enrolled",
        Verdict::Again { .. } => "again",
        Verdict::Refused(r) => r.code(),
    };
    state
        .metrics
        .enrolments
        .get_or_create(&ReasonLabel { reason: outcome })
        .inc();
    match verdict {
        Verdict::Enrol { id, bound } => {
            tracing::info!(appliance = %id, tier = ?bound.tier, site = %bound.site, "appliance enrolled");
            {
                let mut reg = state.registry();
                reg.insert(&id, req.info, req.credential_sha256);
                reg.bind(&id, Some(bound));
            }
            Ok(axum::Json(EnrolResponse { id }))
        }
        Verdict::Again { id } => {
            // Enrolled through another instance maybe, not synced here yet:
            // the register call that follows must find it.
            if let Some(row) = state.store.appliance(&id).await? {
                state.registry().apply_row(row);
            }
            Ok(axum::Json(EnrolResponse { id }))
        }
        Verdict::Refused(r) => {
            tracing::warn!(appliance = %req.id, refusal = ?r, "enrolment refused");
            Err(r.to_api())
        }
    }
}

#[cfg(test)]
mod tests {
    use control_client::wire::{ApplianceInfo, Tier};

    use super::*;
    use crate::fleet::store::EnrolmentUse;

    fn placement() -> Placement {
        Placement {
            tier: Tier::Embedded,
            site: "isp-a-paris".into(),
            region: None,
            location: Some([48.85, 2.35]),
            fill_window: None,
            utc_offset: None,
        }
    }

    fn token(appliance: Option<&str>) -> EnrolmentRow {
        EnrolmentRow {
            token_sha256: "t".into(),
            appliance: appliance.map(str::to_owned),
            placement: placement(),
            created: 1000,
            expires: 4600,
            used: None,
        }
    }

    fn req(id: &str, cred: &str) -> EnrolRequest {
        EnrolRequest {
            id: id.into(),
            credential_sha256: cred.into(),
            info: ApplianceInfo {
                tier: Tier::Embedded,
                site: "isp-a-paris".into(),
                region: "eu".into(),
                asn: 64500,
                http_url: Some("http://127.0.0.1:8080".into()),
                https_url: None,
                admin_url: "http://127.0.0.1:9090".into(),
                capacity_bps: 10_000_000_000,
                storage_bytes: 1 << 40,
                version: String::new(),
            },
        }
    }

    #[test]
    fn a_fresh_token_enrols_the_proposed_id_and_binds_the_stated_region() {
        let v = decide(Some(&token(None)), None, &req("paris-7", "c1"), 2000);
        let Verdict::Enrol { id, bound } = v else {
            panic!("{v:?}")
        };
        assert_eq!(id, "paris-7");
        assert_eq!(bound.region.as_deref(), Some("eu"));
        assert_eq!(bound.location, Some([48.85, 2.35]));
    }

    #[test]
    fn a_used_token_answers_its_appliance_again_and_refuses_everyone_else() {
        let mut t = token(None);
        t.used = Some(EnrolmentUse {
            at: 2000,
            by: "paris-7".into(),
            credential_sha256: "c1".into(),
        });
        // Even after expiry: the retry of a lost answer.
        assert_eq!(
            decide(Some(&t), None, &req("paris-7", "c1"), 9999),
            Verdict::Again {
                id: "paris-7".into()
            }
        );
        for r in [req("paris-7", "c2"), req("paris-8", "c1")] {
            assert_eq!(
                decide(Some(&t), None, &r, 2001),
                Verdict::Refused(Refusal::Used {
                    by: "paris-7".into()
                })
            );
        }
    }

    #[test]
    fn unknown_expired_and_wrongly_placed_presentations_are_refused() {
        let r = req("paris-7", "c1");
        assert_eq!(
            decide(None, None, &r, 2000),
            Verdict::Refused(Refusal::UnknownToken)
        );
        assert_eq!(
            decide(Some(&token(None)), None, &r, 4600),
            Verdict::Refused(Refusal::Expired)
        );
        let mut ixp = r.clone();
        ixp.info.tier = Tier::Ixp;
        ixp.info.site = "ams-ix".into();
        let Verdict::Refused(Refusal::Mismatch { what }) =
            decide(Some(&token(None)), None, &ixp, 2000)
        else {
            panic!()
        };
        assert!(what.contains("tier") && what.contains("site"), "{what}");
        let mut t = token(None);
        t.placement.region = Some("us".into());
        assert!(matches!(
            decide(Some(&t), None, &r, 2000),
            Verdict::Refused(Refusal::Mismatch { .. })
        ));
        assert_eq!(
            decide(Some(&token(Some("paris-9"))), None, &r, 2000),
            Verdict::Refused(Refusal::WrongId {
                bound: "paris-9".into()
            })
        );
    }

    #[test]
    fn a_revoked_id_is_taken_over_only_with_a_token_naming_it() {
        let r = req("paris-7", "c2");
        let live = Existing { revoked: false };
        let revoked = Existing { revoked: true };
        let taken = Verdict::Refused(Refusal::IdTaken {
            id: "paris-7".into(),
        });
        assert_eq!(decide(Some(&token(None)), Some(&live), &r, 2000), taken);
        assert_eq!(decide(Some(&token(None)), Some(&revoked), &r, 2000), taken);
        assert_eq!(
            decide(Some(&token(Some("paris-7"))), Some(&live), &r, 2000),
            taken
        );
        assert!(matches!(
            decide(Some(&token(Some("paris-7"))), Some(&revoked), &r, 2000),
            Verdict::Enrol { .. }
        ));
    }

    #[test]
    fn registration_must_keep_to_the_bound_placement() {
        let mut bound = placement();
        bound.region = Some("eu".into());
        let r = req("paris-7", "c1");
        assert!(keeps_to(&bound, &r.info));
        let mut moved = r.info.clone();
        moved.tier = Tier::Ixp;
        assert!(!keeps_to(&bound, &moved));
    }
}
