//! The sandbox's HTTP answers: the control API v2, the repository and `/sandbox/`; and, with
//! a service to forward them to, the deployments endpoints ([`super::forward`]).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use async_io::Timer;
use lockstep_core::bundle::BundleId;
use serde_json::{Value, json};

use super::faults::{Action, Faults};
use super::forward;
use super::state::Lookup;
use super::{HeldRequest, Shared, safe_repository_path};
use crate::http::{self, Holder, Request, Response};
use crate::url::BaseUrl;

impl http::App for Shared {
    type Route = Route;

    fn route(&self, method: &str, target: &str) -> Result<Route, Response> {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        // Every method: the service answers each as it would (405 with its `Allow`).
        if let Some(service) = self.deployments.borrow().as_ref()
            && forward::is_forwarded(path)
        {
            return Ok(Route::Forward(service.clone()));
        }
        // HEAD is answered as GET; the server sends no body to it (RFC 9110 §9.3.2).
        let method = if method == "HEAD" { "GET" } else { method };
        classify(method, path)
    }

    fn call(
        self: Rc<Self>,
        route: Route,
        request: Request,
        _: http::Connection,
    ) -> Pin<Box<dyn Future<Output = Response>>> {
        match route {
            // Not the control API's: neither counted nor matched by request faults.
            Route::Forward(service) => {
                Box::pin(async move { forward::forward(&service, &request).await })
            }
            route => Box::pin(handle(self, route, request)),
        }
    }
}

/// Serves one request.
async fn handle(state: Rc<Shared>, route: Route, request: Request) -> Response {
    let path = request.path().to_owned();
    // A hold: the request's number, and how many body bytes go before it (`None`: none of the
    // answer, not even its head).
    let mut hold = None;
    if !path.starts_with("/sandbox/") {
        let (count, action) = {
            let mut cluster = state.cluster.borrow_mut();
            cluster.requests = cluster.requests.saturating_add(1);
            let count = cluster.requests;
            (
                count,
                cluster.faults.for_request(count, &request.method, &path),
            )
        };
        match action {
            Some(Action::Status(status)) => {
                return Response::text(status, "fault injected by the sandbox");
            }
            Some(Action::Hang) => {
                // Never answer: the client's own time-out has to end it.
                futures_lite::future::pending::<()>().await;
            }
            Some(Action::Delay(delay)) => {
                Timer::after(delay).await;
            }
            // Carried out now, as without the rule; the server holds the answer back.
            Some(Action::Hold) => hold = Some((count, None)),
            Some(Action::HoldAfterBytes(bytes)) => hold = Some((count, Some(bytes))),
            None => {}
        }
    }
    let response = answer(&state, route, &request);
    // A change may bring an execution event forward.
    let _ = state.wake.try_send(());
    match hold {
        Some((n, after_body_bytes)) => {
            let listing = Listing {
                request: HeldRequest {
                    n,
                    method: request.method,
                    path,
                    sent_bytes: 0,
                },
                state,
                listed: false,
            };
            response.held(after_body_bytes, listing)
        }
        None => response,
    }
}

/// Lists a held request in `/sandbox/held` from when the server begins holding it until the
/// hold ends (its client closed the connection): dropped then.
struct Listing {
    request: HeldRequest,
    state: Rc<Shared>,
    listed: bool,
}

impl Holder for Listing {
    fn holding(&mut self, sent_body_bytes: usize) {
        self.request.sent_bytes = sent_body_bytes;
        self.state.held.borrow_mut().push(self.request.clone());
        self.listed = true;
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        if self.listed {
            let n = self.request.n;
            self.state.held.borrow_mut().retain(|h| h.n != n);
        }
    }
}

/// The endpoints.
#[derive(Clone, Debug)]
pub(super) enum Route {
    List,
    Load,
    Events,
    Fetch(String),
    Scale(String),
    Unload(String),
    License,
    Repository(String),
    History,
    Held,
    Faults,
    AddFaults,
    ClearFaults,
    /// A deployments endpoint, forwarded to this service.
    Forward(Rc<BaseUrl>),
}

