//! `Tensor`: an array with reverse-mode autodiff baked in — one graph node per array,
//! shaped like the article's `Value` (data, grad, backward rule, parents, op).

mod autograd;
mod context;
mod creation;
mod cross_entropy_rows;
mod hooks;
mod inplace;
mod loss;
mod loss_binary;
mod ops_activation;
mod ops_attention;
mod ops_attention_packed;
mod ops_conv;
mod ops_dtype;
mod ops_elementwise;
mod ops_embedding;
mod ops_linear;
mod ops_math;
mod ops_nn;
mod ops_norm;
mod ops_pool;
mod ops_random;
mod ops_reduce;
mod ops_select;
mod ops_shape;
mod ops_view;
pub mod record;
mod running_stats;
mod storage;

pub use autograd::{is_grad_enabled, set_grad_enabled, NoGradGuard};
pub use context::BackwardCtx;
pub use hooks::{HookHandle, PostAccumulateGradHook};
pub use inplace::{InplaceOp, Operand};
pub use loss::{class_indices, Reduction};
pub use ops_attention::AttentionMask;
pub use running_stats::update_running_stats;
pub use storage::{Storage, WriteGuard};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLockReadGuard};

use crate::dynarray::{DType, DynArray};
use crate::{Error, Result};

/// A backward rule: given the gradient of the output and the op's context (which parents
/// need a gradient; the saved inputs and output, read through version checks), the
/// gradient of each parent (`None` where it has none or needs none). Broadcast gradients
/// may come back in the broadcast shape; the engine sums them down to each parent's shape.
/// The rule owns the incoming gradient (the engine is done with it), so that one which
/// passes it on or rescales it can reuse its buffer ([`Tensor::from_op_owned`]).
pub type BackwardFn =
    Box<dyn Fn(DynArray, &BackwardCtx<'_>) -> Result<Vec<Option<DynArray>>> + Send + Sync>;

/// What an op's output remembers until backward frees it.
struct GradFn {
    parents: Inline<Tensor>,
    /// The version of each parent's storage when the op ran.
    versions: Inline<u64>,
    backward: BackwardFn,
}

/// A short list kept inline for the usual one or two items (no allocation per op).
enum Inline<T> {
    One([T; 1]),
    Two([T; 2]),
    Many(Vec<T>),
}

impl<T> Inline<T> {
    fn new<'a, S: 'a>(items: &[&'a S], f: impl Fn(&'a S) -> T) -> Self {
        match *items {
            [a] => Inline::One([f(a)]),
            [a, b] => Inline::Two([f(a), f(b)]),
            _ => Inline::Many(items.iter().map(|&p| f(p)).collect()),
        }
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Inline::One(p) => p,
            Inline::Two(p) => p,
            Inline::Many(p) => p,
        }
    }

    fn for_each(self, f: impl FnMut(T)) {
        match self {
            Inline::One(p) => p.into_iter().for_each(f),
            Inline::Two(p) => p.into_iter().for_each(f),
            Inline::Many(p) => p.into_iter().for_each(f),
        }
    }
}

struct Node {
    id: usize,
    data: Arc<Storage>,
    grad: Mutex<Option<Arc<Storage>>>,
    requires_grad: AtomicBool,
    op: Option<&'static str>,
    /// `Some` on an op's output until backward without `retain_graph` frees it.
    grad_fn: Mutex<Option<GradFn>>,
    /// Post-accumulate-grad hooks (leaves only; see `hooks.rs`).
    hooks: hooks::HookList,
}

