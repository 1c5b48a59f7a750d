// hitcore: a provided buffer ring (`IORING_REGISTER_PBUF_RING`) for multishot `recv` (see
// HITCORE-PATCHES.md, patch 10). It owns the ring's memory (entries and buffers), the tail it
// publishes to the kernel, and the lease that gives a buffer back once its bytes have been copied
// out. It must not submit anything: the reactor arms the receives that pick from it.

use std::{
    alloc::{alloc_zeroed, dealloc, Layout},
    cell::Cell,
    io,
    os::unix::io::RawFd,
    ptr::NonNull,
    rc::Rc,
    sync::atomic::{AtomicU16, AtomicU32, Ordering},
};

/// `io_uring_register` opcodes and flags not in this copy's `uring_sys` (Linux 5.19 / 6.0).
const IORING_REGISTER_PBUF_RING: libc::c_uint = 22;
/// `sqe.ioprio` flag of `IORING_OP_RECV`: keep the receive armed across completions (6.0+).
pub(crate) const IORING_RECV_MULTISHOT: u16 = 1 << 1;
/// `cqe.flags`: the upper 16 bits name the buffer the completion's bytes are in.
pub(crate) const IORING_CQE_F_BUFFER: u32 = 1 << 0;
/// `cqe.flags`: the request stays armed; more completions follow.
pub(crate) const IORING_CQE_F_MORE: u32 = 1 << 1;
const IORING_CQE_BUFFER_SHIFT: u32 = 16;

/// Buffers per executor and their size, by default 256 x 4 KiB (1 MiB, allocated on the first
/// multishot receive, never per connection; pages are touched as the kernel fills buffers). A
/// request larger than one buffer spans several completions. [`set_size`] changes both for rings
/// registered after it: a receive that finds no free buffer ends (`ENOBUFS`) and costs a `recv`
/// and a new receive, so a process expecting thousands of busy connections wants more.
static RING_BUFFERS: AtomicU16 = AtomicU16::new(256);
static BUFFER_SIZE: AtomicU32 = AtomicU32::new(4096);

/// Sets the buffer count (a power of two, at most 32,768) and size (bytes, at least 1) of the
/// buffer rings registered from now on, in this process.
pub(crate) fn set_size(count: u16, size: u32) {
    assert!(count.is_power_of_two() && count <= 1 << 15 && size > 0, "buffer ring {count} x {size}");
    RING_BUFFERS.store(count, Ordering::Relaxed);
    BUFFER_SIZE.store(size, Ordering::Relaxed);
}

/// The buffer count and size [`set_size`] chose (or the defaults).
pub(crate) fn size() -> (u16, u32) {
    (RING_BUFFERS.load(Ordering::Relaxed), BUFFER_SIZE.load(Ordering::Relaxed))
}
/// The buffer group id the receives name. One ring per executor, so one group.
pub(crate) const BUFFER_GROUP: u16 = 0x6863; // "hc"

/// `struct io_uring_buf`. The ring's tail is the `resv` field of entry 0 (offset 14).
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// `struct io_uring_buf_reg`.
#[repr(C)]
struct BufReg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

/// A buffer ring: `count` entries (a power of two) and as many buffers of `size` bytes.
pub(crate) struct BufRing {
    entries: NonNull<BufEntry>,
    entries_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    count: u16,
    size: u32,
    bgid: u16,
    /// The next entry to fill, as the kernel reads it from entry 0's `resv`.
    tail: Cell<u16>,
    /// Buffers given to the kernel and not yet returned in a completion.
    with_kernel: Cell<u16>,
    registered: Cell<bool>,
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing")
            .field("count", &self.count)
            .field("size", &self.size)
            .field("tail", &self.tail.get())
            .field("with_kernel", &self.with_kernel.get())
            .finish()
    }
}

