//! Who is connected and which ports they hold: logged-in clients by `run_id`, proxies by name
//! and by port. The one place that decides "already exists", "port already used" and
//! "exceed the `max_ports_per_client`", atomically, so two clients racing for one port or name
//! cannot both win.
//!
//! [`Registry::lookup`] is the read API for other parts of harp (e.g. a gateway path that opens
//! a work connection in-process instead of dialing the loopback listener).
//! Every map here is bounded (controls by `MAX_CONTROLS`, proxies by the 1100 allowed ports);
//! no method awaits while holding the lock, and this module must never do network I/O.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::JoinHandle;

use super::control::ControlHandle;
use super::limits::{MAX_CONTROLS, MAX_PORTS_PER_CLIENT};
use super::policy;
use crate::tunnel::stream::WorkStream;

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Inner {
    controls: HashMap<String, Arc<ControlHandle>>,
    proxies: HashMap<String, ProxyEntry>,
    ports: HashMap<u16, String>,
}

struct ProxyEntry {
    port: u16,
    control: Arc<ControlHandle>,
    /// Tells this registration apart from a later one under the same name.
    reservation: u64,
    /// `None` while reserved (checks and bind still running).
    listener: Option<JoinHandle<()>>,
}

/// `MAX_CONTROLS` clients are logged in already.
#[derive(Debug)]
pub struct TooManyClients;

/// A registered, listening proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    pub name: String,
    pub port: u16,
    control: Arc<ControlHandle>,
}

impl ProxyHandle {
    pub(crate) fn new(name: String, port: u16, control: Arc<ControlHandle>) -> ProxyHandle {
        ProxyHandle {
            name,
            port,
            control,
        }
    }

    /// The client's `run_id`.
    pub fn run_id(&self) -> &str {
        &self.control.run_id
    }

    /// The client's address (the tunnel connection's peer).
    pub fn client_addr(&self) -> SocketAddr {
        self.control.peer
    }

