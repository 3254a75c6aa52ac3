//! The Node binding: converts JavaScript values to engine calls and engine results and errors
//! back. No lock logic lives here. Calls return at once and complete through the Lock's `on_done`
//! batches (lib/calls.js) or a Promise; the JS facade in index.js adds callbacks, so no user code
//! ever runs on a Rust stack. It also hands the engine's scripts to lib/plain-calls.js.

use crate::core::sync::MutexExt;
use crate::core::{self, Lease, LeaseOptions, LockError, Timeouts};
use futures_util::FutureExt;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[napi_derive::module_init]
fn init() {
    // The addon's own runtime: one worker thread. The work is I/O bound and small, and keeping
    // the connection drivers and the calls on one thread avoids a cross-thread wake per reply.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("redfour-native")
        .enable_all()
        .build();
    if let Ok(runtime) = runtime {
        create_custom_tokio_runtime(runtime);
    }
}

#[napi(object)]
pub struct NativeLockOptions {
    /// One URL: a single Redis server; several: independent masters in quorum mode.
    pub urls: Vec<String>,
    pub namespace: String,
    pub connect_timeout_ms: u32,
    pub command_timeout_ms: u32,
    /// PEM: trusted CA, client certificate and key for `rediss://` URLs.
    pub tls_ca: Option<Buffer>,
    pub tls_cert: Option<Buffer>,
    pub tls_key: Option<Buffer>,
    /// Single-server mode: replicas that must acknowledge a grant (Redis WAIT).
    pub min_replications: Option<u32>,
    pub replication_timeout_ms: Option<u32>,
    /// Sentinel mode: sentinel URLs and the master's name; `urls[0]` then only carries
    /// credentials, database and scheme.
    pub sentinels: Option<Vec<String>>,
    pub sentinel_master: Option<String>,
    /// Redis Cluster: `urls` are seed nodes; keys are hash-tagged per lock.
    pub cluster: Option<bool>,
}

#[napi(object, object_from_js = false)]
pub struct WaitAcquireOutcome {
    pub success: bool,
    pub index: i64,
    pub ttl: i64,
    pub immediate: bool,
}

/// An error's stable code (`ERR_REDIS`, ...): napi-rs makes the status of an `Error<Code>` the
/// thrown JavaScript error's `code` property, so codes cross the boundary as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// What the binding's helpers return: a thrown error carries our code. (The `#[napi]` methods
/// spell it out as `Result<T, Code>`, the form napi-rs recognises.)
type Coded<T> = Result<T, Code>;

fn to_napi(err: LockError) -> Error<Code> {
    Error::new(Code(err.code()), err.to_string())
}

/// A failure of napi itself (creating a function or a value): a bug, ERR_INTERNAL.
fn napi_failed(err: Error) -> Error<Code> {
    Error::new(Code("ERR_INTERNAL"), err.reason.clone())
}

/// A failed asynchronous call, as the value its Promise resolves with (napi-rs rejects a
/// spawned future's Promise only with its fixed statuses, which would lose our code).
#[napi(object, object_from_js = false)]
pub struct NativeFailure {
    pub code: String,
    pub message: String,
}

impl From<LockError> for NativeFailure {
    fn from(err: LockError) -> Self {
        NativeFailure {
            code: err.code().to_owned(),
            message: err.to_string(),
        }
    }
}

/// What a caught panic (a bug) is reported as, instead of unwinding into Node.
fn panicked() -> LockError {
    LockError::Internal("redfour-native panicked; please report this".to_owned())
}

fn invalid(message: String) -> Error<Code> {
    to_napi(LockError::InvalidArg(message))
}

fn ttl_ms(value: f64, name: &str) -> Coded<u64> {
    if value.is_finite() && value.fract() == 0.0 && value >= 1.0 && value <= core::MAX_TTL_MS as f64
    {
        Ok(value as u64)
    } else {
        Err(invalid(format!(
            "{name} must be an integer between 1 and {} ms",
            core::MAX_TTL_MS
        )))
    }
}

