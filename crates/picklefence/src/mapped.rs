//! Large files are scanned through a read-only memory map. Another process may truncate the
//! file meanwhile; reading a mapped page past its new end then raises SIGBUS, which kills the
//! process (every other file of a scan lost, or the Python process that called the scanner).
//! While a map is registered here ([`Watched`]), a SIGBUS handler covers its pages: it maps a
//! page of zeros over the faulting page, marks the map, and lets the read go on. The scan of a
//! marked map is then discarded and reported as an error of that file. A fault anywhere else
//! goes to the handler that was installed before (Rust's own, Python's faulthandler, or the
//! default action), as if this one were not there.

#![allow(unsafe_code)] // Signal handling and remapping need libc; every block says why it holds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

/// Maps watched at once; a scan that finds none free goes on unwatched (as it did before there
/// was a watch). Far above any scan's thread count.
const SLOTS: usize = 256;

/// One watched map: its address range and whether a read past the file's end was made safe.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // Only the array's initialiser.
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};
static SLOTS_IN_USE: [Slot; SLOTS] = [FREE; SLOTS];
/// Serialises taking and freeing slots (never taken by the handler).
static CLAIM: Mutex<()> = Mutex::new(());
static INSTALL: Once = Once::new();
/// The SIGBUS action that was in place before ours, for faults outside the watched maps.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// A map being scanned, watched for truncation until dropped.
pub(crate) struct Watched {
    slot: Option<&'static Slot>,
}

impl Watched {
    /// Starts watching `data` (the bytes of a map). Without a free slot or a handler, the map is
    /// read unwatched.
    pub(crate) fn new(data: &[u8]) -> Self {
        if data.is_empty() || !install() {
            return Watched { slot: None };
        }
        let Ok(_claim) = CLAIM.lock() else {
            return Watched { slot: None };
        };
        let Some(slot) = SLOTS_IN_USE.iter().find(|s| s.start.load(Ordering::Acquire) == 0) else {
            return Watched { slot: None };
        };
        slot.faulted.store(false, Ordering::Release);
        slot.len.store(data.len(), Ordering::Release);
        // Set last: the handler matches a slot by its start.
        slot.start.store(data.as_ptr() as usize, Ordering::Release);
        Watched { slot: Some(slot) }
    }

    /// Whether a read fell past the file's end (the file shrank during the scan).
    pub(crate) fn truncated(&self) -> bool {
        self.slot.is_some_and(|s| s.faulted.load(Ordering::Acquire))
    }

    /// Drops the whole pages of `part` from the process's resident set, when `part` lies inside
    /// this map (anything else is left alone). For bytes read once and not needed again: a later
    /// read faults them in again from the file.
    pub(crate) fn release(&self, part: &[u8]) {
        let Some(slot) = self.slot else { return };
        let (start, len) = (
            slot.start.load(Ordering::Acquire),
            slot.len.load(Ordering::Acquire),
        );
        let page = PAGE_SIZE.load(Ordering::Acquire);
        let from = part.as_ptr() as usize;
        let Some(to) = from.checked_add(part.len()) else {
            return;
        };
        if page == 0 || from < start || start.checked_add(len).is_none_or(|end| to > end) {
            return;
        }
        let first = from.div_ceil(page).saturating_mul(page);
        let last = to / page * page;
        if last <= first {
            return;
        }
        // SAFETY: [first, last) is whole pages inside this read-only, private file mapping (or
        // the zero pages the SIGBUS handler put over a part the file lost), which stays mapped
        // while `self` lives. MADV_DONTNEED only takes them out of the resident set; the next
        // read maps the same file contents (or zeros) in again, so no reference sees a change.
        unsafe {
            libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let _claim = CLAIM.lock();
            slot.start.store(0, Ordering::Release);
            slot.len.store(0, Ordering::Release);
        }
    }
}

/// Installs the handler once; whether it is in place.
fn install() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let Ok(page) = usize::try_from(page) else {
            return;
        };
        if !page.is_power_of_two() {
            return;
        }
        PAGE_SIZE.store(page, Ordering::Release);
        // SAFETY: a zeroed sigaction is a valid value; the handler has the SA_SIGINFO signature,
        // runs on the alternate stack when one is set (Rust's own handler needs that), and
        // calls only async-signal-safe functions (mmap, sigaction) and atomics.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                let _ = PREVIOUS.set(previous);
            }
        }
    });
    PREVIOUS.get().is_some()
}

extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let address = unsafe { info.as_ref().map_or(0, |i| i.si_addr() as usize) };
    let page = PAGE_SIZE.load(Ordering::Acquire);
    for slot in &SLOTS_IN_USE {
        let start = slot.start.load(Ordering::Acquire);
        if start == 0 || address < start || address - start >= slot.len.load(Ordering::Acquire) {
            continue;
        }
        let at = address & !(page - 1);
        // SAFETY: the page lies in a read-only map this process owns and scans; replacing it
        // with zeros changes what the scanner reads, never memory anything else uses.
        let zeros = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if zeros != libc::MAP_FAILED {
            slot.faulted.store(true, Ordering::Release);
            return;
        }
    }
    pass_on(signal, info, context);
}

/// A fault that is not ours: what the previous action would have done.
fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(previous) = PREVIOUS.get() else {
        return;
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: restoring the previous action; the faulting read runs again and gets it.
        unsafe {
            libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut());
        }
        return;
    }
    // SAFETY: the previous handler was installed for SIGBUS with these flags, so it has the
    // signature they say; it is called as the kernel would have called it.
    unsafe {
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let call: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            call(signal, info, context);
        } else {
            let call: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            call(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // Test code.

    use super::*;
    use std::io::Write;

    #[test]
    fn a_read_past_the_end_of_a_truncated_map_reads_zeros_and_is_noted() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 1 << 20]).unwrap();
        // SAFETY: the test truncates the file on purpose; the watch makes the read safe.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let watched = Watched::new(&map);
        assert!(!watched.truncated());
        assert_eq!(std::hint::black_box(&map[..])[1000], 7);
        file.set_len(4096).unwrap();
        let last = std::hint::black_box(&map[..])[(1 << 20) - 1];
        assert_eq!(last, 0);
        assert!(watched.truncated());
        assert_eq!(map[10], 7, "pages before the new end are the file's");
        drop(watched);
        drop(map);
        // Another map reuses the slot, unmarked.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        assert!(!Watched::new(&map).truncated());
    }
}
