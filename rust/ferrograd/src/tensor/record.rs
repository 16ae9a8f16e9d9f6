//! Recording mode for export: while it is on (per thread), every tensor op appends a
//! [`Record`] — its name, input and output tensors with their versions, and the attributes
//! its output shape cannot tell (axes, strides, scalars, index plans, …) — whether or not
//! gradients are tracked. `fg.onnx.export` turns the records of one forward into a graph.
//!
//! Off, the cost on each op is one thread-local bool read: attributes are built lazily
//! ([`attrs`]) and only when recording.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Tensor;
use crate::dtype::Scalar;
use crate::dynarray::DynArray;
use crate::ndarray::IndexItem;
use crate::{Error, Result};

/// An attribute value of a record.
#[derive(Clone, Debug)]
pub enum Attr {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'static, str>),
    Ints(Vec<i64>),
    List(Vec<Attr>),
    Array(DynArray),
}

/// Named attributes, in the order the op gave them.
pub type Attrs = Vec<(Cow<'static, str>, Attr)>;

/// One op as it ran: inputs and outputs with the storage version each had at that moment
/// (an in-place write during the forward shows up as a version that differs between
/// records).
#[derive(Clone, Debug)]
pub struct Record {
    pub op: Cow<'static, str>,
    pub inputs: Vec<(Tensor, u64)>,
    pub outputs: Vec<(Tensor, u64)>,
    pub attrs: Attrs,
}

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static RECORDS: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
}

/// How many threads record now: while it is 0 (always, outside an export) an op's check is
/// one plain load, not a thread-local lookup (a call in a shared library).
static RECORDING_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Whether this thread is recording.
#[inline]
pub fn is_recording() -> bool {
    RECORDING_THREADS.load(Ordering::Relaxed) != 0 && ACTIVE.with(Cell::get)
}

/// Starts recording on this thread; an error if it already records (one export at a time).
pub fn start() -> Result<()> {
    if is_recording() {
        return Err(Error::Graph(
            "recording: this thread is already recording (an export inside an export?)".into(),
        ));
    }
    RECORDS.with(|r| r.borrow_mut().clear());
    RECORDING_THREADS.fetch_add(1, Ordering::SeqCst);
    ACTIVE.with(|a| a.set(true));
    Ok(())
}

/// Stops recording on this thread and hands back what was recorded (empty when it was off).
pub fn stop() -> Vec<Record> {
    if ACTIVE.with(|a| a.replace(false)) {
        RECORDING_THREADS.fetch_sub(1, Ordering::SeqCst);
    }
    RECORDS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// `Some(f())` while recording, `None` (and `f` never runs) otherwise.
#[inline]
pub fn attrs(f: impl FnOnce() -> Attrs) -> Option<Attrs> {
    if is_recording() {
        Some(f())
    } else {
        None
    }
}

/// One attribute entry.
pub fn kv(name: &'static str, value: impl Into<Attr>) -> (Cow<'static, str>, Attr) {
    (Cow::Borrowed(name), value.into())
}

/// Appends a record (no-op when not recording).
pub(crate) fn push(op: impl Into<Cow<'static, str>>, inputs: &[&Tensor], outputs: &[&Tensor]) {
    if !is_recording() {
        return;
    }
    let with_version = |t: &&Tensor| ((*t).clone(), t.version());
    let record = Record {
        op: op.into(),
        inputs: inputs.iter().map(with_version).collect(),
        outputs: outputs.iter().map(with_version).collect(),
        attrs: Vec::new(),
    };
    RECORDS.with(|r| r.borrow_mut().push(record));
}

/// Gives the last record the attributes `attrs`, if it is the op that produced `out`.
pub(crate) fn set_attrs(out: &Tensor, attrs: Option<Attrs>) {
    let Some(attrs) = attrs else { return };
    RECORDS.with(|r| {
        if let Some(last) = r.borrow_mut().last_mut() {
            if last
                .outputs
                .first()
                .is_some_and(|(t, _)| t.id() == out.id())
            {
                last.attrs = attrs;
            }
        }
    });
}

/// Adds `extra` to the inputs of the last record, if it is the op that produced `out`: for
/// tensors an op took as plain arrays (an attention mask, the tensors in an index key), so
/// an exporter sees where they came from.
pub fn link_inputs(out: &Tensor, extra: &[&Tensor]) {
    if !is_recording() || extra.is_empty() {
        return;
    }
    RECORDS.with(|r| {
        if let Some(last) = r.borrow_mut().last_mut() {
            if last
                .outputs
                .first()
                .is_some_and(|(t, _)| t.id() == out.id())
            {
                last.inputs
                    .extend(extra.iter().map(|t| ((*t).clone(), t.version())));
            }
        }
    });
}

/// Restores the recording flag when dropped (also when the wrapped call fails or panics).
struct Resume(bool);

impl Drop for Resume {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.0));
    }
}

/// Runs `f` as one recorded op named `op` with `inputs`: the ops inside it are not
/// recorded, its result is (a composite that an exporter maps as a whole, like an embedding
/// lookup by a tensor of ids or a normalisation layer).
pub fn fused(
    op: impl Into<Cow<'static, str>>,
    inputs: &[&Tensor],
    attrs: impl FnOnce() -> Attrs,
    f: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    if !is_recording() {
        return f();
    }
    let out = {
        let _resume = Resume(true);
        ACTIVE.with(|a| a.set(false));
        f()?
    };
    push(op, inputs, &[&out]);
    set_attrs(&out, Some(attrs()));
    Ok(out)
}