fn wait_limit(wait_ms: f64) -> Coded<Option<Duration>> {
    if wait_ms == 0.0 {
        Ok(None)
    } else {
        Ok(Some(Duration::from_millis(ttl_ms(wait_ms, "waitTtl")?)))
    }
}

fn lock_index(value: f64) -> Coded<i64> {
    if value.is_finite() && value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_991.0 {
        Ok(value as i64)
    } else {
        Err(invalid("lock.index must be a safe integer".to_owned()))
    }
}

/// Runs an engine future as a Promise that resolves with its value or with a `NativeFailure`
/// (never rejects). A panic (a bug) becomes an ERR_INTERNAL failure instead of unwinding into
/// Node.
fn spawn<T, F>(env: &Env, work: F) -> Coded<PromiseRaw<'_, Either<T, NativeFailure>>>
where
    T: 'static + Send + ToNapiValue,
    F: 'static + Send + Future<Output = core::Result<T>>,
{
    // Combinators rather than an `async move` block, for the reason given at `NativeLock::run`.
    env.spawn_future(
        AssertUnwindSafe(work)
            .catch_unwind()
            .map(|outcome| match outcome {
                Ok(Ok(value)) => Ok(Either::A(value)),
                Ok(Err(err)) => Ok(Either::B(err.into())),
                Err(_) => Ok(Either::B(panicked().into())),
            }),
    )
    .map_err(napi_failed)
}

/// Completions travel back to JavaScript in batches through one weak threadsafe function per
/// Lock: each is five numbers `[call, tag, a, b, c]` (see `Done`), a failed call also adds its code and message to the strings.
/// One wake-up of the JS thread delivers everything finished since the last one, and no
/// per-call threadsafe function or Promise is created on the native side. (The facade keeps
/// the process alive while calls are pending; a weak function never does.)
type DoneCallback =
    ThreadsafeFunction<(), (), FnArgs<(Float64Array, Vec<String>)>, Status, false, true>;

/// Finished calls not yet taken by the JS thread: their numbers, their error messages, and the
/// places in the numbers where a lease's remaining time goes, with the instant the lease ends.
/// Those are filled in when the JS thread takes the batch, so a result delivered late (the
/// event loop was busy) reports what is left then, not what was left when the grant was made.
#[derive(Default)]
struct Batch {
    values: Vec<f64>,
    errors: Vec<String>,
    remaining: Vec<(usize, Instant)>,
}

impl Batch {
    /// Takes the batch for delivery, now.
    fn take(&mut self) -> (Vec<f64>, Vec<String>) {
        let Batch {
            mut values,
            errors,
            remaining,
        } = std::mem::take(self);
        let now = Instant::now();
        for (at, until) in remaining {
            values[at] = until.saturating_duration_since(now).as_millis() as f64;
        }
        (values, errors)
    }
}

struct Outbox {
    queue: Arc<std::sync::Mutex<Batch>>,
    notify: DoneCallback,
}

/// What a finished call reports. Tags and packing are mirrored in lib/calls.js (`settle`).
enum Done {
    Acquired(core::Acquired),
    WaitAcquired(core::WaitAcquired),
    Released(core::Released),
    Renewed(core::Renewed),
    Nothing,
    Failed(LockError),
    /// Not a call's end: a held lease (the "call" number is its watch token, see
    /// `acquire_lease`) was renewed, and now counts as lost at `until`.
    LeaseRenewed {
        index: i64,
        until: Instant,
    },
}

