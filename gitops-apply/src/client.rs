//! Clients for the cluster to apply to: the local one, a remote one from a kubeconfig, and
//! either of them impersonating a service account or a user (Flux's `serviceAccountName` and
//! `kubeConfig`).

use std::path::{Path, PathBuf};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// Whom API requests are made as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Impersonation {
    /// A service account: the user `system:serviceaccount:<namespace>:<name>`.
    ServiceAccount {
        /// The service account's namespace.
        namespace: String,
        /// The service account's name.
        name: String,
    },
    /// A user, with optional groups.
    User {
        /// The user name.
        name: String,
        /// The groups.
        groups: Vec<String>,
    },
}

impl Impersonation {
    /// The impersonated user name.
    pub fn user_name(&self) -> String {
        match self {
            Impersonation::ServiceAccount { namespace, name } => {
                format!("system:serviceaccount:{namespace}:{name}")
            }
            Impersonation::User { name, .. } => name.clone(),
        }
    }

    /// Writes the impersonation into a client configuration.
    pub fn apply_to(&self, config: &mut Config) {
        config.auth_info.impersonate = Some(self.user_name());
        config.auth_info.impersonate_groups = match self {
            Impersonation::ServiceAccount { namespace, .. } => Some(vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
            ]),
            Impersonation::User { groups, .. } if !groups.is_empty() => Some(groups.clone()),
            Impersonation::User { .. } => None,
        };
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("reading kubeconfig {path}: {source}")]
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: kube::config::KubeconfigError,
    },
    /// The configuration could not be resolved (context, cluster, credentials).
    #[error("kubeconfig {what}: {source}")]
    Config {
        /// Which configuration.
        what: String,
        /// The reason.
        source: kube::config::KubeconfigError,
    },
    /// Inferring the in-cluster or default configuration failed.
    #[error("inferring the cluster configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("building the client for {url}: {source}")]
    Build {
        /// The cluster URL.
        url: String,
        /// The reason.
        source: kube::Error,
    },
}

fn build(mut config: Config, impersonation: Option<&Impersonation>) -> Result<Client, ClientError> {
    if let Some(i) = impersonation {
        i.apply_to(&mut config);
    }
    let url = config.cluster_url.to_string();
    Client::try_from(config).map_err(|source| ClientError::Build { url, source })
}

/// A client from a kubeconfig (for a remote cluster), with an optional context and
/// impersonation.
pub async fn client_from_kubeconfig(
    kubeconfig: Kubeconfig,
    context: Option<&str>,
    impersonation: Option<&Impersonation>,
) -> Result<Client, ClientError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| ClientError::Config {
            what: context.map_or_else(|| "current context".to_string(), |c| format!("context {c}")),
            source,
        })?;
    build(config, impersonation)
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig_file(
    path: &Path,
    context: Option<&str>,
    impersonation: Option<&Impersonation>,
) -> Result<Client, ClientError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| ClientError::ReadKubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    client_from_kubeconfig(kubeconfig, context, impersonation).await
}

/// A client from the environment (`KUBECONFIG`, `~/.kube/config`, or in-cluster).
pub async fn default_client(impersonation: Option<&Impersonation>) -> Result<Client, ClientError> {
    let config = Config::infer().await?;
    build(config, impersonation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_impersonation_uses_the_service_account_user_and_groups() {
        let sa = Impersonation::ServiceAccount {
            namespace: "apps".into(),
            name: "deployer".into(),
        };
        assert_eq!(sa.user_name(), "system:serviceaccount:apps:deployer");
        let mut config = Config::new("http://127.0.0.1:1".parse().expect("valid URL"));
        sa.apply_to(&mut config);
        assert_eq!(
            config.auth_info.impersonate.as_deref(),
            Some("system:serviceaccount:apps:deployer")
        );
        assert_eq!(
            config.auth_info.impersonate_groups,
            Some(vec![
                "system:serviceaccounts".to_string(),
                "system:serviceaccounts:apps".to_string()
            ])
        );
    }
}