/// A node of the autodiff graph holding an n-d float array. Cloning shares the node.
#[derive(Clone)]
pub struct Tensor(Arc<Node>);

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every value
/// behind these locks is replaced whole, so it is never half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tensor {
    fn from_parts(
        data: Arc<Storage>,
        requires_grad: bool,
        op: Option<&'static str>,
        grad_fn: Option<GradFn>,
    ) -> Self {
        Tensor(Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            data,
            grad: Mutex::new(None),
            requires_grad: AtomicBool::new(requires_grad),
            op,
            grad_fn: Mutex::new(grad_fn),
            hooks: hooks::HookList::default(),
        }))
    }

    /// A leaf tensor holding `data`. Unchecked: [`Tensor::leaf`] refuses `requires_grad` on
    /// integer and bool arrays, as every user-facing constructor does.
    pub fn new(data: DynArray, requires_grad: bool) -> Self {
        Self::from_parts(Storage::new(data), requires_grad, None, None)
    }

    /// The output of an op: records `parents`, their versions and `backward` when any parent
    /// requires grad and grad mode is on; otherwise a plain leaf. While this thread records
    /// for export ([`record`]), the op is appended to the recording either way. The rule reads saved
    /// arrays only through its [`BackwardCtx`], which checks those versions.
    pub fn from_op(
        data: DynArray,
        op: &'static str,
        parents: &[&Tensor],
        backward: impl Fn(&DynArray, &BackwardCtx<'_>) -> Result<Vec<Option<DynArray>>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self::from_op_owned(data, op, parents, move |g, ctx| backward(&g, ctx))
    }

    /// [`Tensor::from_op`] with a rule that takes the output's gradient by value: one that
    /// passes it on (an addition) or rescales it elementwise writes into its buffer instead
    /// of copying it.
    pub fn from_op_owned(
        data: DynArray,
        op: &'static str,
        parents: &[&Tensor],
        backward: impl Fn(DynArray, &BackwardCtx<'_>) -> Result<Vec<Option<DynArray>>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        let out = if !is_grad_enabled() || !parents.iter().any(|p| p.requires_grad()) {
            Self::new(data, false)
        } else {
            let grad_fn = GradFn {
                parents: Inline::new(parents, Tensor::clone),
                versions: Inline::new(parents, Tensor::version),
                backward: Box::new(backward),
            };
            Self::from_parts(Storage::new(data), true, Some(op), Some(grad_fn))
        };
        if record::is_recording() {
            record::push(op, parents, &[&out]);
        }
        out
    }

    /// The output of an op that never joins the autodiff graph (comparisons, casts to
    /// integers, argmax, …): a plain leaf, recorded for export like any op.
    pub fn untracked_op(data: DynArray, op: &'static str, parents: &[&Tensor]) -> Self {
        let out = Self::new(data, false);
        if record::is_recording() {
            record::push(op, parents, &[&out]);
        }
        out
    }

    /// Attaches the attributes an exporter needs (built by [`record::attrs`], `None` when
    /// not recording) to the record of the op that just produced `self`.
    #[inline]
    pub fn recorded_with(self, attrs: Option<record::Attrs>) -> Self {
        if attrs.is_some() {
            record::set_attrs(&self, attrs);
        }
        self
    }

    /// A unique id (graph drawing, de-duplication).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// Reads the array (shared lock).
    pub fn array(&self) -> RwLockReadGuard<'_, DynArray> {
        self.0.data.read()
    }

    /// Writes the array in place (optimizer steps under no-grad); mutable use of the guard
    /// bumps the storage's version.
    pub fn array_mut(&self) -> WriteGuard<'_> {
        self.0.data.write()
    }

    /// The shared storage (aliased by `detach()` and `.data`).
    pub fn storage(&self) -> &Arc<Storage> {
        &self.0.data
    }

    /// How many in-place writes the storage has seen, through any alias (PyTorch's
    /// `_version`).
    pub fn version(&self) -> u64 {
        self.0.data.version()
    }

    /// Whether two tensors alias one array (e.g. a tensor and its `detach()`).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.data, &other.0.data)
    }

    /// The dimensions.
    pub fn shape(&self) -> Vec<usize> {
        self.array().shape().to_vec()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.array().dtype()
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Turns gradient tracking of a leaf on or off (an op's output keeps its setting).
    pub fn set_requires_grad(&self, requires_grad: bool) -> Result<()> {
        if !self.is_leaf() {
            return Err(Error::Graph(
                "requires_grad can only be changed on leaf tensors; use detach() for a non-leaf"
                    .into(),
            ));
        }
        if requires_grad {
            check_differentiable(self.dtype())?;
        }
        self.0.requires_grad.store(requires_grad, Ordering::Relaxed);
        Ok(())
    }

    /// A leaf tensor holding `data`; only float tensors may require grad.
    pub fn leaf(data: DynArray, requires_grad: bool) -> Result<Self> {
        if requires_grad {
            check_differentiable(data.dtype())?;
        }
        Ok(Self::new(data, requires_grad))
    }

    /// The op that produced this tensor, `None` for leaves.
    pub fn op(&self) -> Option<&'static str> {
        self.0.op
    }

    /// Whether this is a leaf (made by the user, not by an op that tracks gradients).
    pub fn is_leaf(&self) -> bool {
        self.0.op.is_none()
    }

    /// The parents of this node (empty for leaves and once backward freed the graph).
    pub fn parents(&self) -> Vec<Tensor> {
        lock(&self.0.grad_fn)
            .as_ref()
            .map_or_else(Vec::new, |g| g.parents.as_slice().to_vec())
    }

    /// The accumulated gradient of a leaf (`None` before any backward, and on non-leaves).
    pub fn grad(&self) -> Option<Arc<Storage>> {
        lock(&self.0.grad).clone()
    }

    /// Replaces (or with `None` clears) the gradient; it must match the shape. The new
    /// gradient gets a storage of its own, as `t.grad = g` does in PyTorch: arrays that
    /// aliased the old one keep its values, so nothing saved from them goes stale.
    pub fn set_grad(&self, grad: Option<DynArray>) -> Result<()> {
        if let Some(g) = &grad {
            if g.shape() != self.array().shape() {
                return Err(Error::Shape(format!(
                    "grad: shape {} does not match the tensor's shape {}",
                    crate::shape::fmt_shape(g.shape()),
                    crate::shape::fmt_shape(self.array().shape())
                )));
            }
        }
        let grad = grad.map(|g| Storage::new(g.into_dtype(self.dtype())));
        *lock(&self.0.grad) = grad;
        Ok(())
    }

    /// A leaf over an existing storage (e.g. a gradient shown to Python without a copy).
    pub fn from_storage(storage: Arc<Storage>, requires_grad: bool) -> Self {
        Self::from_parts(storage, requires_grad, None, None)
    }

    /// A new leaf sharing this tensor's storage, outside the graph.
    pub fn detach(&self) -> Tensor {
        Self::from_parts(self.0.data.clone(), false, None, None)
    }
}

