//! Every waiter is one of these futures: 10,000 waiters are 10,000 of them. Rare, large paths
//! (opening connections, quorum and cluster modes, sentinel lookups) are boxed so they do not
//! set the size of every waiter. This guards against that regressing (it once was 4 KB).

mod common;

use redfour_native::core::Timeouts;
use std::time::Duration;

#[test]
fn a_waiting_call_stays_small() {
    let lock = common::open_lock(&["redis://127.0.0.1:1/"], "n", Timeouts::default()).unwrap();
    let wait = lock.wait_acquire("k", 1_000, Some(Duration::from_secs(1)));
    let acquire = lock.acquire("k", 1_000);
    let release = lock.release("k", 1);
    let sizes = (
        std::mem::size_of_val(&wait),
        std::mem::size_of_val(&acquire),
        std::mem::size_of_val(&release),
    );
    assert!(sizes.0 <= 1_536, "wait_acquire future: {sizes:?}");
    assert!(
        sizes.1 <= 1_536 && sizes.2 <= 1_536,
        "acquire/release futures: {sizes:?}"
    );
}
