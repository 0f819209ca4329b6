//! Plain GET requests to a registry's API outside oci-client's image calls: the `/v2/` check
//! `login` makes and the `/v2/_catalog` pages `search` reads. A 401 is answered as Docker
//! answers it: a `Bearer` challenge gets a token from its realm (with the credentials as
//! basic auth, and the scope asked for), a `Basic` one the credentials themselves. ureq, which
//! rbuild already uses for ADD's downloads, carries them (sync, rustls with `ring`); the same
//! insecure-host rules and extra CAs as pull and push apply.

use super::client::{chain, plain_http};
use super::{RegistryError, RegistryOptions, Result};
use base64::Engine as _;
use std::sync::Mutex;

/// A user name and password to present.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl BasicAuth {
    fn header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// A registry's answer: status, body and the `Link` header (pagination).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub link: Option<String>,
}

/// Requests to one registry, with the authorization that worked remembered for the next one.
pub struct RegistryHttp {
    agent: ureq::Agent,
    /// `https://host:port` or `http://host:port`.
    pub base: String,
    pub registry: String,
    auth: Option<BasicAuth>,
    authorization: Mutex<Option<String>>,
}

/// Why a request failed before an HTTP status came back.
fn transport(registry: &str, what: &str, e: &ureq::Error) -> RegistryError {
    RegistryError::Http {
        action: "request",
        reference: what.to_owned(),
        registry: registry.to_owned(),
        status: None,
        message: chain(e),
    }
}

impl RegistryHttp {
    /// A client for `registry` (`host[:port]`) presenting `auth` when challenged.
    pub fn new(registry: &str, opts: &RegistryOptions, auth: Option<BasicAuth>) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
        let pems = super::certs::registry_ca_pems(opts.cert_dir.as_deref(), registry)?;
        let insecure = plain_http(registry, opts, !pems.is_empty());
        if !pems.is_empty() {
            let mut certs = Vec::new();
            for (path, pem) in &pems {
                for item in ureq::tls::parse_pem(pem) {
                    match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c.to_owned()),
                        Ok(_) => {}
                        Err(e) => return Err(RegistryError::Certificate { path: path.clone(), reason: e.to_string() }),
                    }
                }
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(RegistryHttp {
            agent: ureq::Agent::new_with_config(config),
            base: format!("{}://{registry}", if insecure { "http" } else { "https" }),
            registry: registry.to_owned(),
            auth,
            authorization: Mutex::new(None),
        })
    }

    fn send(&self, url: &str, authorization: Option<&str>) -> Result<(Answer, Option<String>)> {
        let mut request = self.agent.get(url);
        if let Some(a) = authorization {
            request = request.header("Authorization", a);
        }
        let mut response = request.call().map_err(|e| transport(&self.registry, url, &e))?;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (challenge, link) = (header("www-authenticate"), header("link"));
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(|e| transport(&self.registry, url, &e))?;
        Ok((Answer { status, body, link }, challenge))
    }

    /// GETs `path` (`/v2/`, `/v2/_catalog?n=100`): unauthenticated first, then answering the
    /// registry's challenge with the credentials; `scope` is the token scope to ask for
    /// (`registry:catalog:*`). A 401 that credentials cannot fix comes back as an answer.
    pub fn get(&self, path: &str, scope: Option<&str>) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let known = self.authorization.lock().map(|a| a.clone()).unwrap_or_default();
        let (answer, challenge) = self.send(&url, known.as_deref())?;
        if answer.status != 401 {
            return Ok(answer);
        }
        let Some(authorization) = self.answer_challenge(challenge.as_deref(), scope)? else {
            return Ok(answer);
        };
        let (answer, _) = self.send(&url, Some(&authorization))?;
        if answer.status != 401 {
            if let Ok(mut slot) = self.authorization.lock() {
                *slot = Some(authorization);
            }
        }
        Ok(answer)
    }

    /// The `Authorization` header for a 401's `WWW-Authenticate`, or `None` when the
    /// credentials are missing or refused.
    fn answer_challenge(&self, challenge: Option<&str>, scope: Option<&str>) -> Result<Option<String>> {
        let text = challenge.unwrap_or("Basic");
        let parsed = http_auth::parse_challenges(text).map_err(|e| RegistryError::Http {
            action: "request",
            reference: "/v2/".into(),
            registry: self.registry.clone(),
            status: Some(401),
            message: format!("unreadable WWW-Authenticate {text:?}: {e}"),
        })?;
        let bearer = parsed.iter().find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
        let Some(bearer) = bearer else {
            return Ok(self.auth.as_ref().map(BasicAuth::header));
        };
        let param = |name: &str| {
            bearer.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped())
        };
        let Some(realm) = param("realm") else {
            return Ok(None);
        };
        let mut query = Vec::new();
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        if let Some(scope) = scope.map(str::to_owned).or_else(|| param("scope")) {
            query.push(("scope", scope));
        }
        let mut request = self.agent.get(&realm).query_pairs(query);
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth.header());
        }
        let mut response = request.call().map_err(|e| transport(&self.registry, &realm, &e))?;
        if response.status().as_u16() == 401 || response.status().as_u16() == 403 {
            return Ok(None);
        }
        let body = response.body_mut().read_to_vec().map_err(|e| transport(&self.registry, &realm, &e))?;
        let token: serde_json::Value = serde_json::from_slice(&body).map_err(|e| RegistryError::Http {
            action: "request",
            reference: realm.clone(),
            registry: self.registry.clone(),
            status: None,
            message: format!("the token service answered something not JSON: {e}"),
        })?;
        let token = token.get("token").or_else(|| token.get("access_token")).and_then(|t| t.as_str());
        Ok(token.map(|t| format!("Bearer {t}")))
    }
}