impl Outbox {
    /// Queues call `call`'s outcome. The first outcome into an empty queue schedules the wake of
    /// the JS thread, after the runtime's other ready tasks and its next look at the sockets
    /// (`yield_now`), so that the replies one read from Redis completes reach JavaScript in one
    /// batch, not one wake of the JS thread each.
    fn push(self: &Arc<Self>, call: u32, done: Done) {
        let call = f64::from(call);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut queue = self.queue.locked();
        let was_empty = queue.values.is_empty();
        let Batch {
            values,
            errors,
            remaining,
        } = &mut *queue;
        let record = match done {
            Done::Acquired(r) => [
                0.0,
                flag(r.success) + 2.0 * flag(r.replication_failed),
                r.index as f64,
                r.ttl as f64,
            ],
            Done::WaitAcquired(r) => {
                // A wait's grant may reach the caller well after Redis made it: its ttl is what
                // is left at delivery (counted from the attempt's send time), never more.
                if r.success {
                    remaining.push((values.len() + 4, r.valid_until));
                }
                [
                    1.0,
                    flag(r.success) + 2.0 * flag(r.immediate),
                    r.index as f64,
                    r.ttl as f64,
                ]
            }
            Done::Released(r) => [
                2.0,
                flag(r.success),
                r.index as f64,
                match r.result {
                    core::ReleaseResult::Released => 0.0,
                    core::ReleaseResult::Conflict => 1.0,
                    core::ReleaseResult::Expired => 2.0,
                },
            ],
            Done::Renewed(r) => [
                3.0,
                flag(r.success)
                    + 2.0
                        * match r.result {
                            core::RenewResult::Renewed => 0.0,
                            core::RenewResult::Missing => 1.0,
                            core::RenewResult::Conflict => 2.0,
                        },
                r.index as f64,
                r.ttl as f64,
            ],
            Done::Nothing => [4.0, 0.0, 0.0, 0.0],
            Done::LeaseRenewed { index, until } => {
                // Like a wait's ttl: what is left when the JS thread takes the batch.
                remaining.push((values.len() + 3, until));
                [5.0, index as f64, 0.0, 0.0]
            }
            Done::Failed(err) => {
                // The code and the message, as two strings: `errors[a]` and `errors[a + 1]`.
                errors.push(err.code().to_owned());
                errors.push(err.to_string());
                [9.0, (errors.len() - 2) as f64, 0.0, 0.0]
            }
        };
        values.push(call);
        values.extend_from_slice(&record);
        drop(queue);
        if was_empty {
            let outbox = self.clone();
            tokio::spawn(tokio::task::yield_now().map(move |()| {
                outbox
                    .notify
                    .call((), ThreadsafeFunctionCallMode::NonBlocking);
            }));
        }
    }
}

#[napi]
pub struct NativeLock {
    lock: core::Lock,
    outbox: Arc<Outbox>,
}

impl NativeLock {
    /// Runs `work` on the runtime and reports its outcome as call `call`. A panic (a bug) is
    /// reported as ERR_INTERNAL rather than unwinding into Node or leaving the call pending.
    ///
    /// Built from combinators, not an `async move` block: such a block would keep `work` as a
    /// captured variable next to the future awaiting it, and a waiter's task would hold its
    /// wait future twice (2.2 KB instead of 1.1 KB per waiting call, measured with heaptrack).
    ///
    fn run<F>(&self, call: u32, work: F)
    where
        F: 'static + Send + Future<Output = core::Result<Done>>,
    {
        let outbox = self.outbox.clone();
        napi::bindgen_prelude::spawn(AssertUnwindSafe(work).catch_unwind().map(move |outcome| {
            let done = match outcome {
                Ok(Ok(done)) => done,
                Ok(Err(err)) => Done::Failed(err),
                Err(_) => Done::Failed(panicked()),
            };
            outbox.push(call, done);
        }));
    }
}

