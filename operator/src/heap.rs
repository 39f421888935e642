//! Gives freed heap memory back to the system.
//!
//! glibc's malloc returns memory only from the top of its heap. Converging a thousand services
//! leaves long-lived cache entries spread through pages that also held short-lived API responses,
//! so the heap kept ~17 MB it no longer used (RSS 50 MiB for 12 MB live). `malloc_trim` releases
//! every free page wherever it is; once every few seconds it costs well under a millisecond.

use std::time::Duration;

/// How often to trim.
const EVERY: Duration = Duration::from_secs(10);

/// Trims the heap every [`EVERY`] until the runtime shuts down (glibc only; elsewhere a no-op).
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}
