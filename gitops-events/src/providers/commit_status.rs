//! Git commit statuses: GitHub (and GitHub Enterprise), GitLab, Gitea, Bitbucket Cloud,
//! Bitbucket Server / Data Center and Azure DevOps.
//!
//! As Flux does: the commit is taken from the event's revision metadata (`originRevision`
//! first), the state from the severity (info → success, error → failure), the description
//! from the reason split into words, and the status key is `<kind>/<name>/<first segment of
//! the Provider UID>` in lower case, so several clusters can report on one commit. A status
//! identical to the latest one with the same key is not posted again. `Progressing` events
//! are skipped (Gitea reports them as `pending`).

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::{HttpClient, ProviderConfig, basic_auth};
use crate::event::{Event, PROGRESSING_REASON, Severity, reason_words};
use crate::http::{RedactedUrl, Request, Secret};
use crate::notifier::{Notifier, NotifyError};

/// The commit-status key Flux builds: `<kind>/<name>/<first segment of the Provider UID>`,
/// lower-cased.
pub fn commit_status_id(provider_uid: &str, event: &Event) -> String {
    let uid_prefix = provider_uid.split('-').next().unwrap_or("");
    format!(
        "{}/{}/{}",
        event.involved_object.kind, event.involved_object.name, uid_prefix
    )
    .to_lowercase()
}

/// The commit SHA in a revision: `main@sha1:<hex>` (Flux 2), `sha1:<hex>`, or the legacy
/// `main/<hex>`.
pub fn parse_commit_sha(revision: &str) -> Option<String> {
    let tail = revision.rsplit('@').next().unwrap_or(revision);
    let sha = if let Some((_, hex)) = tail.split_once(':') {
        hex
    } else if let Some((_, last)) = revision.rsplit_once('/') {
        last
    } else {
        tail
    };
    let sha = sha.trim();
    if sha.is_empty() || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(sha.to_string())
}

/// A repository address split as Flux does: `scheme://host[:port]` and the repository id
/// (`owner/repo`, `group/subgroup/project`, `org/project/_git/repo`). SSH addresses
/// (`ssh://git@host/…`, `git@host:owner/repo.git`) map to `https://host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatusTarget {
    /// `scheme://host[:port]`.
    pub host: String,
    /// The repository id, without a leading `/` or trailing `.git`.
    pub id: String,
}

impl CommitStatusTarget {
    /// Parses an address.
    pub fn parse(provider: &str, address: &str) -> Result<Self, NotifyError> {
        let bad = |why: &str| NotifyError::config(provider, format!("repository address: {why}"));
        let (host, path) = if address.contains("://") {
            let url = url::Url::parse(address).map_err(|e| bad(&e.to_string()))?;
            let h = url.host_str().ok_or_else(|| bad("no host"))?;
            let host = match url.scheme() {
                "ssh" => format!("https://{h}"),
                scheme => match url.port() {
                    Some(p) => format!("{scheme}://{h}:{p}"),
                    None => format!("{scheme}://{h}"),
                },
            };
            (host, url.path().to_string())
        } else if let Some((user_host, path)) = address.split_once(':') {
            // scp-like: git@github.com:owner/repo.git
            let h = user_host.rsplit('@').next().unwrap_or(user_host);
            if h.is_empty() {
                return Err(bad("no host"));
            }
            (format!("https://{h}"), path.to_string())
        } else {
            return Err(bad("not a URL"));
        };
        let id = path.trim_start_matches('/');
        let id = id.strip_suffix(".git").unwrap_or(id).trim_end_matches('/');
        if id.is_empty() {
            return Err(bad("no repository path"));
        }
        Ok(CommitStatusTarget {
            host,
            id: id.to_string(),
        })
    }

    fn owner_repo(&self, provider: &str) -> Result<(String, String), NotifyError> {
        let parts: Vec<&str> = self.id.split('/').collect();
        match parts.as_slice() {
            [owner, repo] if !owner.is_empty() && !repo.is_empty() => {
                Ok((owner.to_string(), repo.to_string()))
            }
            _ => Err(NotifyError::config(
                provider,
                format!(
                    "invalid repository id {:?}: expected <owner>/<repo>",
                    self.id
                ),
            )),
        }
    }
}

/// What every commit-status provider needs from an event.
struct StatusInput {
    sha: String,
    id: String,
    description: String,
}

