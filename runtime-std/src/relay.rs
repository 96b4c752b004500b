//! Cluster mode's standby: until this instance is the active one, every connection it accepts
//! is relayed byte for byte to the active instance (at the address the leader key holds), so
//! that every instance answers the same. A webhook sent to a standby is taken by the active
//! instance (a redelivery gets the same id, a replay is refused); a read shows the cluster's
//! deployments; an event stream follows the active instance's. With no active instance, or
//! one that does not answer, the connection gets 503 with `Retry-After`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::FutureExt;

use crate::http::{self, Response};
use crate::log;

/// How long a relay waits for the active instance to accept the connection, and for a
/// refusal to be written.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the active instance is, as the campaign last read it.
pub type Leader = Arc<Mutex<Option<String>>>;

/// Relays every connection `listener` accepts to the active instance until `won` is told
/// (this instance became the active one); at most `max` at once (503 beyond).
pub async fn relay_until_won(
    executor: Rc<LocalExecutor<'static>>,
    listener: TcpListener,
    leader: Leader,
    won: async_channel::Receiver<()>,
    max: usize,
) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let accepted = async { Some(listener.accept().await) }
            .or(async {
                let _ = won.recv().await;
                None
            })
            .await;
        let Some(accepted) = accepted else {
            return;
        };
        let Ok((mut client, _)) = accepted else {
            Timer::after(Duration::from_millis(10)).await;
            continue;
        };
        let _ = client.set_nodelay(true);
        if open.get() >= max {
            let refused = unavailable("too many connections relayed to the active instance");
            http::answer_and_close(&mut client, &refused, CONNECT_TIMEOUT).await;
            continue;
        }
        let target = leader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        open.set(open.get() + 1);
        let open = open.clone();
        executor
            .spawn(async move {
                relay(client, target).await;
                open.set(open.get().saturating_sub(1));
            })
            .detach();
    }
}

fn unavailable(why: &str) -> Response {
    Response::text(503, &format!("{why}; retry later")).with_header("Retry-After", "1")
}

/// Relays one connection to `target`, both ways, until either side closes.
async fn relay(mut client: TcpStream, target: Option<String>) {
    let Some(target) = target else {
        let refused = unavailable("no instance of the cluster is active yet");
        http::answer_and_close(&mut client, &refused, CONNECT_TIMEOUT).await;
        return;
    };
    let connected = async { TcpStream::connect(target.as_str()).await.ok() }
        .or(async {
            Timer::after(CONNECT_TIMEOUT).await;
            None
        })
        .await;
    let Some(upstream) = connected else {
        log::warn(&format!(
            "cluster: the active instance at {target} does not answer; a connection got 503"
        ));
        let refused = unavailable("the active instance does not answer");
        http::answer_and_close(&mut client, &refused, CONNECT_TIMEOUT).await;
        return;
    };
    let _ = upstream.set_nodelay(true);
    let up = {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let _ = futures_lite::io::copy(client, upstream.clone()).await;
            let _ = upstream.shutdown(std::net::Shutdown::Write);
        }
    };
    let down = {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let _ = futures_lite::io::copy(upstream, client.clone()).await;
            let _ = client.shutdown(std::net::Shutdown::Write);
        }
    };
    futures_lite::future::zip(up, down).await;
}