#[napi]
impl NativeLock {
    /// `on_done(values, errors)` receives batches of finished calls.
    #[napi(constructor)]
    pub fn new(
        options: NativeLockOptions,
        #[napi(ts_arg_type = "(values: Float64Array, errors: string[]) => void")] on_done: Function<
            FnArgs<(Float64Array, Vec<String>)>,
            (),
        >,
    ) -> Result<Self, Code> {
        let timeouts = Timeouts {
            connect: Duration::from_millis(options.connect_timeout_ms.max(1).into()),
            command: Duration::from_millis(options.command_timeout_ms.max(1).into()),
        };
        let pem = |b: &Option<Buffer>| b.as_ref().map(|b| b.to_vec());
        let tls =
            (options.tls_ca.is_some() || options.tls_cert.is_some() || options.tls_key.is_some())
                .then(|| core::Tls {
                    ca: pem(&options.tls_ca),
                    cert: pem(&options.tls_cert),
                    key: pem(&options.tls_key),
                });
        let replication =
            options
                .min_replications
                .filter(|&n| n > 0)
                .map(|replicas| core::Replication {
                    replicas,
                    timeout: Duration::from_millis(
                        options.replication_timeout_ms.unwrap_or(500).into(),
                    ),
                });
        let sentinel = match (options.sentinels, options.sentinel_master) {
            (Some(sentinels), Some(master)) if !sentinels.is_empty() => {
                Some(core::Sentinel { sentinels, master })
            }
            _ => None,
        };
        let settings = core::Settings {
            connect: core::Connect {
                timeouts,
                tls,
                sentinel,
            },
            replication,
            cluster: options.cluster.unwrap_or(false),
        };
        let lock =
            core::Lock::open(&options.urls, &options.namespace, &settings).map_err(to_napi)?;
        let queue: Arc<std::sync::Mutex<Batch>> = Arc::default();
        let taken = queue.clone();
        let notify = on_done
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |_ctx| {
                let (values, errors) = taken.locked().take();
                Ok(FnArgs::from((Float64Array::new(values), errors)))
            })
            .map_err(napi_failed)?;
        Ok(NativeLock {
            lock,
            outbox: Arc::new(Outbox { queue, notify }),
        })
    }

    #[napi]
    pub fn acquire(&self, call: u32, id: String, ttl: f64) -> Result<(), Code> {
        let ttl = ttl_ms(ttl, "ttl")?;
        let lock = self.lock.clone();
        self.run(call, async move {
            lock.acquire(&id, ttl).await.map(Done::Acquired)
        });
        Ok(())
    }

    /// `wait_ms` 0 waits without limit; `abort` cancels the wait (ERR_ABORTED).
    #[napi]
    pub fn wait_acquire(
        &self,
        call: u32,
        id: String,
        ttl: f64,
        wait_ms: f64,
        abort: Option<&AbortHandle>,
    ) -> Result<(), Code> {
        let ttl = ttl_ms(ttl, "lockTtl")?;
        let wait = wait_limit(wait_ms)?;
        let abort = abort_token(abort);
        let lock = self.lock.clone();
        self.run(call, async move {
            let got = lock.wait_acquire_until(&id, ttl, wait, &abort).await?;
            Ok(Done::WaitAcquired(got))
        });
        Ok(())
    }

    #[napi]
    pub fn release(&self, call: u32, id: String, index: f64) -> Result<(), Code> {
        let index = lock_index(index)?;
        let lock = self.lock.clone();
        self.run(call, async move {
            lock.release(&id, index).await.map(Done::Released)
        });
        Ok(())
    }

    #[napi]
    pub fn renew(&self, call: u32, id: String, index: f64, ttl: f64) -> Result<(), Code> {
        let index = lock_index(index)?;
        let ttl = ttl_ms(ttl, "ttl")?;
        let lock = self.lock.clone();
        self.run(call, async move {
            lock.renew(&id, index, ttl).await.map(Done::Renewed)
        });
        Ok(())
    }

    /// Completes at once from the runtime: the benchmark measures the boundary with it.
    #[napi]
    pub fn noop(&self, call: u32) {
        self.run(call, async { Ok(Done::Nothing) });
    }

    /// Waits for lock `id` like `waitAcquire`, and on success keeps it alive from Rust timers
    /// (renewing every `renew_every_ms`) until the lease is stopped or lost. With a
    /// `renewals` token (not 0), each successful renewal is reported through `on_done` as a
    /// record `[token, 5, index, remainingMs, 0]` (lib/calls.js), for diagnostics.
    #[napi(ts_return_type = "Promise<NativeLease | NativeFailure>")]
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_lease<'env>(
        &self,
        env: &'env Env,
        id: String,
        ttl: f64,
        wait_ms: f64,
        renew_every_ms: f64,
        max_hold_ms: f64,
        abort: Option<&AbortHandle>,
        renewals: Option<u32>,
    ) -> Result<PromiseRaw<'env, Either<NativeLease, NativeFailure>>, Code> {
        let ttl = ttl_ms(ttl, "ttl")?;
        let wait = wait_limit(wait_ms)?;
        let mut options = LeaseOptions::new(Duration::from_millis(ttl));
        if renew_every_ms != 0.0 {
            options.renew_every = Duration::from_millis(ttl_ms(renew_every_ms, "renewEvery")?);
        }
        if max_hold_ms != 0.0 {
            options.max_hold = Some(Duration::from_millis(ttl_ms(max_hold_ms, "maxHold")?));
        }
        let abort = abort_token(abort);
        let lock = self.lock.clone();
        let watch = renewals
            .filter(|&token| token != 0)
            .map(|token| (token, self.outbox.clone()));
        spawn(env, async move {
            let got = lock.wait_acquire_until(&id, ttl, wait, &abort).await?;
            let lease = got.success.then(|| {
                Arc::new(Lease::start(
                    &lock,
                    &id,
                    got.index,
                    got.valid_until,
                    options,
                ))
            });
            if let (Some(lease), Some((token, outbox))) = (&lease, watch) {
                // Ends with the lease; holds only the lease's state, never the lease itself.
                let mut renewed = lease.renewals();
                let index = got.index;
                tokio::spawn(async move {
                    while let Some(until) = renewed.next().await {
                        outbox.push(token, Done::LeaseRenewed { index, until });
                    }
                });
            }
            Ok(NativeLease {
                outcome: WaitAcquireOutcome {
                    success: got.success,
                    index: got.index,
                    ttl: got.ttl,
                    immediate: got.immediate,
                },
                lease,
            })
        })
    }

    #[napi]
    pub fn close(&self) {
        self.lock.close();
    }
}