fn status_input(
    provider: &str,
    config_key: &Option<String>,
    uid: &str,
    event: &Event,
) -> Result<StatusInput, NotifyError> {
    let revision = event
        .revision()
        .ok_or_else(|| NotifyError::event(provider, event, "missing revision metadata"))?;
    let sha = parse_commit_sha(revision).ok_or_else(|| {
        NotifyError::event(
            provider,
            event,
            format!("revision {revision:?} holds no commit SHA"),
        )
    })?;
    let id = config_key
        .clone()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| commit_status_id(uid, event));
    Ok(StatusInput {
        sha,
        id,
        description: reason_words(&event.reason),
    })
}

fn url_with_segments(
    base: &url::Url,
    provider: &str,
    segments: &[&str],
) -> Result<url::Url, NotifyError> {
    let mut url = base.clone();
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|_| NotifyError::config(provider, "the API base cannot be a base URL"))?;
        segs.pop_if_empty();
        for s in segments {
            segs.push(s);
        }
    }
    Ok(url)
}

fn parse_json(provider: &str, body: &[u8]) -> Result<Value, NotifyError> {
    serde_json::from_slice(body).map_err(|source| NotifyError::Encode {
        provider: provider.to_string(),
        source,
    })
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `github`: `POST /repos/{owner}/{repo}/statuses/{sha}` on `https://api.github.com`, or on
/// `<scheme>://<host>/api/v3` for GitHub Enterprise.
#[derive(Debug)]
pub struct GitHub {
    http: HttpClient,
    api: RedactedUrl,
    owner: String,
    repo: String,
    token: Secret,
    uid: String,
    key: Option<String>,
}

impl GitHub {
    /// Validates the configuration and derives the API base.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let target = CommitStatusTarget::parse("github", &config.address)?;
        let (owner, repo) = target.owner_repo("github")?;
        let api = match &config.api_base {
            Some(base) if !base.is_empty() => base.clone(),
            _ if target.host == "https://github.com" || target.host == "http://github.com" => {
                "https://api.github.com".to_string()
            }
            _ => format!("{}/api/v3", target.host),
        };
        Ok(GitHub {
            http: config.client()?,
            api: RedactedUrl(super::parse_http_url("github", &api)?),
            owner,
            repo,
            token: config.require_token()?.clone(),
            uid: config.uid.clone(),
            key: config.commit_status.clone(),
        })
    }

    /// The API base in use.
    pub fn api_base(&self) -> &url::Url {
        &self.api
    }

    fn auth(&self, req: Request) -> Request {
        req.header("Authorization", format!("Bearer {}", self.token.expose()))
            .header("Accept", "application/vnd.github.v3+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }
}

#[async_trait]
impl Notifier for GitHub {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        if event.has_reason(PROGRESSING_REASON) {
            return Ok(());
        }
        let input = status_input("github", &self.key, &self.uid, event)?;
        let state = match event.severity {
            Severity::Info => "success",
            Severity::Error => "failure",
        };
        let mut list = url_with_segments(
            &self.api,
            "github",
            &[
                "repos",
                &self.owner,
                &self.repo,
                "commits",
                &input.sha,
                "statuses",
            ],
        )?;
        list.set_query(Some("per_page=50"));
        let existing = self.http.send(&self.auth(Request::get(list))).await?;
        let statuses = parse_json("github", &existing.body)?;
        if let Some(latest) = statuses
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| str_field(s, "context") == input.id)
            && str_field(latest, "state") == state
            && str_field(latest, "description") == input.description
        {
            return Ok(());
        }
        let url = url_with_segments(
            &self.api,
            "github",
            &["repos", &self.owner, &self.repo, "statuses", &input.sha],
        )?;
        let body = json!({"state": state, "description": input.description, "context": input.id});
        let req = self.auth(self.http.json(Method::POST, url, &body)?);
        self.http.send(&req).await.map(|_| ())
    }
}

/// `gitlab`: `POST /api/v4/projects/{id}/statuses/{sha}` with `PRIVATE-TOKEN`; the project
/// id is the URL-encoded path (subgroups allowed).
#[derive(Debug)]
pub struct GitLab {
    http: HttpClient,
    api: RedactedUrl,
    project: String,
    token: Secret,
    uid: String,
    key: Option<String>,
}

