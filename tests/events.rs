//! The engine's events (core::events): connections opened, lost and reopened, and a quorum lost
//! and regained, as the process-wide hook sees them.

mod common;

use common::RedisServer;
use redfour_native::core::{events, Connection, Event, LockError, Timeouts};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Every event of this test binary (tests run in parallel: each looks only at its own servers).
fn seen() -> &'static Arc<Mutex<Vec<Event>>> {
    static SEEN: OnceLock<Arc<Mutex<Vec<Event>>>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let sink = seen.clone();
        events::set_hook(Some(Arc::new(move |event| {
            sink.lock().unwrap().push(event)
        })));
        seen
    })
}

fn matching(pred: impl Fn(&Event) -> bool) -> Vec<Event> {
    seen()
        .lock()
        .unwrap()
        .iter()
        .filter(|e| pred(e))
        .cloned()
        .collect()
}

async fn eventually(what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let started = Instant::now();
    loop {
        if let Some(event) = matching(&pred).into_iter().next() {
            return event;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn short() -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(300),
        command: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn connections_are_reported_opened_lost_and_reopened() {
    seen();
    let mut server = RedisServer::start();
    let endpoint = format!("127.0.0.1:{}", server.port);
    let lock = common::open_lock(&[&server.url()], "ev", short()).unwrap();
    let ours = |e: &Event| match e {
        Event::Connected { endpoint: at, .. }
        | Event::Lost { endpoint: at, .. }
        | Event::ConnectFailed { endpoint: at, .. } => *at == endpoint,
        _ => false,
    };
    let got = lock.wait_acquire("k", 5_000, None).await.unwrap();
    assert!(got.success);
    eventually("subscriber connected", |e| {
        ours(e)
            && matches!(
                e,
                Event::Connected {
                    connection: Connection::Subscriber,
                    reconnect: false,
                    ..
                }
            )
    })
    .await;
    assert_eq!(
        matching(|e| ours(e) && matches!(e, Event::Connected { .. })).len(),
        2,
        "the command and the subscriber connection, once each"
    );

    server.kill();
    let err = lock.acquire("k2", 5_000).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    eventually("commands lost", |e| {
        ours(e)
            && matches!(
                e,
                Event::Lost {
                    connection: Connection::Commands,
                    ..
                }
            )
    })
    .await;
    eventually("subscriber lost", |e| {
        ours(e)
            && matches!(
                e,
                Event::Lost {
                    connection: Connection::Subscriber,
                    ..
                }
            )
    })
    .await;
    // Failing again while down is not a second loss.
    let _ = lock.acquire("k3", 5_000).await;
    assert_eq!(
        matching(|e| ours(e)
            && matches!(
                e,
                Event::Lost {
                    connection: Connection::Commands,
                    ..
                }
            ))
        .len(),
        1
    );

    server.restart();
    let started = Instant::now();
    while lock.acquire("k4", 5_000).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("commands reconnected", |e| {
        ours(e)
            && matches!(
                e,
                Event::Connected {
                    connection: Connection::Commands,
                    reconnect: true,
                    ..
                }
            )
    })
    .await;
    eventually("subscriber reconnected", |e| {
        ours(e)
            && matches!(
                e,
                Event::Connected {
                    connection: Connection::Subscriber,
                    reconnect: true,
                    ..
                }
            )
    })
    .await;
    lock.close();
}

#[tokio::test]
async fn a_quorum_lost_and_regained_is_reported_once_each() {
    seen();
    let mut nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let endpoints: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let lock = common::open_lock(
        &urls.iter().map(String::as_str).collect::<Vec<_>>(),
        "evq",
        short(),
    )
    .unwrap();
    assert!(lock.acquire("k", 5_000).await.unwrap().success);
    let ours = |e: &Event| match e {
        Event::QuorumLost { endpoints: at, .. } | Event::QuorumRegained { endpoints: at, .. } => {
            *at == endpoints
        }
        _ => false,
    };
    assert!(matching(ours).is_empty(), "no event while all is well");

    nodes[0].kill();
    nodes[1].kill();
    for _ in 0..3 {
        let err = lock.acquire("k2", 5_000).await.unwrap_err();
        assert!(matches!(err, LockError::NoQuorum(_)), "{err:?}");
    }
    let lost = matching(ours);
    assert_eq!(
        lost,
        vec![Event::QuorumLost {
            endpoints: endpoints.clone(),
            answered: 1,
            needed: 2,
        }],
        "reported once"
    );

    nodes[0].restart();
    let started = Instant::now();
    while !matches!(lock.acquire("k3", 5_000).await, Ok(got) if got.success) {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = matching(ours);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        matches!(
            &all[1],
            Event::QuorumRegained {
                answered: 2,
                needed: 2,
                ..
            }
        ),
        "{all:?}"
    );
    lock.close();
}
