//! Tokens and callers: who is asking, from the `Authorization: Bearer` header or `?api_token=`.
//!
//! A token is `ocr_` and 64 hex digits (256 random bits). Only its SHA-256 is stored; with that
//! much entropy a fast hash is enough, and the lookup is by the hash, compared again in constant
//! time. A token that is present but unknown, revoked or malformed is refused (`401`) even where
//! anonymous access would be allowed, so a typo never silently bills the wrong caller.

use std::net::IpAddr;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::error::ApiError;

const PREFIX: &str = "ocr_";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous { ip: IpAddr },
    Account { id: String, plan: Plan },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Free,
    Paid,
}

impl Plan {
    pub fn parse(s: &str) -> Option<Plan> {
        match s {
            "free" => Some(Plan::Free),
            "paid" => Some(Plan::Paid),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Paid => "paid",
        }
    }
}

impl Caller {
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Caller::Account { id, .. } => Some(id),
            Caller::Anonymous { .. } => None,
        }
    }
}

/// Random hex of `bytes` bytes from the operating system's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS generator failing is not something a server can recover from.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random generator");
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token: (secret shown once, its hash to store).
pub fn new_token() -> (String, String) {
    let secret = format!("{PREFIX}{}", random_hex(32));
    let hash = hash_token(&secret);
    (secret, hash)
}

pub fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn well_formed(token: &str) -> bool {
    token.len() == PREFIX.len() + 64
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries: the Bearer header first, then `api_token` in the query.
/// `Err` for an `Authorization` header that is not a Bearer token.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or_else(ApiError::unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized());
        }
        return Ok(Some(token.trim().to_string()));
    }
    Ok(query_param(query, "api_token"))
}

/// The (percent-decoded) value of `key` in a query string.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let digits = bytes
                    .get(i + 1..i + 3)
                    .and_then(|d| std::str::from_utf8(d).ok());
                match digits.and_then(|d| u8::from_str_radix(d, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Identifies the caller of a request: an account (valid token), anonymous (no token) or `401`.
pub async fn identify(
    db: &Db,
    headers: &HeaderMap,
    query: Option<&str>,
    ip: IpAddr,
) -> Result<Caller, ApiError> {
    let Some(token) = presented(headers, query)? else {
        return Ok(Caller::Anonymous { ip });
    };
    if !well_formed(&token) {
        return Err(ApiError::unauthorized());
    }
    let hash = hash_token(&token);
    let Some((account_id, stored)) = db.token_by_hash(&hash).await? else {
        return Err(ApiError::unauthorized());
    };
    if !constant_time_eq(hash.as_bytes(), stored.as_bytes()) {
        return Err(ApiError::unauthorized());
    }
    let account = db
        .account(&account_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let plan = Plan::parse(&account.plan).ok_or_else(ApiError::unauthorized)?;
    Ok(Caller::Account {
        id: account.id,
        plan,
    })
}

/// The client address for anonymous metering: the socket's peer, or the first address of
/// `X-Forwarded-For` when the server is configured to trust a proxy in front of it.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok());
    match forwarded {
        Some(ip) if trust_forwarded_for => ip,
        _ => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_and_hash_stably() {
        let (secret, hash) = new_token();
        assert!(well_formed(&secret));
        assert_eq!(hash, hash_token(&secret));
        assert_eq!(hash.len(), 64);
        assert!(!well_formed("ocr_123"));
        assert!(!well_formed(&secret.to_uppercase()));
        assert_ne!(new_token().0, secret);
    }

    #[test]
    fn bearer_header_then_query() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented(&h, Some("a=1&api_token=ocr_x%61")).unwrap(),
            Some("ocr_xa".into())
        );
        assert_eq!(presented(&h, Some("a=1")).unwrap(), None);
        h.insert("authorization", "bearer  ocr_abc ".parse().unwrap());
        assert_eq!(presented(&h, None).unwrap(), Some("ocr_abc".into()));
        h.insert("authorization", "Basic dXNlcg==".parse().unwrap());
        assert!(presented(&h, None).is_err());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