impl GitLab {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let target = CommitStatusTarget::parse("gitlab", &config.address)?;
        let api = match &config.api_base {
            Some(base) if !base.is_empty() => base.clone(),
            _ => format!("{}/api/v4", target.host),
        };
        Ok(GitLab {
            http: config.client()?,
            api: RedactedUrl(super::parse_http_url("gitlab", &api)?),
            project: target.id,
            token: config.require_token()?.clone(),
            uid: config.uid.clone(),
            key: config.commit_status.clone(),
        })
    }
}

#[async_trait]
impl Notifier for GitLab {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        if event.has_reason(PROGRESSING_REASON) {
            return Ok(());
        }
        let input = status_input("gitlab", &self.key, &self.uid, event)?;
        let state = match event.severity {
            Severity::Info => "success",
            Severity::Error => "failed",
        };
        let mut list = url_with_segments(
            &self.api,
            "gitlab",
            &[
                "projects",
                &self.project,
                "repository",
                "commits",
                &input.sha,
                "statuses",
            ],
        )?;
        list.query_pairs_mut().append_pair("name", &input.id);
        let existing = self
            .http
            .send(&Request::get(list).header("PRIVATE-TOKEN", self.token.expose().to_string()))
            .await?;
        let statuses = parse_json("gitlab", &existing.body)?;
        let duplicate = statuses.as_array().into_iter().flatten().any(|s| {
            str_field(s, "sha") == input.sha
                && str_field(s, "status") == state
                && str_field(s, "description") == input.description
                && str_field(s, "name") == input.id
        });
        if duplicate {
            return Ok(());
        }
        let url = url_with_segments(
            &self.api,
            "gitlab",
            &["projects", &self.project, "statuses", &input.sha],
        )?;
        let body = json!({"state": state, "name": input.id, "description": input.description});
        let req = self
            .http
            .json(Method::POST, url, &body)?
            .header("PRIVATE-TOKEN", self.token.expose().to_string());
        self.http.send(&req).await.map(|_| ())
    }
}

/// `gitea`: `POST /api/v1/repos/{owner}/{repo}/statuses/{sha}` with `Authorization: token`.
#[derive(Debug)]
pub struct Gitea {
    http: HttpClient,
    api: RedactedUrl,
    owner: String,
    repo: String,
    token: Secret,
    uid: String,
    key: Option<String>,
}

impl Gitea {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let target = CommitStatusTarget::parse("gitea", &config.address)?;
        let (owner, repo) = target.owner_repo("gitea")?;
        let api = match &config.api_base {
            Some(base) if !base.is_empty() => base.clone(),
            _ => format!("{}/api/v1", target.host),
        };
        Ok(Gitea {
            http: config.client()?,
            api: RedactedUrl(super::parse_http_url("gitea", &api)?),
            owner,
            repo,
            token: config.require_token()?.clone(),
            uid: config.uid.clone(),
            key: config.commit_status.clone(),
        })
    }
}

#[async_trait]
impl Notifier for Gitea {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let input = status_input("gitea", &self.key, &self.uid, event)?;
        let state = if event.has_reason(PROGRESSING_REASON) {
            "pending"
        } else {
            match event.severity {
                Severity::Info => "success",
                Severity::Error => "failure",
            }
        };
        let auth = format!("token {}", self.token.expose());
        let mut list = url_with_segments(
            &self.api,
            "gitea",
            &["repos", &self.owner, &self.repo, "statuses", &input.sha],
        )?;
        list.set_query(Some("page=0&limit=50"));
        let existing = self
            .http
            .send(&Request::get(list).header("Authorization", auth.clone()))
            .await?;
        let statuses = parse_json("gitea", &existing.body)?;
        if let Some(latest) = statuses.as_array().into_iter().flatten().find(|s| {
            !str_field(s, "context").is_empty()
                && !str_field(s, "status").is_empty()
                && str_field(s, "context") == input.id
        }) && str_field(latest, "status") == state
            && str_field(latest, "description") == input.description
        {
            return Ok(());
        }
        let url = url_with_segments(
            &self.api,
            "gitea",
            &["repos", &self.owner, &self.repo, "statuses", &input.sha],
        )?;
        let body = json!({
            "state": state,
            "target_url": "",
            "description": input.description,
            "context": input.id,
        });
        let req = self
            .http
            .json(Method::POST, url, &body)?
            .header("Authorization", auth);
        self.http.send(&req).await.map(|_| ())
    }
}

