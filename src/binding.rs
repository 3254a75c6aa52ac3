//! The Node binding: converts JavaScript values to engine calls and engine results and errors
//! back. No lock logic lives here. Every method returns a Promise; the JS facade in index.js adds
//! callbacks, so no user code ever runs on a Rust stack.

use crate::core::{self, Lease, LeaseOptions, LockError, Timeouts};
use futures_util::FutureExt;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[napi_derive::module_init]
fn init() {
    // The addon's own runtime, sized for a lock client: the work is I/O bound and small.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 2))
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("redfour-native")
        .enable_all()
        .build();
    if let Ok(runtime) = runtime {
        create_custom_tokio_runtime(runtime);
    }
}

#[napi(object)]
pub struct NativeLockOptions {
    pub url: String,
    pub namespace: String,
    pub connect_timeout_ms: u32,
    pub command_timeout_ms: u32,
}

#[napi(object, object_from_js = false)]
pub struct AcquireOutcome {
    pub success: bool,
    pub index: i64,
    pub ttl: i64,
}

#[napi(object, object_from_js = false)]
pub struct WaitAcquireOutcome {
    pub success: bool,
    pub index: i64,
    pub ttl: i64,
    pub immediate: bool,
}

#[napi(object, object_from_js = false)]
pub struct ReleaseOutcome {
    pub success: bool,
    pub result: &'static str,
    pub index: i64,
}

#[napi(object, object_from_js = false)]
pub struct RenewOutcome {
    pub success: bool,
    pub result: &'static str,
    pub index: i64,
    pub ttl: i64,
}

/// The JS facade reads the code from the `[CODE]` prefix: async rejections from napi carry a
/// fixed status, not our code.
fn to_napi(err: LockError) -> Error {
    Error::new(Status::GenericFailure, format!("[{}] {}", err.code(), err))
}

fn invalid(message: String) -> Error {
    to_napi(LockError::InvalidArg(message))
}

