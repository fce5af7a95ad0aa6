//! Waiting on watches: until objects are Current (kstatus), or until they are gone.

use std::time::Duration;

use futures::{StreamExt, stream::select_all};
use kube::runtime::{WatchStreamExt, watcher};

use crate::{
    error::{NotReady, WaitError},
    health::{Health, Status},
    manager::{ResourceManager, with_type_meta},
    object::ObjectRef,
};

/// What a wait waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitMode {
    /// Every object Current; fail fast on Failed.
    Ready,
    /// Every object gone.
    Gone,
}

pub(crate) struct Waiter<'a> {
    pub(crate) manager: &'a ResourceManager,
}

impl Waiter<'_> {
    /// Watches each object (`metadata.name` field selector) until the condition holds for all,
    /// a Failed object ends a Ready wait at once, or the timeout passes.
    pub(crate) async fn wait(
        &self,
        targets: &[(ObjectRef, String)],
        timeout: Duration,
        mode: WaitMode,
    ) -> Result<(), WaitError> {
        if targets.is_empty() {
            return Ok(());
        }
        let mut states: Vec<Health> = vec![
            Health {
                status: Status::Unknown,
                message: "no status observed yet".into(),
            };
            targets.len()
        ];
        let mut streams = Vec::with_capacity(targets.len());
        for (i, (oref, version)) in targets.iter().enumerate() {
            let api_version = if oref.group.is_empty() {
                version.clone()
            } else {
                format!("{}/{}", oref.group, version)
            };
            let resolved = self
                .manager
                .resolve(&api_version, &oref.kind)
                .await
                .map_err(|e| WaitError::Watch {
                    object: oref.clone(),
                    message: e.to_string(),
                })?;
            let Some(resolved) = resolved else {
                // The kind is not served: nothing of it exists.
                states[i] = Health {
                    status: Status::NotFound,
                    message: format!("kind {} is not served by the cluster", oref.kind),
                };
                continue;
            };
            let api = self.manager.api(&resolved, &oref.namespace);
            let resource = resolved.resource.clone();
            let stream = watcher::watch_object(api, &oref.name)
                .default_backoff()
                .map(move |event| (i, event.map(|o| o.map(|o| with_type_meta(o, &resource)))));
            streams.push(stream.boxed());
        }
        let done = |states: &[Health]| {
            states.iter().all(|h| match mode {
                WaitMode::Ready => h.status == Status::Current,
                WaitMode::Gone => h.status == Status::NotFound,
            })
        };
        if done(&states) {
            return Ok(());
        }
        let mut events = select_all(streams);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, events.next()).await;
            let (i, event) = match next {
                Ok(Some(item)) => item,
                Ok(None) | Err(_) => break,
            };
            states[i] = match event {
                Ok(Some(obj)) => match serde_json::to_value(&obj) {
                    Ok(v) => health_for(self.manager.health(&v), mode),
                    Err(e) => Health {
                        status: Status::Unknown,
                        message: e.to_string(),
                    },
                },
                Ok(None) => Health {
                    status: Status::NotFound,
                    message: "Resource not found".into(),
                },
                Err(e) => Health {
                    status: Status::Unknown,
                    message: format!("watch error: {e}"),
                },
            };
            if mode == WaitMode::Ready && states[i].status == Status::Failed {
                return Err(WaitError::Failed {
                    object: targets[i].0.clone(),
                    message: states[i].message.clone(),
                });
            }
            if done(&states) {
                return Ok(());
            }
        }
        let not_ready = targets
            .iter()
            .zip(states)
            .filter(|(_, h)| match mode {
                WaitMode::Ready => h.status != Status::Current,
                WaitMode::Gone => h.status != Status::NotFound,
            })
            .map(|((oref, _), h)| NotReady {
                object: oref.clone(),
                status: h.status,
                message: h.message,
            })
            .collect();
        Err(WaitError::Timeout { not_ready })
    }
}

/// What a wait makes of an object's health `h`.
fn health_for(h: Health, mode: WaitMode) -> Health {
    match mode {
        WaitMode::Ready => h,
        WaitMode::Gone => {
            if h.status == Status::Terminating {
                h
            } else {
                Health {
                    status: Status::Current,
                    message: "Resource still exists".into(),
                }
            }
        }
    }
}