/// Only float tensors take part in autodiff (PyTorch's rule).
fn check_differentiable(dtype: DType) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(Error::Graph(format!(
            "only floating-point tensors can require gradients, got dtype {dtype}"
        )))
    }
}

/// Runs `f` on the arrays of two tensors under read locks, taking the lock once when both
/// share one storage (`x * x`): a second read of the same lock can deadlock behind a
/// waiting writer.
pub(crate) fn read_pair<R>(a: &Tensor, b: &Tensor, f: impl FnOnce(&DynArray, &DynArray) -> R) -> R {
    let ga = a.array();
    if a.shares_storage(b) {
        f(&ga, &ga)
    } else {
        let gb = b.array();
        f(&ga, &gb)
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("data", &*self.array())
            .field("requires_grad", &self.requires_grad())
            .field("op", &self.op())
            .finish()
    }
}

impl Drop for Node {
    /// Dismantles long chains iteratively: the default drop would recurse once per node.
    fn drop(&mut self) {
        // Nodes whose last reference is gone, whose parents are still to be released.
        let mut stack: Vec<Node> = Vec::new();
        let release = |grad_fn: &Mutex<Option<GradFn>>, stack: &mut Vec<Node>| {
            // Taken under the lock, released after it.
            let taken = lock(grad_fn).take();
            if let Some(g) = taken {
                g.parents.for_each(|t| stack.extend(Arc::into_inner(t.0)));
            }
        };
        release(&self.grad_fn, &mut stack);
        while let Some(node) = stack.pop() {
            release(&node.grad_fn, &mut stack);
            // `node` drops here with its edges already taken: no recursion.
        }
    }
}