fn ttl_ms(value: f64, name: &str) -> Result<u64> {
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

fn wait_limit(wait_ms: f64) -> Result<Option<Duration>> {
    if wait_ms == 0.0 {
        Ok(None)
    } else {
        Ok(Some(Duration::from_millis(ttl_ms(wait_ms, "waitTtl")?)))
    }
}

fn lock_index(value: f64) -> Result<i64> {
    if value.is_finite() && value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_991.0 {
        Ok(value as i64)
    } else {
        Err(invalid("lock.index must be a safe integer".to_owned()))
    }
}

/// Runs an engine future as a Promise. A panic (a bug) becomes an ERR_INTERNAL rejection instead
/// of unwinding into Node.
fn spawn<T, F>(env: &Env, work: F) -> Result<PromiseRaw<'_, T>>
where
    T: 'static + Send + ToNapiValue,
    F: 'static + Send + Future<Output = core::Result<T>>,
{
    env.spawn_future(async move {
        match AssertUnwindSafe(work).catch_unwind().await {
            Ok(result) => result.map_err(to_napi),
            Err(_) => Err(Error::new(
                Status::GenericFailure,
                "[ERR_INTERNAL] redfour-native panicked; please report this".to_owned(),
            )),
        }
    })
}

#[napi]
pub struct NativeLock {
    lock: core::Lock,
}

#[napi]
impl NativeLock {
    #[napi(constructor)]
    pub fn new(options: NativeLockOptions) -> Result<Self> {
        let timeouts = Timeouts {
            connect: Duration::from_millis(options.connect_timeout_ms.max(1).into()),
            command: Duration::from_millis(options.command_timeout_ms.max(1).into()),
        };
        let lock = core::Lock::new(&options.url, &options.namespace, timeouts).map_err(to_napi)?;
        Ok(NativeLock { lock })
    }

    #[napi(ts_return_type = "Promise<AcquireOutcome>")]
    pub fn acquire<'env>(
        &self,
        env: &'env Env,
        id: String,
        ttl: f64,
    ) -> Result<PromiseRaw<'env, AcquireOutcome>> {
        let ttl = ttl_ms(ttl, "ttl")?;
        let lock = self.lock.clone();
        spawn(env, async move {
            let got = lock.acquire(&id, ttl).await?;
            Ok(AcquireOutcome {
                success: got.success,
                index: got.index,
                ttl: got.ttl,
            })
        })
    }

    /// `wait_ms` 0 waits without limit; `abort` cancels the wait (ERR_ABORTED).
    #[napi(ts_return_type = "Promise<WaitAcquireOutcome>")]
    pub fn wait_acquire<'env>(
        &self,
        env: &'env Env,
        id: String,
        ttl: f64,
        wait_ms: f64,
        abort: Option<&AbortHandle>,
    ) -> Result<PromiseRaw<'env, WaitAcquireOutcome>> {
        let ttl = ttl_ms(ttl, "lockTtl")?;
        let wait = wait_limit(wait_ms)?;
        let abort = abort.map_or_else(CancellationToken::new, |a| a.token.clone());
        let lock = self.lock.clone();
        spawn(env, async move {
            let got = lock.wait_acquire_until(&id, ttl, wait, &abort).await?;
            Ok(WaitAcquireOutcome {
                success: got.success,
                index: got.index,
                ttl: got.ttl,
                immediate: got.immediate,
            })
        })
    }

    /// Waits for lock `id` like `waitAcquire`, and on success keeps it alive from Rust timers
    /// (renewing every `renew_every_ms`) until the lease is stopped or lost.
    #[napi(ts_return_type = "Promise<NativeLease>")]
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
    ) -> Result<PromiseRaw<'env, NativeLease>> {
        let ttl = ttl_ms(ttl, "ttl")?;
        let wait = wait_limit(wait_ms)?;
        let mut options = LeaseOptions::new(Duration::from_millis(ttl));
        if renew_every_ms != 0.0 {
            options.renew_every = Duration::from_millis(ttl_ms(renew_every_ms, "renewEvery")?);
        }
        if max_hold_ms != 0.0 {
            options.max_hold = Some(Duration::from_millis(ttl_ms(max_hold_ms, "maxHold")?));
        }
        let abort = abort.map_or_else(CancellationToken::new, |a| a.token.clone());
        let lock = self.lock.clone();
        spawn(env, async move {
            let got = lock.wait_acquire_until(&id, ttl, wait, &abort).await?;
            let lease = got
                .success
                .then(|| Arc::new(Lease::start(&lock, &id, got.index, got.sent_at, options)));
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

    #[napi(ts_return_type = "Promise<ReleaseOutcome>")]
    pub fn release<'env>(
        &self,
        env: &'env Env,
        id: String,
        index: f64,
    ) -> Result<PromiseRaw<'env, ReleaseOutcome>> {
        let index = lock_index(index)?;
        let lock = self.lock.clone();
        spawn(env, async move {
            let done = lock.release(&id, index).await?;
            Ok(ReleaseOutcome {
                success: done.success,
                result: done.result.as_str(),
                index: done.index,
            })
        })
    }

    #[napi(ts_return_type = "Promise<RenewOutcome>")]
    pub fn renew<'env>(
        &self,
        env: &'env Env,
        id: String,
        index: f64,
        ttl: f64,
    ) -> Result<PromiseRaw<'env, RenewOutcome>> {
        let index = lock_index(index)?;
        let ttl = ttl_ms(ttl, "ttl")?;
        let lock = self.lock.clone();
        spawn(env, async move {
            let done = lock.renew(&id, index, ttl).await?;
            Ok(RenewOutcome {
                success: done.success,
                result: done.result.as_str(),
                index: done.index,
                ttl: done.ttl,
            })
        })
    }

    #[napi]
    pub fn close(&self) {
        self.lock.close();
    }
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
    #[napi(ts_return_type = "Promise<string | null>")]
    pub fn lost<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Option<&'static str>>> {
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

/// A Promise that resolves at once from the runtime: the benchmark measures the cost of the
/// native boundary (JS -> tokio -> JS) with it.
#[napi]
pub fn noop_async(env: &Env) -> Result<PromiseRaw<'_, u32>> {
    spawn(env, async move { Ok(0) })
}