impl From<bool> for Attr {
    fn from(v: bool) -> Self {
        Attr::Bool(v)
    }
}

impl From<i64> for Attr {
    fn from(v: i64) -> Self {
        Attr::Int(v)
    }
}

impl From<isize> for Attr {
    fn from(v: isize) -> Self {
        Attr::Int(v as i64)
    }
}

impl From<usize> for Attr {
    fn from(v: usize) -> Self {
        Attr::Int(v as i64)
    }
}

impl From<f64> for Attr {
    fn from(v: f64) -> Self {
        Attr::Float(v)
    }
}

impl From<&'static str> for Attr {
    fn from(v: &'static str) -> Self {
        Attr::Str(Cow::Borrowed(v))
    }
}

impl From<String> for Attr {
    fn from(v: String) -> Self {
        Attr::Str(Cow::Owned(v))
    }
}

impl From<Scalar> for Attr {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Bool(b) => Attr::Bool(b),
            Scalar::Int(i) => Attr::Int(i),
            Scalar::Float(f) => Attr::Float(f),
        }
    }
}

impl<T: Into<Attr>> From<Option<T>> for Attr {
    fn from(v: Option<T>) -> Self {
        v.map_or(Attr::None, Into::into)
    }
}

impl From<&[usize]> for Attr {
    fn from(v: &[usize]) -> Self {
        Attr::Ints(v.iter().map(|&x| x as i64).collect())
    }
}

impl From<&[isize]> for Attr {
    fn from(v: &[isize]) -> Self {
        Attr::Ints(v.iter().map(|&x| x as i64).collect())
    }
}

impl From<(usize, usize)> for Attr {
    fn from(v: (usize, usize)) -> Self {
        Attr::Ints(vec![v.0 as i64, v.1 as i64])
    }
}

impl From<&IndexItem> for Attr {
    /// An index item as a list that starts with its kind: `["int", i]`,
    /// `["slice", start, stop, step]` (each possibly None), `["newaxis"]`, `["ellipsis"]`,
    /// `["array", int64 array]`, `["mask", bool array]`.
    fn from(item: &IndexItem) -> Self {
        let list = match item {
            IndexItem::Int(i) => vec!["int".into(), (*i).into()],
            IndexItem::Slice { start, stop, step } => vec![
                "slice".into(),
                (*start).into(),
                (*stop).into(),
                (*step).into(),
            ],
            IndexItem::NewAxis => vec!["newaxis".into()],
            IndexItem::Ellipsis => vec!["ellipsis".into()],
            IndexItem::Array { indices, shape } => {
                let values = indices.iter().map(|&i| i as i64).collect();
                match DynArray::from_i64(values, shape, crate::DType::I64) {
                    Ok(a) => vec!["array".into(), Attr::Array(a)],
                    Err(_) => vec!["array".into(), Attr::None],
                }
            }
            IndexItem::Mask { mask, shape } => {
                match crate::NdArray::from_vec(mask.clone(), shape) {
                    Ok(a) => vec!["mask".into(), Attr::Array(DynArray::Bool(a))],
                    Err(_) => vec!["mask".into(), Attr::None],
                }
            }
        };
        Attr::List(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::NoGradGuard;
    use crate::DType;

    fn t(values: &[f64], shape: &[usize], requires_grad: bool) -> Tensor {
        Tensor::new(
            DynArray::from_f64(values.to_vec(), shape, DType::F32).unwrap(),
            requires_grad,
        )
    }

    #[test]
    fn ops_are_recorded_with_inputs_outputs_and_attributes_also_under_no_grad() {
        let x = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2], true);
        start().unwrap();
        let (y, s) = {
            let _no_grad = NoGradGuard::new();
            let y = x.mul_scalar(2.0).unwrap();
            let s = y.sum(Some(&[-1]), true).unwrap();
            (y, s)
        };
        let records = stop();
        assert!(!is_recording());
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].op, "*");
        assert_eq!(records[0].inputs[0].0.id(), x.id());
        assert_eq!(records[0].outputs[0].0.id(), y.id());
        assert!(matches!(records[0].attrs[0].1, Attr::Float(f) if f == 2.0));
        assert_eq!(records[1].op, "sum");
        assert_eq!(records[1].outputs[0].0.id(), s.id());
        assert!(matches!(&records[1].attrs[0].1, Attr::Ints(a) if a == &[1]));
    }

    #[test]
    fn nothing_is_recorded_when_off_and_a_second_start_is_refused() {
        let x = t(&[1.0], &[1], false);
        x.exp().unwrap();
        assert!(stop().is_empty());
        start().unwrap();
        assert!(matches!(start(), Err(Error::Graph(_))));
        assert!(stop().is_empty());
    }

    #[test]
    fn a_fused_op_records_once_and_hides_its_parts() {
        let x = t(&[1.0, 2.0], &[2], false);
        start().unwrap();
        let y = fused("twice_exp", &[&x], Vec::new, || x.exp()?.mul_scalar(2.0)).unwrap();
        let failed = fused("fails", &[&x], Vec::new, || x.reshape(&[3]));
        let records = stop();
        assert!(failed.is_err());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].op, "twice_exp");
        assert_eq!(records[0].outputs[0].0.id(), y.id());
    }
}