/// The token a wait watches: its AbortHandle's, or the shared never-cancelled one.
fn abort_token(abort: Option<&AbortHandle>) -> CancellationToken {
    abort.map_or_else(|| core::never_aborted().clone(), |a| a.token.clone())
}

/// Cancels the native wait it is passed to; the facade fires it from an AbortSignal.
#[napi]
pub struct AbortHandle {
    token: CancellationToken,
}

#[napi]
impl AbortHandle {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        AbortHandle {
            token: CancellationToken::new(),
        }
    }

    #[napi]
    pub fn abort(&self) {
        self.token.cancel();
    }
}

/// The result of `acquireLease`: the acquire outcome, and while held, the lease keeper.
#[napi]
pub struct NativeLease {
    outcome: WaitAcquireOutcome,
    lease: Option<Arc<Lease>>,
}

#[napi]
impl NativeLease {
    #[napi(getter)]
    pub fn success(&self) -> bool {
        self.outcome.success
    }

    #[napi(getter)]
    pub fn index(&self) -> i64 {
        self.outcome.index
    }

    #[napi(getter)]
    pub fn ttl(&self) -> i64 {
        self.outcome.ttl
    }

    #[napi(getter)]
    pub fn immediate(&self) -> bool {
        self.outcome.immediate
    }

    /// Resolves with why the lease was lost ('conflict', 'missing', 'unreachable', 'max-hold',
    /// 'closed'), or with null once it was stopped (or was never held).
    #[napi(ts_return_type = "Promise<string | null | NativeFailure>")]
    pub fn lost<'env>(
        &self,
        env: &'env Env,
    ) -> Result<PromiseRaw<'env, Either<Option<&'static str>, NativeFailure>>, Code> {
        let lease = self.lease.clone();
        spawn(env, async move {
            Ok(match lease {
                Some(lease) => lease.lost().await.map(|r| r.as_str()),
                None => None,
            })
        })
    }

    /// Milliseconds before the lease must be considered lost (0 when lost or stopped).
    #[napi]
    pub fn remaining_ms(&self) -> f64 {
        self.lease
            .as_ref()
            .map_or(0.0, |l| l.remaining().as_millis() as f64)
    }

    /// Stops renewing (does not release). Idempotent.
    #[napi]
    pub fn stop(&self) {
        if let Some(lease) = &self.lease {
            lease.stop();
        }
    }
}