/// `bitbucket` (Cloud): `POST /2.0/repositories/{owner}/{repo}/commit/{sha}/statuses/build`
/// on `https://api.bitbucket.org` with basic auth from a `<user>:<app password>` token; the
/// key is the SHA-1 of the status id (Bitbucket limits keys to 40 characters).
#[derive(Debug)]
pub struct Bitbucket {
    http: HttpClient,
    api: RedactedUrl,
    owner: String,
    repo: String,
    user: String,
    password: Secret,
    uid: String,
    key: Option<String>,
}

impl Bitbucket {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let target = CommitStatusTarget::parse("bitbucket", &config.address)?;
        let (owner, repo) = target.owner_repo("bitbucket")?;
        let token = config.require_token()?;
        let (user, password) = token.expose().split_once(':').ok_or_else(|| {
            NotifyError::config(
                "bitbucket",
                "invalid token format, expected <user>:<password>",
            )
        })?;
        let api = config
            .api_base
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "https://api.bitbucket.org".to_string());
        Ok(Bitbucket {
            http: config.client()?,
            api: RedactedUrl(super::parse_http_url("bitbucket", &api)?),
            owner,
            repo,
            user: user.to_string(),
            password: Secret::new(password),
            uid: config.uid.clone(),
            key: config.commit_status.clone(),
        })
    }
}

#[async_trait]
impl Notifier for Bitbucket {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        if event.has_reason(PROGRESSING_REASON) {
            return Ok(());
        }
        let input = status_input("bitbucket", &self.key, &self.uid, event)?;
        let state = match event.severity {
            Severity::Info => "SUCCESSFUL",
            Severity::Error => "FAILED",
        };
        let key = hex::encode(Sha1::digest(input.id.as_bytes()));
        let name = format!(
            "{}/{}",
            event.involved_object.kind, event.involved_object.name
        )
        .to_lowercase();
        let auth = basic_auth(&self.user, self.password.expose());
        let base = [
            "2.0",
            "repositories",
            self.owner.as_str(),
            self.repo.as_str(),
            "commit",
            input.sha.as_str(),
            "statuses",
            "build",
        ];
        let mut get_segments = base.to_vec();
        get_segments.push(&key);
        let get = url_with_segments(&self.api, "bitbucket", &get_segments)?;
        let existing = self
            .http
            .send_allowing(
                &Request::get(get).header("Authorization", auth.clone()),
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        if existing.status.is_success() {
            let current = parse_json("bitbucket", &existing.body)?;
            if str_field(&current, "state") == state
                && str_field(&current, "description") == input.description
            {
                return Ok(());
            }
        }
        let url = url_with_segments(&self.api, "bitbucket", &base)?;
        let body = json!({
            "state": state,
            "key": key,
            "name": name,
            "description": input.description,
            "url": "https://bitbucket.org",
        });
        let req = self
            .http
            .json(Method::POST, url, &body)?
            .header("Authorization", auth);
        self.http.send(&req).await.map(|_| ())
    }
}

/// `bitbucketserver`: `POST <context>/rest/api/latest/projects/{key}/repos/{slug}/commits/
/// {sha}/builds` from an HTTP(S) clone URL (`…/scm/<project>/<repo>.git`), with a bearer
/// token or basic auth.
#[derive(Debug)]
pub struct BitbucketServer {
    http: HttpClient,
    commits: RedactedUrl,
    address: String,
    auth: Secret,
    uid: String,
    key: Option<String>,
}

