//! `NewProxy`: checks (policy), claims name and port (registry), binds `127.0.0.1:<port>` and
//! starts the listener, in frps' order (spec §9.1). On any failure nothing is kept.

use std::sync::Arc;

use super::control::{discard_listener, ControlHandle};
use super::listener;
use super::policy;
use super::registry::ProxyHandle;
use super::Tunnel;
use crate::tunnel::msg::{NewProxy, NewProxyResp};

pub async fn register(
    tunnel: &Arc<Tunnel>,
    control: &Arc<ControlHandle>,
    req: NewProxy,
) -> NewProxyResp {
    let name = req.proxy_name.clone();
    match try_register(tunnel, control, &req).await {
        Ok(port) => {
            log::info!(
                "tunnel: client {} registered proxy [{name}] on 127.0.0.1:{port}",
                control.peer
            );
            NewProxyResp {
                proxy_name: name,
                remote_addr: format!(":{port}"),
                error: String::new(),
            }
        }
        Err(error) => {
            log::warn!(
                "tunnel: client {} (run_id {}) NewProxy [{name}] port {} refused: {error}",
                control.peer,
                control.run_id,
                req.remote_port
            );
            NewProxyResp {
                proxy_name: name,
                remote_addr: String::new(),
                error,
            }
        }
    }
}

async fn try_register(
    tunnel: &Arc<Tunnel>,
    control: &Arc<ControlHandle>,
    req: &NewProxy,
) -> Result<u16, String> {
    policy::check_request(req)?;
    let name = req.proxy_name.as_str();
    let (port, reservation) = tunnel.registry.reserve(control, name, req.remote_port)?;
    let result = bind_and_start(tunnel, control, name, port, reservation).await;
    if result.is_err() {
        tunnel.registry.release(name, reservation);
    }
    result.map(|()| port)
}

async fn bind_and_start(
    tunnel: &Arc<Tunnel>,
    control: &Arc<ControlHandle>,
    name: &str,
    port: u16,
    reservation: u64,
) -> Result<(), String> {
    // reserve() only hands out allowed ports.
    let kind = policy::port_kind(port).ok_or("port not allowed")?;
    policy::check_owner(&tunnel.admission, name, port, kind).await?;
    let socket = listener::bind(port).await.map_err(|e| {
        log::warn!("tunnel: cannot listen on 127.0.0.1:{port}: {e}");
        "port unavailable".to_string()
    })?;
    let handle = ProxyHandle::new(name.to_string(), port, control.clone());
    let task = listener::spawn(socket, handle, tunnel.idle_timeout);
    if let Err(task) = tunnel.registry.activate(name, reservation, task) {
        discard_listener(task).await;
        return Err(format!("proxy name [{name}] is already in use"));
    }
    Ok(())
}