/// One engine event as JavaScript gets it (lib/diagnostics.js turns it into a channel message).
/// `kind`: 'connected', 'lost', 'connect-failed', 'quorum-lost' or 'quorum-regained'.
#[napi(object, object_from_js = false)]
pub struct NativeEvent {
    pub kind: String,
    /// `host:port` (or a socket path), never credentials; in quorum events every node's.
    pub endpoint: String,
    /// Connection events: 'commands', 'subscriber' or 'replication'.
    pub connection: Option<String>,
    /// `connected`: not the connection's first opening.
    pub reconnect: Option<bool>,
    /// `lost`: why; `connect-failed`: the error.
    pub error: Option<String>,
    /// Quorum events: nodes that answered, and the majority needed.
    pub answered: Option<u32>,
    pub needed: Option<u32>,
}

impl NativeEvent {
    fn new(kind: &str, endpoint: String) -> Self {
        NativeEvent {
            kind: kind.to_owned(),
            endpoint,
            connection: None,
            reconnect: None,
            error: None,
            answered: None,
            needed: None,
        }
    }

    fn connection(
        kind: &str,
        endpoint: String,
        connection: core::Connection,
        error: Option<String>,
    ) -> Self {
        NativeEvent {
            connection: Some(connection.as_str().to_owned()),
            error,
            ..NativeEvent::new(kind, endpoint)
        }
    }

    fn quorum(kind: &str, endpoints: Vec<String>, answered: usize, needed: usize) -> Self {
        let count = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
        NativeEvent {
            answered: count(answered),
            needed: count(needed),
            ..NativeEvent::new(kind, endpoints.join(", "))
        }
    }
}

impl From<core::Event> for NativeEvent {
    fn from(event: core::Event) -> Self {
        use core::Event;
        match event {
            Event::Connected {
                endpoint,
                connection,
                reconnect,
            } => NativeEvent {
                reconnect: Some(reconnect),
                ..NativeEvent::connection("connected", endpoint, connection, None)
            },
            Event::Lost {
                endpoint,
                connection,
                reason,
            } => NativeEvent::connection("lost", endpoint, connection, Some(reason)),
            Event::ConnectFailed {
                endpoint,
                connection,
                error,
            } => NativeEvent::connection("connect-failed", endpoint, connection, Some(error)),
            Event::QuorumLost {
                endpoints,
                answered,
                needed,
            } => NativeEvent::quorum("quorum-lost", endpoints, answered, needed),
            Event::QuorumRegained {
                endpoints,
                answered,
                needed,
            } => NativeEvent::quorum("quorum-regained", endpoints, answered, needed),
        }
    }
}

type EventCallback = ThreadsafeFunction<(), (), Vec<NativeEvent>, Status, false, true>;

/// Where engine events go in one JavaScript environment (the main thread, or a worker that
/// loaded the addon): queued here, delivered in batches by one weak threadsafe function, so
/// they never keep the process alive and never run JavaScript on the runtime thread.
struct EventSink {
    queue: Arc<std::sync::Mutex<Vec<core::Event>>>,
    notify: EventCallback,
}

/// The environments listening. Engine events are process-wide (connections are shared by
/// every Lock in the process, workers included), so each environment gets every event.
static EVENT_SINKS: std::sync::Mutex<Vec<Arc<EventSink>>> = std::sync::Mutex::new(Vec::new());

