//! Python buffers as Rust slices, and the one place where the GIL is released.
//!
//! Batch calls hand Rust whole buffers (`bytes`, `bytearray`, `memoryview`, `array`), never
//! per-packet Python objects. A [`View`] is a raw pointer and length taken from a live
//! `PyBuffer`; it is `Send` so it can cross into [`release_gil`], and it is only turned
//! back into a slice inside that call while the `PyBuffer` (which pins the memory and
//! blocks resizing of a `bytearray`) is still held by the caller's stack frame.

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Pointer and element count of a C-contiguous Python buffer.
pub struct View<T> {
    ptr: *mut T,
    len: usize,
    writable: bool,
}

// SAFETY: a View is only dereferenced while the PyBuffer it came from is alive (see the
// module comment), and the memory it points to is plain data.
unsafe impl<T: Send> Send for View<T> {}

impl<T: Element> View<T> {
    /// A read-only view of `buf`.
    pub fn of(buf: &PyBuffer<T>, what: &str) -> PyResult<Self> {
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "{what}: buffer must be C-contiguous"
            )));
        }
        Ok(View {
            ptr: buf.buf_ptr().cast::<T>(),
            len: buf.item_count(),
            writable: false,
        })
    }

    /// A writable view of `buf`; fails for read-only buffers such as `bytes`.
    pub fn of_mut(buf: &PyBuffer<T>, what: &str) -> PyResult<Self> {
        if buf.readonly() {
            return Err(PyValueError::new_err(format!(
                "{what}: buffer must be writable"
            )));
        }
        let mut v = Self::of(buf, what)?;
        v.writable = true;
        Ok(v)
    }

    fn byte_range(&self) -> (usize, usize) {
        let start = self.ptr as usize;
        (start, start + self.len * std::mem::size_of::<T>())
    }

    /// The elements as a slice.
    ///
    /// # Safety
    /// The `PyBuffer` this view came from must still be alive, and no `&mut` slice of
    /// overlapping memory may exist (guaranteed by [`check_disjoint`]).
    pub unsafe fn slice<'a>(&self) -> &'a [T] {
        if self.len == 0 {
            return &[];
        }
        std::slice::from_raw_parts(self.ptr, self.len)
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    /// As for [`View::slice`], and the view must be writable and used for one `&mut` only.
    pub unsafe fn slice_mut<'a>(&mut self) -> &'a mut [T] {
        debug_assert!(self.writable);
        if self.len == 0 {
            return &mut [];
        }
        std::slice::from_raw_parts_mut(self.ptr, self.len)
    }
}

/// Byte range of a view, for [`check_disjoint`].
pub trait Span {
    /// `(start, end)` addresses and whether the view is written.
    fn span(&self) -> (usize, usize, bool);
}

impl<T: Element> Span for View<T> {
    fn span(&self) -> (usize, usize, bool) {
        let (s, e) = self.byte_range();
        (s, e, self.writable)
    }
}

/// Fails if a writable view overlaps any other view: Rust may not hold `&mut` and `&` to
/// the same bytes, and the batch functions do not support in-place operation.
pub fn check_disjoint(views: &[&dyn Span]) -> PyResult<()> {
    for (i, a) in views.iter().enumerate() {
        for b in &views[i + 1..] {
            let (a0, a1, aw) = a.span();
            let (b0, b1, bw) = b.span();
            if (aw || bw) && a0 < b1 && b0 < a1 {
                return Err(PyValueError::new_err(
                    "an output buffer overlaps another buffer of the same call",
                ));
            }
        }
    }
    Ok(())
}

/// Runs `f` with the GIL released, then lets a pending KeyboardInterrupt surface.
/// Every batch call goes through here.
pub fn release_gil<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> PyResult<R> {
    let r = py.allow_threads(f);
    py.check_signals()?;
    Ok(r)
}

/// Calls `f` with the bytes of a (small, per-packet) buffer while holding the GIL.
pub fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    let buf = PyBuffer::<u8>::get(obj)?;
    let v = View::of(&buf, "packet")?;
    // SAFETY: `buf` lives until the end of this function and nothing writes to it here.
    Ok(f(unsafe { v.slice() }))
}