    /// A work stream already bound to this proxy by `StartWorkConn`: bytes written to it reach
    /// the client's local service. `src` is the user connection's peer, `dst` the address it
    /// connected to (frpc only uses them for a PROXY protocol header). Waits at most
    /// `WORK_CONN_TIMEOUT` for the client.
    pub async fn connect(&self, src: SocketAddr, dst: SocketAddr) -> Result<WorkStream, String> {
        self.control.open_work_conn(&self.name, src, dst).await
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if it ever did, the maps are still consistent
        // enough to keep serving (every update is a few inserts/removes).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A process-unique id for a control or reservation.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The proxy listening on `port`, if any.
    pub fn lookup(&self, port: u16) -> Option<ProxyHandle> {
        let inner = self.lock();
        let name = inner.ports.get(&port)?;
        let entry = inner.proxies.get(name)?;
        entry.listener.as_ref()?;
        Some(ProxyHandle::new(
            name.clone(),
            entry.port,
            entry.control.clone(),
        ))
    }

    /// Whether a proxy of a logged-in client listens on `port` (the gateway's check before it
    /// dials a tunnel port; allocates nothing).
    pub fn holds(&self, port: u16) -> bool {
        let inner = self.lock();
        inner
            .ports
            .get(&port)
            .and_then(|name| inner.proxies.get(name))
            .is_some_and(|entry| entry.listener.is_some())
    }

    /// Every listening proxy, by port: what the ops listener's `/tunnels` shows.
    pub fn proxies(&self) -> Vec<ProxyHandle> {
        let inner = self.lock();
        let mut all: Vec<ProxyHandle> = inner
            .proxies
            .iter()
            .filter(|(_, entry)| entry.listener.is_some())
            .map(|(name, entry)| ProxyHandle::new(name.clone(), entry.port, entry.control.clone()))
            .collect();
        all.sort_by_key(|p| p.port);
        all
    }

    /// Number of logged-in clients.
    pub fn control_count(&self) -> usize {
        self.lock().controls.len()
    }

    pub fn control(&self, run_id: &str) -> Option<Arc<ControlHandle>> {
        self.lock().controls.get(run_id).cloned()
    }

    /// Registers a logged-in client. A client with the same `run_id` is replaced and returned:
    /// the caller must stop it and wait until it has released its ports (spec §7.1 step 5).
    pub fn insert_control(
        &self,
        control: Arc<ControlHandle>,
    ) -> Result<Option<Arc<ControlHandle>>, TooManyClients> {
        let mut inner = self.lock();
        if !inner.controls.contains_key(&control.run_id) && inner.controls.len() >= MAX_CONTROLS {
            return Err(TooManyClients);
        }
        Ok(inner.controls.insert(control.run_id.clone(), control))
    }

    /// Forgets `control`, unless its `run_id` already belongs to a newer login.
    pub fn remove_control(&self, control: &ControlHandle) {
        let mut inner = self.lock();
        if inner
            .controls
            .get(&control.run_id)
            .is_some_and(|c| c.id == control.id)
        {
            inner.controls.remove(&control.run_id);
        }
    }

    /// Claims `name` and `port` for `control`, in frps' check order (spec §9.1 steps 3-5).
    /// Returns the reservation to pass to [`Registry::activate`] or [`Registry::release`].
    pub fn reserve(
        &self,
        control: &Arc<ControlHandle>,
        name: &str,
        port: i64,
    ) -> Result<(u16, u64), String> {
        let mut inner = self.lock();
        let held = inner
            .proxies
            .values()
            .filter(|p| p.control.id == control.id)
            .count();
        if held + 1 > MAX_PORTS_PER_CLIENT {
            return Err("exceed the max_ports_per_client".into());
        }
        if inner.proxies.contains_key(name) {
            return Err(format!("proxy [{name}] already exists"));
        }
        let port = match u16::try_from(port) {
            Ok(p) if inner.ports.contains_key(&p) => return Err("port already used".into()),
            Ok(p) if policy::port_kind(p).is_some() => p,
            _ => return Err("port not allowed".into()),
        };
        let reservation = self.next_id();
        inner.ports.insert(port, name.to_string());
        inner.proxies.insert(
            name.to_string(),
            ProxyEntry {
                port,
                control: control.clone(),
                reservation,
                listener: None,
            },
        );
        Ok((port, reservation))
    }

    /// Attaches the running listener to a reservation. Gives the listener back if the
    /// reservation is gone (the client disconnected meanwhile); the caller then stops it.
    pub fn activate(
        &self,
        name: &str,
        reservation: u64,
        listener: JoinHandle<()>,
    ) -> Result<(), JoinHandle<()>> {
        let mut inner = self.lock();
        match inner.proxies.get_mut(name) {
            Some(entry) if entry.reservation == reservation => {
                entry.listener = Some(listener);
                Ok(())
            }
            _ => Err(listener),
        }
    }

    /// Drops a reservation whose checks failed.
    pub fn release(&self, name: &str, reservation: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.proxies.get(name) {
            if entry.reservation == reservation {
                let port = entry.port;
                inner.proxies.remove(name);
                inner.ports.remove(&port);
            }
        }
    }

    /// Removes `control`'s proxy `name` and returns its listener task (to stop).
    fn take_proxy(&self, control_id: u64, name: &str) -> Option<Option<JoinHandle<()>>> {
        let mut inner = self.lock();
        let entry = inner.proxies.get(name)?;
        if entry.control.id != control_id {
            return None;
        }
        let entry = inner.proxies.remove(name)?;
        inner.ports.remove(&entry.port);
        Some(entry.listener)
    }

    /// Removes every proxy of `control_id`, returning their listener tasks.
    pub fn take_all(&self, control_id: u64) -> Vec<(String, u16, Option<JoinHandle<()>>)> {
        let mut inner = self.lock();
        let names: Vec<String> = inner
            .proxies
            .iter()
            .filter(|(_, p)| p.control.id == control_id)
            .map(|(n, _)| n.clone())
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(entry) = inner.proxies.remove(&name) {
                inner.ports.remove(&entry.port);
                out.push((name, entry.port, entry.listener));
            }
        }
        out
    }