/// The engine's hook (core::events): queues `event` for every listening environment. Runs on
/// the runtime thread; it only locks, pushes and, into an empty queue, schedules a wake-up.
fn deliver_event(event: core::Event) {
    let sinks = EVENT_SINKS.locked().clone();
    for sink in &sinks {
        let mut queue = sink.queue.locked();
        let was_empty = queue.is_empty();
        queue.push(event.clone());
        drop(queue);
        if was_empty
            && sink
                .notify
                .call((), ThreadsafeFunctionCallMode::NonBlocking)
                == Status::Closing
        {
            // Its environment ended (a worker exited): stop queueing for it.
            EVENT_SINKS
                .locked()
                .retain(|other| !Arc::ptr_eq(other, sink));
        }
    }
}

/// Starts delivering the engine's process-wide events (connections, quorum) to `on_events`,
/// called with arrays of events on this environment's JavaScript thread. Once per
/// environment (lib/diagnostics.js).
// (Only JavaScript calls it: unused in the crate's own test build.)
#[cfg_attr(test, allow(dead_code))]
#[napi]
pub fn listen_events(
    #[napi(ts_arg_type = "(events: NativeEvent[]) => void")] on_events: Function<
        Vec<NativeEvent>,
        (),
    >,
) -> Result<()> {
    let queue: Arc<std::sync::Mutex<Vec<core::Event>>> = Arc::default();
    let taken = queue.clone();
    let notify = on_events
        .build_threadsafe_function::<()>()
        .weak::<true>()
        .callee_handled::<false>()
        .build_callback(move |_ctx| {
            let events = std::mem::take(&mut *taken.locked());
            Ok(events
                .into_iter()
                .map(NativeEvent::from)
                .collect::<Vec<_>>())
        })?;
    EVENT_SINKS
        .locked()
        .push(Arc::new(EventSink { queue, notify }));
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| core::events::set_hook(Some(Arc::new(deliver_event))));
    Ok(())
}

/// One of the engine's scripts as lib/plain-calls.js sends it.
#[napi(object, object_from_js = false)]
pub struct NativeScript {
    pub source: String,
    /// Its SHA1, for EVALSHA.
    pub sha: String,
    /// The tag the batch script runs it under ('' for the batch script itself).
    pub tag: String,
}

impl NativeScript {
    fn of(script: &core::scripts::StaticScript) -> Self {
        NativeScript {
            source: script.source().to_owned(),
            sha: script.hash().to_owned(),
            tag: core::batch::tag_of(script).unwrap_or("").to_owned(),
        }
    }
}

/// The scripts a plain call runs and the batch script's layout, for the facade's own command
/// connection (lib/plain-calls.js): one copy of every script and of the batching rules, here in
/// the core (`core::scripts`, `core::batch`).
#[napi(object, object_from_js = false)]
pub struct ScriptSources {
    pub acquire: NativeScript,
    pub release: NativeScript,
    pub renew: NativeScript,
    /// Several calls of the three in one script call (`core::batch::BATCH`).
    pub batch: NativeScript,
    /// At most this many calls in one batch.
    pub max_batch: u32,
    /// Keys and arguments per call in a batch (fewer are padded: keys with the first key,
    /// arguments with '').
    pub keys_per_call: u32,
    pub args_per_call: u32,
}

#[cfg_attr(test, allow(dead_code))]
#[napi]
pub fn script_sources() -> ScriptSources {
    use crate::core::batch::{ARGS_PER_CALL, BATCH, KEYS_PER_CALL, MAX_BATCH};
    use crate::core::scripts::{ACQUIRE_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT};
    ScriptSources {
        acquire: NativeScript::of(&ACQUIRE_SCRIPT),
        release: NativeScript::of(&RELEASE_SCRIPT),
        renew: NativeScript::of(&RENEW_SCRIPT),
        batch: NativeScript::of(&BATCH),
        max_batch: MAX_BATCH as u32,
        keys_per_call: KEYS_PER_CALL as u32,
        args_per_call: ARGS_PER_CALL as u32,
    }
}