impl BufRing {
    /// Allocates the ring and puts every buffer in it; registers nothing yet.
    pub(crate) fn new(count: u16, size: u32, bgid: u16) -> BufRing {
        assert!(count.is_power_of_two() && count <= 1 << 15 && size > 0);
        let entries_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufEntry>(), 4096)
                .unwrap();
        let bufs_layout = Layout::from_size_align(count as usize * size as usize, 64).unwrap();
        // SAFETY: both layouts have a non-zero size.
        let (entries, bufs) = unsafe { (alloc_zeroed(entries_layout), alloc_zeroed(bufs_layout)) };
        let ring = BufRing {
            entries: NonNull::new(entries as *mut BufEntry).expect("buffer ring allocation"),
            entries_layout,
            bufs: NonNull::new(bufs).expect("buffer ring allocation"),
            bufs_layout,
            count,
            size,
            bgid,
            tail: Cell::new(0),
            with_kernel: Cell::new(0),
            registered: Cell::new(false),
        };
        for bid in 0..count {
            ring.give(bid);
        }
        ring
    }

    /// Registers the ring with `ring_fd`'s io_uring. Kernels before 5.19 refuse (`EINVAL`).
    pub(crate) fn register(&self, ring_fd: RawFd) -> io::Result<()> {
        let reg = BufReg {
            ring_addr: self.entries.as_ptr() as u64,
            ring_entries: self.count as u32,
            bgid: self.bgid,
            flags: 0,
            resv: [0; 3],
        };
        // SAFETY: `reg` describes memory this ring owns for as long as it is registered (see
        // Drop).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring_fd,
                IORING_REGISTER_PBUF_RING,
                &reg as *const BufReg,
                1,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        self.registered.set(true);
        Ok(())
    }

    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Buffers the kernel can fill now.
    pub(crate) fn available(&self) -> u16 {
        self.with_kernel.get()
    }

    /// Publishes buffer `bid` at the tail, whole and empty again.
    fn give(&self, bid: u16) {
        debug_assert!(bid < self.count);
        let tail = self.tail.get();
        let index = (tail & (self.count - 1)) as usize;
        // SAFETY: index < count; fields are written one by one so that entry 0's `resv`, which is
        // the tail the kernel reads, is never overwritten here.
        unsafe {
            let entry = self.entries.as_ptr().add(index);
            std::ptr::addr_of_mut!((*entry).addr)
                .write(self.bufs.as_ptr().add(bid as usize * self.size as usize) as u64);
            std::ptr::addr_of_mut!((*entry).len).write(self.size);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        self.with_kernel.set(self.with_kernel.get() + 1);
        // SAFETY: offset 14 of entry 0 is the u16 tail; the release store orders the entry's
        // fields before it, as liburing's io_uring_buf_ring_advance does.
        unsafe {
            let shared = (self.entries.as_ptr() as *mut u8).add(14) as *const AtomicU16;
            (*shared).store(tail, Ordering::Release);
        }
    }

    /// The buffer a completion with `cqe_flags` and result `len` filled, leased until dropped.
    /// `None` if the completion carries no buffer.
    pub(crate) fn lease(self: &Rc<Self>, cqe_flags: u32, len: usize) -> Option<BufLease> {
        if cqe_flags & IORING_CQE_F_BUFFER == 0 {
            return None;
        }
        let bid = (cqe_flags >> IORING_CQE_BUFFER_SHIFT) as u16;
        assert!(bid < self.count && len <= self.size as usize);
        self.with_kernel.set(self.with_kernel.get() - 1);
        Some(BufLease {
            ring: self.clone(),
            bid,
            start: 0,
            end: len as u32,
        })
    }

    #[cfg(test)]
    fn published(&self, index: u16) -> (u64, u32, u16) {
        // SAFETY: index is masked into the ring.
        unsafe {
            let e = self
                .entries
                .as_ptr()
                .add((index & (self.count - 1)) as usize);
            ((*e).addr, (*e).len, (*e).bid)
        }
    }

    #[cfg(test)]
    fn shared_tail(&self) -> u16 {
        // SAFETY: as in `give`.
        unsafe {
            (*((self.entries.as_ptr() as *mut u8).add(14) as *const AtomicU16))
                .load(Ordering::Acquire)
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered.get() {
            // The kernel may still hold this memory: the ring is dropped with its executor, and
            // the io_uring it was registered with tears its requests down after `close` returns.
            // Leaked once per executor rather than risk a write into freed memory.
            return;
        }
        // SAFETY: allocated in `new` with these layouts, never registered.
        unsafe {
            dealloc(self.entries.as_ptr() as *mut u8, self.entries_layout);
            dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

/// Bytes a multishot receive put in one buffer of the ring. The buffer goes back to the kernel
/// when the lease is dropped: after the reader copied the bytes out, or with its connection.
pub(crate) struct BufLease {
    ring: Rc<BufRing>,
    bid: u16,
    start: u32,
    end: u32,
}

impl std::fmt::Debug for BufLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufLease({}, {}..{})", self.bid, self.start, self.end)
    }
}

impl BufLease {
    /// Copies as much as fits into `out`; returns how much.
    pub(crate) fn copy_to(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min((self.end - self.start) as usize);
        // SAFETY: bid < count and start + n <= end <= size: inside this buffer, which the kernel
        // does not write while it is leased (it is not in the ring).
        let src = unsafe {
            std::slice::from_raw_parts(
                self.ring
                    .bufs
                    .as_ptr()
                    .add(self.bid as usize * self.ring.size as usize + self.start as usize),
                n,
            )
        };
        out[..n].copy_from_slice(src);
        self.start += n as u32;
        n
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl Drop for BufLease {
    fn drop(&mut self) {
        self.ring.give(self.bid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_buffer_starts_in_the_ring() {
        let ring = BufRing::new(8, 64, 1);
        assert_eq!(ring.available(), 8);
        assert_eq!(ring.shared_tail(), 8);
        for i in 0..8 {
            let (addr, len, bid) = ring.published(i);
            assert_eq!(bid, i);
            assert_eq!(len, 64);
            assert_eq!(addr, ring.bufs.as_ptr() as u64 + 64 * i as u64);
        }
    }

    #[test]
    fn a_lease_copies_out_in_parts_and_gives_the_buffer_back_on_drop() {
        let ring = Rc::new(BufRing::new(4, 16, 1));
        // The kernel filled buffer 2 with 10 bytes.
        // SAFETY: buffer 2 is bytes 32..48 of the ring's 64.
        unsafe {
            std::ptr::copy_nonoverlapping(b"GET / HTTP".as_ptr(), ring.bufs.as_ptr().add(32), 10)
        };
        let mut lease = ring.lease(IORING_CQE_F_BUFFER | (2 << 16), 10).unwrap();
        assert_eq!(ring.available(), 3);
        let mut out = [0u8; 4];
        assert_eq!(lease.copy_to(&mut out), 4);
        assert_eq!(&out, b"GET ");
        let mut rest = [0u8; 16];
        assert_eq!(lease.copy_to(&mut rest), 6);
        assert_eq!(&rest[..6], b"/ HTTP");
        assert!(lease.is_empty());
        drop(lease);
        assert_eq!(ring.available(), 4);
        assert_eq!(ring.shared_tail(), 5);
        assert_eq!(
            ring.published(4).2,
            2,
            "buffer 2 is published at the tail again"
        );
    }

    #[test]
    fn a_completion_without_a_buffer_leases_nothing() {
        let ring = Rc::new(BufRing::new(4, 16, 1));
        assert!(ring.lease(IORING_CQE_F_MORE, 0).is_none());
        assert_eq!(ring.available(), 4);
    }

    #[test]
    fn the_tail_wraps_and_leases_in_any_order_keep_every_buffer() {
        // Seeded: completions take buffers in the kernel's order and are dropped in any order.
        let ring = Rc::new(BufRing::new(16, 8, 1));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut head = 0u16; // the kernel's consumer index
        let mut held = Vec::new();
        for _ in 0..10_000 {
            if held.len() < 16 && (held.is_empty() || next() % 2 == 0) {
                let (_, _, bid) = ring.published(head);
                head = head.wrapping_add(1);
                held.push(
                    ring.lease(IORING_CQE_F_BUFFER | ((bid as u32) << 16), 8)
                        .unwrap(),
                );
            } else {
                let i = (next() % held.len() as u64) as usize;
                held.swap_remove(i);
            }
            assert_eq!(ring.available() as usize + held.len(), 16);
            assert_eq!(ring.shared_tail().wrapping_sub(head), ring.available());
        }
        let mut bids: Vec<u16> = held.iter().map(|l| l.bid).collect();
        for i in 0..ring.available() {
            bids.push(ring.published(head.wrapping_add(i)).2);
        }
        bids.sort_unstable();
        assert_eq!(
            bids,
            (0..16).collect::<Vec<_>>(),
            "no buffer lost or doubled"
        );
    }
}
