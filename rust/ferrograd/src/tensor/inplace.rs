//! In-place ops on `Tensor`: `add_ sub_ mul_ div_`, `zero_`, `fill_`, `copy_`, `clamp_`
//! and `index_put_` (`t[key] = value`). They are not recorded in the graph, so on a tensor
//! that requires grad they are allowed only under no-grad; each bumps the storage's version
//! (through [`Storage::write`](super::Storage::write)), which is how backward notices that
//! an array it saved has changed.
//!
//! Locking: the operand is read (copied) first under its own lock, then the target's write
//! lock is held across the whole read-modify-write. Two locks are never held at once, so
//! `a += b` and `b += a` on two threads cannot deadlock, `x += x` reads a stable copy, and
//! concurrent `+=` from several threads never lose a write. Shapes are checked before the
//! first mutable access, so a failed op neither writes nor counts a write.

use super::autograd::is_grad_enabled;
use super::ops_nn::Clamp;
use super::{Tensor, WriteGuard};
use crate::dynarray::fns::{Add, Div, Mul, Sub};
use crate::dynarray::{Arith, BinaryFn, DynArray, Scalar};
use crate::ndarray::assign::check_assign;
use crate::ndarray::index_put::PutPlan;
use crate::ndarray::{Float, IndexItem, NdArray};
use crate::{value_err, Error, Result};

/// The right-hand side of an in-place op: another tensor (broadcast to the target's shape)
/// or a number.
#[derive(Clone, Copy, Debug)]
pub enum Operand<'a> {
    Tensor(&'a Tensor),
    Scalar(Scalar),
}

/// The arithmetic of `+= -= *= /=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InplaceOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl InplaceOp {
    /// The out-of-place operator it updates with.
    fn arith(self) -> Arith {
        match self {
            InplaceOp::Add => Arith::Add,
            InplaceOp::Sub => Arith::Sub,
            InplaceOp::Mul => Arith::Mul,
            InplaceOp::Div => Arith::Div,
        }
    }

    /// The op's name in messages (PyTorch's method name).
    pub fn name(self) -> &'static str {
        match self {
            InplaceOp::Add => "add_",
            InplaceOp::Sub => "sub_",
            InplaceOp::Mul => "mul_",
            InplaceOp::Div => "div_",
        }
    }
}

/// An operand as an in-place write reads it (see [`Tensor::write_with`]): an array
/// borrowed from its storage (or a copy of it), or a number.
enum Rhs<'a> {
    Array(&'a DynArray),
    Scalar(Scalar),
}

/// `dst op= rhs` under `dst`'s write lock: floats in place, integers and bools computed out
/// of place (see [`integer_update`]).
fn update(dst: &mut WriteGuard<'_>, name: &str, op: InplaceOp, rhs: Rhs<'_>) -> Result<()> {
    if !dst.dtype().is_float() {
        // Computed from a shared borrow, so a refused update counts no write.
        let updated = integer_update(dst, name, op, rhs)?;
        **dst = updated;
        return Ok(());
    }
    match rhs {
        Rhs::Scalar(s) => match op {
            InplaceOp::Add => scalar_assign(dst, s, Add),
            InplaceOp::Sub => scalar_assign(dst, s, Sub),
            InplaceOp::Mul => scalar_assign(dst, s, Mul),
            InplaceOp::Div => scalar_assign(dst, s, Div),
        },
        Rhs::Array(b) => {
            check_assign(name, b.shape(), dst.shape())?;
            match op {
                InplaceOp::Add => zip_assign(dst, name, b, Add),
                InplaceOp::Sub => zip_assign(dst, name, b, Sub),
                InplaceOp::Mul => zip_assign(dst, name, b, Mul),
                InplaceOp::Div => zip_assign(dst, name, b, Div),
            }
        }
    }
}

impl Operand<'_> {
    fn tensor(&self) -> Option<&Tensor> {
        match self {
            Operand::Tensor(t) => Some(t),
            Operand::Scalar(_) => None,
        }
    }
}

impl Tensor {
    /// `self op= operand`, the operand broadcast to this tensor's shape; the result is cast
    /// back to this tensor's dtype (mixed dtypes compute in the wider one first).
    pub fn apply_(&self, op: InplaceOp, operand: Operand<'_>) -> Result<()> {
        let name = op.name();
        self.check_writable(name, operand.tensor())?;
        self.write_with(operand, |guard, rhs| update(guard, name, op, rhs))
    }

    /// Runs `f` with this tensor's array locked for writing and the operand read. A tensor
    /// operand is read where it is, not copied first: a copy made on this thread is then
    /// read by the pool's other threads from this core's cache (a 65K f32 `+=` at 2 threads
    /// took 22 µs with the copy, 11 µs at 1 thread). `try_read` never waits while this
    /// thread holds the write lock, so two threads writing each other's tensors at once
    /// cannot deadlock. The operand is copied, before the write lock is taken, when it is
    /// this tensor's own storage (`t += t`) or another thread is writing it.
    fn write_with<R>(
        &self,
        operand: Operand<'_>,
        f: impl FnOnce(&mut WriteGuard<'_>, Rhs<'_>) -> Result<R>,
    ) -> Result<R> {
        let t = match operand {
            Operand::Scalar(s) => return f(&mut self.array_mut(), Rhs::Scalar(s)),
            Operand::Tensor(t) => t,
        };
        if !t.shares_storage(self) {
            let mut guard = self.array_mut();
            if let Some(rhs) = t.storage().try_read() {
                return f(&mut guard, Rhs::Array(&rhs));
            }
        }
        let rhs = t.array().clone();
        f(&mut self.array_mut(), Rhs::Array(&rhs))
    }

