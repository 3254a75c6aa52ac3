//! Property tests of the core's Redis boundary:
//! - for any namespace and id (quotes, `]]`, newlines, NUL, unicode, glob and hash-tag characters),
//!   the scripts touch exactly the keys `{namespace}:{id}` and `{namespace}index`, grant, renew and
//!   release as specified: no input can change what a script does (no Lua injection);
//! - any TTL outside 1..=MAX_TTL_MS is refused before Redis is touched;
//! - the reply decoders the core uses (script replies as integer/string tuples) never panic, whatever
//!   a server (or a man in the middle) sends back.

mod common;

use common::RedisServer;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use redfour_native::core::{LockError, ReleaseResult, RenewResult, Timeouts, MAX_TTL_MS};
use redis::Value;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Strings made of the characters that broke redfour (quotes, `]]`) and friends.
fn hostile_string(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("]]".to_owned()),
        Just("[[".to_owned()),
        Just("--".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\0".to_owned()),
        Just("\\".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("*".to_owned()),
        Just("?".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("redis.call(\"FLUSHALL\")".to_owned()),
        Just("KEYS[1]".to_owned()),
        "[a-z0-9]{1,4}",
        "\\PC{1,3}",
    ];
    prop::collection::vec(piece, 1..max).prop_map(|parts| parts.concat())
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
    keys.sort();
    keys
}

#[test]
fn scripts_touch_exactly_the_namespaced_keys() {
    let server = RedisServer::start();
    let strategy = (hostile_string(6), hostile_string(6), 1_000u64..60_000);
    runner(96)
        .run(&strategy, |(namespace, id, ttl)| {
            runtime().block_on(async {
                let mut conn = server
                    .client()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
                let lock =
                    common::open_lock(&[&server.url()], &namespace, Timeouts::default()).unwrap();
                let key = format!("{namespace}:{id}").into_bytes();
                let counter = format!("{namespace}index").into_bytes();

                let got = lock.acquire(&id, ttl).await.unwrap();
                prop_assert!(got.success);
                prop_assert_eq!((got.index, got.ttl), (1, ttl as i64));
                let mut expected = vec![key.clone(), counter.clone()];
                expected.sort();
                prop_assert_eq!(keys(&mut conn).await, expected);
                let index: i64 = redis::cmd("HGET")
                    .arg(&key)
                    .arg("index")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                prop_assert_eq!(index, 1);
                let pttl: i64 = redis::cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                prop_assert!(
                    pttl > 0 && pttl <= ttl as i64,
                    "pttl {} for ttl {}",
                    pttl,
                    ttl
                );

                let again = lock.acquire(&id, ttl).await.unwrap();
                prop_assert!(!again.success);
                prop_assert_eq!(again.index, -1);

                let renewed = lock.renew(&id, 1, ttl + 1).await.unwrap();
                prop_assert_eq!(renewed.result, RenewResult::Renewed);
                let wrong = lock.release(&id, 2).await.unwrap();
                prop_assert_eq!(wrong.result, ReleaseResult::Conflict);
                let released = lock.release(&id, 1).await.unwrap();
                prop_assert_eq!(released.result, ReleaseResult::Released);
                prop_assert_eq!(keys(&mut conn).await, vec![counter]);
                let gone = lock.release(&id, 1).await.unwrap();
                prop_assert_eq!(gone.result, ReleaseResult::Expired);
                lock.close();
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn out_of_range_ttls_are_refused_before_redis() {
    let server = RedisServer::start();
    let strategy = prop_oneof![Just(0u64), (MAX_TTL_MS + 1)..u64::MAX];
    runner(64)
        .run(&strategy, |ttl| {
            runtime().block_on(async {
                let mut conn = server
                    .client()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let lock =
                    common::open_lock(&[&server.url()], "ttlcheck", Timeouts::default()).unwrap();
                let before: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
                prop_assert!(matches!(
                    lock.acquire("x", ttl).await,
                    Err(LockError::InvalidArg(_))
                ));
                prop_assert!(matches!(
                    lock.renew("x", 1, ttl).await,
                    Err(LockError::InvalidArg(_))
                ));
                let after: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
                prop_assert_eq!(before, after);
                lock.close();
                Ok(())
            })
        })
        .unwrap();
}

#[test]
fn reply_decoders_never_panic() {
    runner(2_000)
        .run(&arbitrary_value(), |value| {
            // The shapes the core decodes script replies into (acquire, release, renew).
            let _ = redis::from_redis_value::<(i64, i64, i64)>(value.clone());
            let _ = redis::from_redis_value::<(i64, String, i64)>(value.clone());
            let _ = redis::from_redis_value::<(i64, String, i64, i64)>(value.clone());
            let _ = redis::from_redis_value::<i64>(value.clone());
            let _ = redis::from_redis_value::<Option<String>>(value.clone());
            let _ = redis::from_redis_value::<Vec<Vec<u8>>>(value);
            Ok(())
        })
        .unwrap();
}

fn arbitrary_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        Just(Value::Okay),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(-2i64), Just(-1), Just(0), Just(1), Just(2)].prop_map(Value::Int),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::BulkString),
        prop_oneof![
            Just(b"released".to_vec()),
            Just(b"conflict".to_vec()),
            Just(b"expired".to_vec()),
            Just(b"renewed".to_vec()),
            Just(b"missing".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"9223372036854775808".to_vec()),
            Just(b"1.5".to_vec()),
        ]
        .prop_map(Value::BulkString),
        "\\PC{0,8}".prop_map(Value::SimpleString),
        any::<f64>().prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Set),
            prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
        ]
    })
}