impl BitbucketServer {
    /// Validates the configuration and derives the REST endpoint from the clone URL.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let p = "bitbucketserver";
        let url = config.parse_address()?;
        let path = url.path();
        let path = path.strip_suffix(".git").unwrap_or(path);
        let idx = path.rfind("/scm/").ok_or_else(|| {
            NotifyError::config(
                p,
                "the address is not an http(s) clone URL (…/scm/<project>/<repo>.git)",
            )
        })?;
        let context = &path[..idx];
        let id = &path[idx + "/scm/".len()..];
        let (project, repo) = match id.split('/').collect::<Vec<_>>().as_slice() {
            [project, repo] if !project.is_empty() && !repo.is_empty() => {
                (project.to_string(), repo.to_string())
            }
            _ => {
                return Err(NotifyError::config(
                    p,
                    format!("invalid repository id {id:?}"),
                ));
            }
        };
        let mut commits = url.clone();
        commits.set_query(None);
        commits.set_path(&format!(
            "{context}/rest/api/latest/projects/{project}/repos/{repo}/commits"
        ));
        let auth = match &config.token {
            Some(t) if !t.is_empty() => format!("Bearer {}", t.expose()),
            _ => match (&config.username, &config.password) {
                (Some(u), Some(pw)) if !u.is_empty() && !pw.is_empty() => {
                    basic_auth(u, pw.expose())
                }
                _ => {
                    return Err(NotifyError::config(
                        p,
                        "expected a token or a username and password",
                    ));
                }
            },
        };
        Ok(BitbucketServer {
            http: config.client()?,
            commits: RedactedUrl(commits),
            address: config.address.clone(),
            auth: Secret::new(auth),
            uid: config.uid.clone(),
            key: config.commit_status.clone(),
        })
    }

    fn request(&self, req: Request) -> Request {
        req.header("Authorization", self.auth.expose().to_string())
            .header("x-atlassian-token", "no-check")
            .header("x-requested-with", "XMLHttpRequest")
    }
}

#[async_trait]
impl Notifier for BitbucketServer {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        if event.has_reason(PROGRESSING_REASON) {
            return Ok(());
        }
        let input = status_input("bitbucketserver", &self.key, &self.uid, event)?;
        let state = match event.severity {
            Severity::Info => "SUCCESSFUL",
            Severity::Error => "FAILED",
        };
        let name = format!(
            "{} [{}]",
            format!(
                "{}/{}",
                event.involved_object.kind, event.involved_object.name
            )
            .to_lowercase(),
            input.description
        );
        let key = hex::encode(Sha1::digest(input.id.as_bytes()));
        let builds = url_with_segments(&self.commits, "bitbucketserver", &[&input.sha, "builds"])?;
        let mut get = builds.clone();
        get.query_pairs_mut().append_pair("key", &key);
        let existing = self
            .http
            .send_allowing(&self.request(Request::get(get)), &[StatusCode::NOT_FOUND])
            .await?;
        if existing.status == StatusCode::OK {
            let current = parse_json("bitbucketserver", &existing.body)?;
            if str_field(&current, "key") == key
                && str_field(&current, "state") == state
                && str_field(&current, "description") == input.description
                && str_field(&current, "name") == name
            {
                return Ok(());
            }
        }
        let body = json!({
            "description": input.description,
            "key": key,
            "name": name,
            "state": state,
            "url": self.address,
        });
        let req = self.request(self.http.json(Method::POST, builds, &body)?);
        self.http.send(&req).await.map(|_| ())
    }
}

/// `azuredevops`: `POST {org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses`
/// from a `https://dev.azure.com/{org}/{project}/_git/{repo}` address, with the PAT as basic
/// auth; the status context is `{genre: fluxcd, name: <status id>}`.
#[derive(Debug)]
pub struct AzureDevOps {
    http: HttpClient,
    api: RedactedUrl,
    auth: Secret,
    uid: String,
    key: Option<String>,
}

/// The API version used for Azure DevOps commit statuses.
const AZURE_API_VERSION: &str = "6.0";

impl AzureDevOps {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let p = "azuredevops";
        let target = CommitStatusTarget::parse(p, &config.address)?;
        let parts: Vec<&str> = target.id.split('/').collect();
        let (org, project, repo) = match parts.as_slice() {
            [org, project, "_git", repo] => (*org, *project, *repo),
            _ => {
                return Err(NotifyError::config(
                    p,
                    format!(
                        "invalid repository id {:?}: expected <org>/<project>/_git/<repo>",
                        target.id
                    ),
                ));
            }
        };
        let base = super::parse_http_url(p, &target.host)?;
        let api = url_with_segments(
            &base,
            p,
            &[
                org,
                project,
                "_apis",
                "git",
                "repositories",
                repo,
                "commits",
            ],
        )?;
        let token = config.require_token()?;
        Ok(AzureDevOps {
            http: config.client()?,
            api: RedactedUrl(api),
            auth: Secret::new(basic_auth("", token.expose())),
            uid: config.uid.clone(),
            key: config.commit_status.clone(),
        })
    }
}