    /// `self += operand`.
    pub fn add_(&self, operand: Operand<'_>) -> Result<()> {
        self.apply_(InplaceOp::Add, operand)
    }

    /// `self -= operand`.
    pub fn sub_(&self, operand: Operand<'_>) -> Result<()> {
        self.apply_(InplaceOp::Sub, operand)
    }

    /// `self *= operand`.
    pub fn mul_(&self, operand: Operand<'_>) -> Result<()> {
        self.apply_(InplaceOp::Mul, operand)
    }

    /// `self /= operand` (IEEE division: by zero gives inf or NaN).
    pub fn div_(&self, operand: Operand<'_>) -> Result<()> {
        self.apply_(InplaceOp::Div, operand)
    }

    /// Sets every element to 0.
    pub fn zero_(&self) -> Result<()> {
        self.fill_named("zero_", Scalar::Int(0))
    }

    /// Sets every element to `value` (converted to this tensor's dtype).
    pub fn fill_(&self, value: impl Into<Scalar>) -> Result<()> {
        self.fill_named("fill_", value.into())
    }

    fn fill_named(&self, name: &str, value: Scalar) -> Result<()> {
        self.check_writable(name, None)?;
        let mut guard = self.array_mut();
        let filled = DynArray::full_scalar(&[], value, guard.dtype())?;
        match (&mut *guard, &filled) {
            (DynArray::F32(a), DynArray::F32(v)) => a.fill(v.data()[0]),
            (DynArray::F64(a), DynArray::F64(v)) => a.fill(v.data()[0]),
            (DynArray::I64(a), DynArray::I64(v)) => a.fill(v.data()[0]),
            (DynArray::I32(a), DynArray::I32(v)) => a.fill(v.data()[0]),
            (DynArray::Bool(a), DynArray::Bool(v)) => a.fill(v.data()[0]),
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    /// Copies `src`, broadcast to this tensor's shape and cast to its dtype, into it.
    pub fn copy_(&self, src: &Tensor) -> Result<()> {
        self.check_writable("copy_", Some(src))?;
        let src = src.array().clone();
        let mut guard = self.array_mut();
        check_assign("copy_", src.shape(), guard.shape())?;
        let src = src.into_dtype(guard.dtype());
        match (&mut *guard, &src) {
            (DynArray::F32(a), DynArray::F32(b)) => a.assign("copy_", b),
            (DynArray::F64(a), DynArray::F64(b)) => a.assign("copy_", b),
            (DynArray::I64(a), DynArray::I64(b)) => a.assign("copy_", b),
            (DynArray::I32(a), DynArray::I32(b)) => a.assign("copy_", b),
            (DynArray::Bool(a), DynArray::Bool(b)) => a.assign("copy_", b),
            _ => Err(mismatch()),
        }
    }

    /// Limits every element to `[min, max]` in place, either bound optional (the rules of
    /// [`Tensor::clamp`]).
    pub fn clamp_(&self, min: Option<f64>, max: Option<f64>) -> Result<()> {
        if min.is_none() && max.is_none() {
            return Err(value_err!(
                "clamp_: at least one of min and max must be given"
            ));
        }
        self.check_writable("clamp_", None)?;
        let bounds = Clamp::new(min, max);
        let mut guard = self.array_mut();
        guard.require_float("clamp_")?;
        match &mut *guard {
            DynArray::F32(a) => a.map_assign(|x| crate::dynarray::UnaryFn::apply(&bounds, x)),
            DynArray::F64(a) => a.map_assign(|x| crate::dynarray::UnaryFn::apply(&bounds, x)),
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    /// `self[items] = value`: a number, or a tensor broadcast to the indexed shape (extra
    /// leading axes of length 1 allowed) and cast to this tensor's dtype. Where an integer
    /// index repeats a position, the last write wins (NumPy).
    pub fn index_put_(&self, items: &[IndexItem], value: Operand<'_>) -> Result<()> {
        self.check_writable("index_put_", value.tensor())?;
        self.write_with(value, |guard, value| match value {
            Rhs::Scalar(s) => {
                let plan = PutPlan::new(guard.shape(), items, None)?;
                let v = DynArray::full_scalar(&[], s, guard.dtype())?;
                match (&mut **guard, &v) {
                    (DynArray::F32(a), DynArray::F32(v)) => a.put_scalar(&plan, v.data()[0]),
                    (DynArray::F64(a), DynArray::F64(v)) => a.put_scalar(&plan, v.data()[0]),
                    (DynArray::I64(a), DynArray::I64(v)) => a.put_scalar(&plan, v.data()[0]),
                    (DynArray::I32(a), DynArray::I32(v)) => a.put_scalar(&plan, v.data()[0]),
                    (DynArray::Bool(a), DynArray::Bool(v)) => a.put_scalar(&plan, v.data()[0]),
                    _ => Err(mismatch()),
                }
            }
            Rhs::Array(v) => {
                let plan = PutPlan::new(guard.shape(), items, Some(v.shape()))?;
                let v = v.as_dtype(guard.dtype());
                match (&mut **guard, &*v) {
                    (DynArray::F32(a), DynArray::F32(b)) => a.put(&plan, b),
                    (DynArray::F64(a), DynArray::F64(b)) => a.put(&plan, b),
                    (DynArray::I64(a), DynArray::I64(b)) => a.put(&plan, b),
                    (DynArray::I32(a), DynArray::I32(b)) => a.put(&plan, b),
                    (DynArray::Bool(a), DynArray::Bool(b)) => a.put(&plan, b),
                    _ => Err(mismatch()),
                }
            }
        })
    }

    /// Refuses a write the graph cannot account for: into a tensor that requires grad
    /// outside no-grad, or of an operand that requires grad into one that does not (the
    /// operand's gradient would be lost, as in-place ops are not recorded).
    fn check_writable(&self, op: &str, operand: Option<&Tensor>) -> Result<()> {
        if !is_grad_enabled() {
            return Ok(());
        }
        if self.requires_grad() {
            return Err(Error::Graph(format!(
                "{op}: a tensor that requires grad cannot be modified in place (in-place ops \
                 are not recorded in the graph); wrap the update in `with fg.no_grad():`"
            )));
        }
        if operand.is_some_and(Tensor::requires_grad) {
            return Err(Error::Graph(format!(
                "{op}: the operand requires grad but the tensor written in place does not, and \
                 in-place ops are not recorded in the graph, so its gradient would be lost; \
                 write it out of place (`t = t + u`) or wrap it in `with fg.no_grad():`"
            )));
        }
        Ok(())
    }
}

/// `dst[i] = f(dst[i], src[i])`, `src` broadcast to `dst`'s shape (checked by the caller)
/// and the result kept in `dst`'s dtype. A float32 target with a float64 operand computes
/// in float64 and rounds once, as PyTorch does.
fn zip_assign(dst: &mut DynArray, op: &str, src: &DynArray, f: impl BinaryFn) -> Result<()> {
    match (dst, src) {
        (DynArray::F32(a), DynArray::F32(b)) => a.zip_assign(op, b, |x, y| f.apply(x, y)),
        (DynArray::F64(a), DynArray::F64(b)) => a.zip_assign(op, b, |x, y| f.apply(x, y)),
        (DynArray::F64(a), DynArray::F32(b)) => a.zip_assign(op, &b.cast(), |x, y| f.apply(x, y)),
        (DynArray::F32(a), DynArray::F64(b)) => {
            let mut wide: NdArray<f64> = a.cast();
            wide.zip_assign(op, b, |x, y| f.apply(x, y))?;
            *a = wide.cast();
            Ok(())
        }
        // An integer or bool operand of a float target: computed in the target's dtype.
        (dst, src) => {
            let src = src.to_dtype(dst.dtype());
            zip_assign(dst, op, &src, f)
        }
    }
}

/// `int_t op= x` on an integer or bool target: computed out of place with the usual
/// promotion, and refused (as PyTorch does) when the result's dtype cannot be cast back
/// without changing category (`int_t += 0.5`, `int_t /= 2`).
fn integer_update(dst: &DynArray, name: &str, op: InplaceOp, rhs: Rhs<'_>) -> Result<DynArray> {
    let result = match rhs {
        Rhs::Scalar(s) => dst.arith_scalar(op.arith(), s, false)?,
        Rhs::Array(b) => {
            check_assign(name, b.shape(), dst.shape())?;
            dst.arith(op.arith(), b)?
        }
    };
    if result.dtype().category() > dst.dtype().category() {
        return Err(Error::Type(format!(
            "{name}: the result has dtype {}, which cannot be written into a tensor of dtype {} \
             in place; write it out of place or cast first",
            result.dtype(),
            dst.dtype()
        )));
    }
    result.into_dtype(dst.dtype()).broadcast_to(dst.shape())
}

/// `dst[i] = f(dst[i], s)` with the scalar in `dst`'s dtype (a number never promotes).
fn scalar_assign(dst: &mut DynArray, s: Scalar, f: impl BinaryFn) -> Result<()> {
    let s = s.to_f64();
    match dst {
        DynArray::F32(a) => {
            let s = f32::from_f64_lossy(s);
            a.map_assign(|x| f.apply(x, s));
        }
        DynArray::F64(a) => a.map_assign(|x| f.apply(x, s)),
        _ => return Err(mismatch()),
    }
    Ok(())
}

fn mismatch() -> Error {
    Error::Graph("internal error: dtype mismatch after a cast".into())
}