/// Which endpoint a method and path are, or the 404 / 405 answer.
fn classify(method: &str, path: &str) -> Result<Route, Response> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (method, segments.as_slice()) {
        ("GET", ["v2", "bundles"]) => Route::List,
        ("POST", ["v2", "bundles"]) => Route::Load,
        (_, ["v2", "bundles"]) => return Err(not_allowed("GET, HEAD, POST")),
        ("GET", ["v2", "bundles", "events"]) => Route::Events,
        (_, ["v2", "bundles", "events"]) => return Err(not_allowed("GET, HEAD")),
        ("GET", ["v2", "bundles", id]) => Route::Fetch((*id).to_owned()),
        ("PUT", ["v2", "bundles", id]) => Route::Scale((*id).to_owned()),
        ("DELETE", ["v2", "bundles", id]) => Route::Unload((*id).to_owned()),
        (_, ["v2", "bundles", _]) => return Err(not_allowed("GET, HEAD, PUT, DELETE")),
        ("GET", ["v2", "license"]) => Route::License,
        (_, ["v2", "license"]) => return Err(not_allowed("GET, HEAD")),
        ("GET", ["repository", rest @ ..]) if !rest.is_empty() => Route::Repository(rest.join("/")),
        (_, ["repository", ..]) => return Err(not_allowed("GET, HEAD")),
        ("GET", ["sandbox", "history"]) => Route::History,
        (_, ["sandbox", "history"]) => return Err(not_allowed("GET, HEAD")),
        ("GET", ["sandbox", "held"]) => Route::Held,
        (_, ["sandbox", "held"]) => return Err(not_allowed("GET, HEAD")),
        ("GET", ["sandbox", "faults"]) => Route::Faults,
        ("POST", ["sandbox", "faults"]) => Route::AddFaults,
        ("DELETE", ["sandbox", "faults"]) => Route::ClearFaults,
        (_, ["sandbox", "faults"]) => return Err(not_allowed("GET, HEAD, POST, DELETE")),
        _ => return Err(Response::text(404, "not found")),
    })
}

fn answer(state: &Rc<Shared>, route: Route, request: &Request) -> Response {
    match route {
        Route::List => list(state),
        Route::Load => match super::load::load(state, request) {
            Ok(id) => accepted(id),
            Err(refused) => refused,
        },
        Route::Events => events(state),
        Route::Fetch(id) => fetch(state, request, &id),
        Route::Scale(id) => scale(state, request, &id),
        Route::Unload(id) => unload(state, &id),
        Route::License => Response::text(404, "no license endpoint in the sandbox"),
        Route::Repository(rest) => repository(state, &rest),
        Route::History => history(state),
        Route::Held => held(state),
        Route::Faults => Response::json(200, faults_state(&state.cluster.borrow())),
        Route::AddFaults => add_faults(state, &request.body),
        Route::ClearFaults => {
            state.cluster.borrow_mut().faults = Faults::default();
            Response::text(200, "faults cleared")
        }
        // Never here: `call` forwards these.
        Route::Forward(service) => forward::unanswered(&service),
    }
}

fn not_allowed(allow: &str) -> Response {
    Response::text(405, "method not allowed").with_header("Allow", allow)
}

fn list(state: &Shared) -> Response {
    let cluster = state.cluster.borrow();
    let bundles: Vec<Value> = cluster
        .bundles
        .iter()
        .map(|b| cluster.bundle_json(b))
        .collect();
    Response::json(200, Value::Array(bundles).to_string())
}

fn events(state: &Shared) -> Response {
    let (tx, rx) = async_channel::bounded(256);
    // A first heartbeat so that the client sees the stream open at once.
    let _ = tx.try_send(b"\n\n".to_vec());
    state.cluster.borrow_mut().subscribers.push(tx);
    Response::event_stream(rx)
}

fn request_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    lockstep_core::deployer::DeploymentId::random_v4(bytes).to_string()
}

/// `{"requestId", "bundleId"}`, ConductR's answer to a command.
fn accepted(id: BundleId) -> Response {
    Response::json(
        200,
        json!({"requestId": request_id(), "bundleId": id.to_string()}).to_string(),
    )
}

/// Resolves `idOrName` to a bundle index, or the 404 / 300 answer.
fn resolve(state: &Shared, id_or_name: &str) -> Result<usize, Response> {
    match state.cluster.borrow().lookup(id_or_name) {
        Lookup::One(index) => Ok(index),
        Lookup::None => Err(Response::text(404, &format!("no bundle {id_or_name}"))),
        Lookup::Ambiguous(ids) => {
            let ids: Vec<String> = ids.iter().map(|id| id.short().to_string()).collect();
            Err(Response::text(
                300,
                &format!("{id_or_name} is ambiguous: {}", ids.join(", ")),
            ))
        }
    }
}

fn fetch(state: &Shared, request: &Request, id: &str) -> Response {
    let index = match resolve(state, id) {
        Ok(index) => index,
        Err(response) => return response,
    };
    let cluster = state.cluster.borrow();
    let Some(bundle) = cluster.bundles.get(index) else {
        return Response::text(404, "no such bundle");
    };
    let accept = request
        .header_str("accept")
        .unwrap_or("")
        .to_ascii_lowercase();
    if accept.contains("multipart/form-data") {
        return match super::load::files_multipart(bundle) {
            Ok((content_type, body)) => Response::new(200, &content_type, body),
            Err(e) => Response::text(500, &format!("the bundle's files cannot be read: {e}")),
        };
    }
    if accept.contains("application/hocon") {
        // The bundle's own bundle.conf, then its configuration's overlay: HOCON lets the later
        // value win, so this is the bundle.conf in effect.
        let mut conf = bundle.bundle_conf.clone();
        if let Some(overlay) = &bundle.overlay {
            conf.push('\n');
            conf.push_str(overlay);
        }
        return Response::new(200, "application/hocon", conf);
    }
    Response::json(200, cluster.bundle_json(bundle).to_string())
}

