//! Object storage with a global revision counter (as etcd's), the watch event history and the
//! registered watchers.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

use serde_json::Value;
use tokio::sync::mpsc;

use super::registry::ResourceType;

/// A stored resource: `(group, plural)`.
pub type ResKey = (String, String);

/// `(namespace, name)`; namespace empty for cluster-scoped objects.
pub type ObjKey = (String, String);

/// A watch event.
#[derive(Debug)]
pub struct Event {
    /// The revision of the change.
    pub rv: u64,
    /// Which resource.
    pub res: ResKey,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object after the change (for DELETED: the last state with the deletion's RV).
    pub object: Arc<Value>,
    /// The object before the change.
    pub old: Option<Arc<Value>>,
}

/// A registered watcher.
pub struct Watcher {
    /// The resource watched.
    pub res: ResKey,
    /// Where events go.
    pub tx: mpsc::UnboundedSender<Arc<Event>>,
}

/// The whole state, behind one lock.
pub struct State {
    /// Current revision.
    pub rv: u64,
    /// Objects per resource.
    pub objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Value>>>,
    /// Recent events.
    pub history: VecDeque<Arc<Event>>,
    /// Events at or below this revision are gone from the history.
    pub compacted: u64,
    /// History size limit.
    pub history_limit: usize,
    /// Registered watchers.
    pub watchers: Vec<Watcher>,
    /// Served types (built-ins plus established CRDs).
    pub types: Vec<ResourceType>,
    /// Owner uid → the objects whose ownerReferences name it.
    owners: HashMap<String, BTreeSet<(ResKey, ObjKey)>>,
}

fn owner_uids(v: &Value) -> Vec<String> {
    v["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `metadata.namespace`/`metadata.name`.
pub fn obj_key(v: &Value) -> ObjKey {
    (
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

impl State {
    /// An empty state serving `types`.
    pub fn new(types: Vec<ResourceType>, history_limit: usize) -> Self {
        State {
            rv: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            compacted: 1,
            history_limit: history_limit.max(1),
            watchers: Vec::new(),
            types,
            owners: HashMap::new(),
        }
    }

    /// One object.
    pub fn get(&self, res: &ResKey, key: &ObjKey) -> Option<Arc<Value>> {
        self.objects.get(res).and_then(|m| m.get(key)).cloned()
    }

    /// All objects of a resource, optionally in one namespace, ordered by key.
    pub fn list(&self, res: &ResKey, namespace: &str) -> Vec<Arc<Value>> {
        match self.objects.get(res) {
            None => Vec::new(),
            Some(m) if namespace.is_empty() => m.values().cloned().collect(),
            Some(m) => m
                .range((namespace.to_string(), String::new())..)
                .take_while(|((ns, _), _)| ns == namespace)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    /// The objects whose ownerReferences name `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<(ResKey, Arc<Value>)> {
        self.owners
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|(res, key)| self.get(res, key).map(|o| (res.clone(), o)))
            .collect()
    }

    fn index_owners(
        &mut self,
        res: &ResKey,
        key: &ObjKey,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let before = old.map(owner_uids).unwrap_or_default();
        let after = new.map(owner_uids).unwrap_or_default();
        if before == after {
            return;
        }
        for uid in before {
            if let Some(set) = self.owners.get_mut(&uid) {
                set.remove(&(res.clone(), key.clone()));
                if set.is_empty() {
                    self.owners.remove(&uid);
                }
            }
        }
        for uid in after {
            self.owners
                .entry(uid)
                .or_default()
                .insert((res.clone(), key.clone()));
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn publish(&mut self, ev: Event) {
        let ev = Arc::new(ev);
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        self.watchers
            .retain(|w| w.res != ev.res || w.tx.send(ev.clone()).is_ok());
        self.watchers.retain(|w| !w.tx.is_closed());
    }

    /// Stores an object (create or update), stamping a new resourceVersion. Returns it.
    pub fn put(&mut self, res: &ResKey, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let key = obj_key(&obj);
        let obj = Arc::new(obj);
        let old = self
            .objects
            .entry(res.clone())
            .or_default()
            .insert(key.clone(), obj.clone());
        self.index_owners(res, &key, old.as_deref(), Some(&obj));
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.publish(Event {
            rv,
            res: res.clone(),
            kind,
            object: obj.clone(),
            old,
        });
        obj
    }

    /// Removes an object. Returns its final state (with the deletion's resourceVersion).
    pub fn remove(&mut self, res: &ResKey, key: &ObjKey) -> Option<Arc<Value>> {
        let old = self.objects.get_mut(res)?.remove(key)?;
        self.index_owners(res, key, Some(&old), None);
        let rv = self.next_rv();
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let last = Arc::new(last);
        self.publish(Event {
            rv,
            res: res.clone(),
            kind: "DELETED",
            object: last.clone(),
            old: Some(old),
        });
        Some(last)
    }

    /// Events of `res` after `rv`, or `Err(oldest)` when `rv` is older than the history.
    pub fn events_since(&self, res: &ResKey, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        if rv < self.compacted {
            return Err(self.compacted + 1);
        }
        Ok(self
            .history
            .iter()
            .filter(|e| e.rv > rv && e.res == *res)
            .cloned()
            .collect())
    }

    /// Registers a watcher and returns its receiver.
    pub fn subscribe(&mut self, res: &ResKey) -> mpsc::UnboundedReceiver<Arc<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(Watcher {
            res: res.clone(),
            tx,
        });
        rx
    }

    /// The served type for `group`/`version`/`plural`.
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The served type for a kind (any version of the group).
    pub fn type_for_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
    }
}
