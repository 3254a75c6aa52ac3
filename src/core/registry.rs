//! Connections are shared by every Lock in the process that names the same server with the same
//! settings: a registry hands out the live one, or makes it, and forgets it once unused.

use crate::core::error::Result;
use crate::core::sync::MutexExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Values shared process-wide by key while somebody uses them (weak entries).
pub(crate) struct Registry<K, V>(OnceLock<Mutex<HashMap<K, Weak<V>>>>);

impl<K: std::hash::Hash + Eq, V> Registry<K, V> {
    pub(crate) const fn new() -> Self {
        Registry(OnceLock::new())
    }

    pub(crate) fn get_or_create(
        &self,
        key: K,
        make: impl FnOnce() -> Result<Arc<V>>,
    ) -> Result<Arc<V>> {
        let mut entries = self.0.get_or_init(Default::default).locked();
        if let Some(value) = entries.get(&key).and_then(Weak::upgrade) {
            return Ok(value);
        }
        let value = make()?;
        entries.retain(|_, weak| weak.strong_count() > 0);
        entries.insert(key, Arc::downgrade(&value));
        Ok(value)
    }
}
