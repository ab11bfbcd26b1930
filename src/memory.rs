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
