// The package seen from an ES module (Node's CommonJS interop: default = module.exports).
import Lock, { Lock as Named, codes, isLockError } from 'redfour-native';
import type { RenewResult } from 'redfour-native';

const lock = new Lock({ redis: 'redis://127.0.0.1:6379', namespace: 'esm' });
const same: Named = lock;
const held = await lock.waitAcquireLock('job', 10_000, 0);
if (held.success) {
  const renewed: RenewResult<string> = await lock.renewLock(held, 10_000);
  void renewed;
  await lock.releaseLock(held);
}
try {
  await lock.acquireLock('job', 0);
} catch (err) {
  if (isLockError(err) && err.code === codes.ERR_INVALID_ARG) void err.message;
}
await lock.close();
void same;