fn scale(state: &Shared, request: &Request, id: &str) -> Response {
    let Some(scale) = request.query_param("scale") else {
        return Response::text(400, "scale=N is required");
    };
    let Ok(scale) = scale.parse::<u32>() else {
        return Response::text(400, "scale must be a non-negative integer");
    };
    if let Some(affinity) = request.query_param("affinity")
        && let Err(response) = resolve(state, affinity)
    {
        return response;
    }
    let index = match resolve(state, id) {
        Ok(index) => index,
        Err(response) => return response,
    };
    let mut cluster = state.cluster.borrow_mut();
    cluster.set_scale(index, scale, Instant::now());
    match cluster.bundles.get(index) {
        Some(bundle) => accepted(bundle.id),
        None => Response::text(404, "no such bundle"),
    }
}

fn unload(state: &Shared, id: &str) -> Response {
    let index = match resolve(state, id) {
        Ok(index) => index,
        Err(response) => return response,
    };
    let mut cluster = state.cluster.borrow_mut();
    let bundle = cluster.bundles.remove(index);
    let time = cluster.millis(Instant::now());
    cluster.history.push(super::state::HistoryEntry {
        time,
        bundle_id: bundle.id,
        bundle_name: bundle.attributes.name.clone(),
        scale: 0,
        started: 0,
        starting: 0,
    });
    cluster.publish("bundleInstallationRemoved", bundle.id);
    accepted(bundle.id)
}

fn repository(state: &Shared, rest: &str) -> Response {
    let Some(path) = safe_repository_path(&state.data_dir.join("repository"), rest) else {
        return Response::text(400, "malformed repository path");
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let content_type = if rest.ends_with(".json") {
                "application/json"
            } else {
                "application/zip"
            };
            Response::new(200, content_type, bytes)
        }
        Err(_) => Response::text(404, "not in the repository"),
    }
}

fn history(state: &Shared) -> Response {
    let cluster = state.cluster.borrow();
    let entries: Vec<Value> = cluster
        .history
        .iter()
        .map(|h| {
            json!({
                "time": h.time,
                "bundleId": h.bundle_id.to_string(),
                "bundleName": h.bundle_name,
                "scale": h.scale,
                "started": h.started,
                "starting": h.starting,
            })
        })
        .collect();
    Response::json(200, Value::Array(entries).to_string())
}

/// The requests held now, oldest first.
fn held(state: &Shared) -> Response {
    let held: Vec<Value> = state
        .held
        .borrow()
        .iter()
        .map(|h| json!({"n": h.n, "method": h.method, "path": h.path, "sentBytes": h.sent_bytes}))
        .collect();
    Response::json(200, Value::Array(held).to_string())
}

fn add_faults(state: &Shared, body: &[u8]) -> Response {
    let mut cluster = state.cluster.borrow_mut();
    match Faults::parse(body, cluster.requests) {
        Ok(added) => {
            cluster.faults.bundles.extend(added.bundles);
            cluster.faults.requests.extend(added.requests);
            Response::json(200, faults_state(&cluster))
        }
        Err(e) => Response::text(400, &e.to_string()),
    }
}

fn faults_json(faults: &Faults) -> String {
    let bundles: Vec<Value> = faults
        .bundles
        .iter()
        .map(|f| {
            json!({
                "match": f.matcher,
                "neverStart": f.never_start,
                "crashAfterMs": f.crash_after.map(|d| d.as_millis() as u64),
                "crashes": f.crashes,
                "hasError": f.has_error,
            })
        })
        .collect();
    let requests: Vec<Value> = faults
        .requests
        .iter()
        .map(|r| {
            let (mut status, mut hang, mut delay, mut hold, mut hold_after) =
                (None, false, None, false, None);
            match r.action {
                Action::Status(s) => status = Some(s),
                Action::Hang => hang = true,
                Action::Delay(d) => delay = Some(d.as_millis() as u64),
                Action::Hold => hold = true,
                Action::HoldAfterBytes(n) => hold_after = Some(n),
            }
            json!({"nth": r.nth, "method": r.method, "path": r.path, "times": r.times,
                   "status": status, "hang": hang, "delayMs": delay, "hold": hold,
                   "holdAfterBytes": hold_after})
        })
        .collect();
    json!({"bundles": bundles, "requests": requests}).to_string()
}

/// The faults in force, and how many requests were counted so far (the `nth` of a new rule
/// counts from there).
fn faults_state(cluster: &super::state::Cluster) -> String {
    let mut value: Value = serde_json::from_str(&faults_json(&cluster.faults)).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("requestCount".into(), json!(cluster.requests));
    }
    value.to_string()
}
