//! Handing freed memory back to the OS where the process frees a lot at once
//! and then goes quiet.

/// Returns the free memory the calling thread's allocator still holds to the
/// OS now. The binary allocates with mimalloc (`main.rs`), which keeps freed
/// pages for later allocations of the same thread and purges them only when
/// that thread next allocates; a hashing thread frees an Argon2id block
/// (19 MiB) after each hash and then waits for the next one, so without this
/// each such thread kept a block resident.
pub fn give_back_freed() {
    // SAFETY: mi_collect walks and purges only mimalloc's own heaps; where mimalloc
    // is not the global allocator (unit tests) they are empty and this does nothing.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Keeps the kernel from backing this process's memory with transparent huge
/// pages. A proxy's heap is many small, short-lived allocations spread over
/// the allocator's pages; backed by 2 MiB pages, each partly used one stays
/// resident whole, and freed ranges are returned in 2 MiB units only
/// (docs/performance.md, Memory). Best effort: a kernel without the switch
/// leaves it as it was.
pub fn without_transparent_huge_pages() {
    // SAFETY: a plain system call about this process; no memory is touched.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