    /// `CloseProxy`: stops the listener (the port is free when this returns). False if `control`
    /// has no such proxy.
    pub async fn close_proxy(&self, control_id: u64, name: &str) -> bool {
        match self.take_proxy(control_id, name) {
            Some(listener) => {
                stop_listener(listener).await;
                true
            }
            None => false,
        }
    }

    /// Stops every listener of `control_id`; their ports are free when this returns.
    pub async fn close_all(&self, control_id: u64) -> Vec<(String, u16)> {
        let mut closed = Vec::new();
        for (name, port, listener) in self.take_all(control_id) {
            stop_listener(listener).await;
            closed.push((name, port));
        }
        closed
    }
}

/// Aborts a listener task and waits until it is gone, i.e. until its socket is closed.
pub async fn stop_listener(listener: Option<JoinHandle<()>>) {
    if let Some(task) = listener {
        task.abort();
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_task() -> JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test]
    async fn reserve_checks_in_frps_order() {
        let reg = Registry::new();
        let a = ControlHandle::detached(1, "a");
        let b = ControlHandle::detached(2, "b");
        let (port, r) = reg.reserve(&a, "app", 23000).unwrap();
        assert_eq!(port, 23000);
        // Reserved but not listening yet: not visible.
        assert!(reg.lookup(23000).is_none());
        reg.activate("app", r, idle_task()).unwrap();
        assert_eq!(reg.lookup(23000).unwrap().name, "app");
        // The port count comes first, then the name, then the port.
        assert_eq!(
            reg.reserve(&a, "other", 23001).unwrap_err(),
            "exceed the max_ports_per_client"
        );
        assert_eq!(
            reg.reserve(&b, "app", 23001).unwrap_err(),
            "proxy [app] already exists"
        );
        assert_eq!(
            reg.reserve(&b, "x", 23000).unwrap_err(),
            "port already used"
        );
        assert_eq!(reg.reserve(&b, "x", 22999).unwrap_err(), "port not allowed");
        assert_eq!(
            reg.reserve(&b, "x", 1 << 40).unwrap_err(),
            "port not allowed"
        );
        // Another client cannot close it; its owner can, and the port is free again.
        assert!(!reg.close_proxy(b.id, "app").await);
        assert!(reg.close_proxy(a.id, "app").await);
        assert!(reg.lookup(23000).is_none());
        reg.reserve(&b, "app", 23000).unwrap();
    }

    #[tokio::test]
    async fn released_or_replaced_reservations_keep_nothing() {
        let reg = Registry::new();
        let a = ControlHandle::detached(1, "a");
        let (_, r) = reg.reserve(&a, "app", 24000).unwrap();
        reg.release("app", r);
        let (_, r2) = reg.reserve(&a, "app", 24000).unwrap();
        // A stale reservation can neither release nor activate the new one.
        reg.release("app", r);
        assert!(reg.activate("app", r, idle_task()).is_err());
        reg.activate("app", r2, idle_task()).unwrap();
        assert_eq!(reg.close_all(a.id).await, vec![("app".to_string(), 24000)]);
        assert!(reg.take_all(a.id).is_empty());
    }

    #[test]
    fn a_newer_login_keeps_its_run_id() {
        let reg = Registry::new();
        let old = ControlHandle::detached(1, "r");
        let new = ControlHandle::detached(2, "r");
        assert!(reg.insert_control(old.clone()).unwrap().is_none());
        let replaced = reg.insert_control(new.clone()).unwrap().unwrap();
        assert_eq!(replaced.id, 1);
        // The old control's teardown must not remove the new one.
        reg.remove_control(&old);
        assert_eq!(reg.control("r").unwrap().id, 2);
        reg.remove_control(&new);
        assert!(reg.control("r").is_none());
    }
}