#[async_trait]
impl Notifier for AzureDevOps {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        if event.has_reason(PROGRESSING_REASON) {
            return Ok(());
        }
        let input = status_input("azuredevops", &self.key, &self.uid, event)?;
        let state = match event.severity {
            Severity::Info => "succeeded",
            Severity::Error => "error",
        };
        let mut url = url_with_segments(&self.api, "azuredevops", &[&input.sha, "statuses"])?;
        url.query_pairs_mut()
            .append_pair("api-version", AZURE_API_VERSION);
        let existing = self
            .http
            .send(
                &Request::get(url.clone()).header("Authorization", self.auth.expose().to_string()),
            )
            .await?;
        let statuses = parse_json("azuredevops", &existing.body)?;
        let list = statuses
            .get("value")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(latest) = list.iter().find(|s| {
            let ctx = s.get("context").cloned().unwrap_or(Value::Null);
            str_field(&ctx, "name") == input.id && str_field(&ctx, "genre") == "fluxcd"
        }) && str_field(latest, "state") == state
            && str_field(latest, "description") == input.description
        {
            return Ok(());
        }
        let body = json!({
            "state": state,
            "description": input.description,
            "context": {"genre": "fluxcd", "name": input.id},
        });
        let req = self
            .http
            .json(Method::POST, url, &body)?
            .header("Authorization", self.auth.expose().to_string());
        self.http.send(&req).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ObjectReference;

    #[test]
    fn commit_sha_from_revisions() {
        let sha = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
        assert_eq!(
            parse_commit_sha(&format!("main@sha1:{sha}")).as_deref(),
            Some(sha)
        );
        assert_eq!(
            parse_commit_sha(&format!("feature/x@sha1:{sha}")).as_deref(),
            Some(sha)
        );
        assert_eq!(
            parse_commit_sha(&format!("main/{sha}")).as_deref(),
            Some(sha)
        );
        assert_eq!(
            parse_commit_sha(&format!("sha1:{sha}")).as_deref(),
            Some(sha)
        );
        assert_eq!(parse_commit_sha("v1.0.0"), None);
        assert_eq!(parse_commit_sha("main@sha1:"), None);
    }

    #[test]
    fn status_id_like_flux() {
        let e = Event::new(
            ObjectReference::new("Kustomization", "flux-system", "Apps"),
            Severity::Info,
            "ReconciliationSucceeded",
            "ok",
        );
        assert_eq!(
            commit_status_id("0c9c2e41-d2f9-4f9b-9c41-9b6f0c6b5a8e", &e),
            "kustomization/apps/0c9c2e41"
        );
    }

    #[test]
    fn git_addresses() {
        let t = CommitStatusTarget::parse("github", "https://github.com/org/repo.git").unwrap();
        assert_eq!(t.host, "https://github.com");
        assert_eq!(t.id, "org/repo");
        let t = CommitStatusTarget::parse("github", "ssh://git@ghe.example.com/org/repo").unwrap();
        assert_eq!(t.host, "https://ghe.example.com");
        let t = CommitStatusTarget::parse("github", "git@github.com:org/repo.git").unwrap();
        assert_eq!(
            (t.host.as_str(), t.id.as_str()),
            ("https://github.com", "org/repo")
        );
        let t = CommitStatusTarget::parse("gitlab", "http://127.0.0.1:8080/g/sub/p").unwrap();
        assert_eq!(
            (t.host.as_str(), t.id.as_str()),
            ("http://127.0.0.1:8080", "g/sub/p")
        );
    }

    #[test]
    fn github_enterprise_api_base() {
        let c = ProviderConfig::new(
            super::super::ProviderType::GitHub,
            "https://ghe.example.com/org/repo",
        )
        .with_token("t");
        let gh = GitHub::new(&c).unwrap();
        assert_eq!(gh.api_base().as_str(), "https://ghe.example.com/api/v3");
        let c = ProviderConfig::new(
            super::super::ProviderType::GitHub,
            "https://github.com/org/repo",
        )
        .with_token("t");
        assert_eq!(
            GitHub::new(&c).unwrap().api_base().as_str(),
            "https://api.github.com/"
        );
    }
}
