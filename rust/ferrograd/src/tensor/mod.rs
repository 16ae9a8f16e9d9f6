//! `Tensor`: an array with reverse-mode autodiff baked in — one graph node per array,
//! shaped like the article's `Value` (data, grad, backward rule, parents, op).

mod autograd;
mod creation;
mod ops_attention;
mod ops_conv;
mod ops_elementwise;
mod ops_nn;
mod ops_reduce;
mod ops_shape;

pub use autograd::{is_grad_enabled, set_grad_enabled, NoGradGuard};
pub use ops_attention::AttentionMask;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::dynarray::{DType, DynArray};
use crate::{Error, Result};

/// An array shared between tensors: `detach()` and `.data` alias it, as in PyTorch.
pub type Storage = Arc<RwLock<DynArray>>;

/// A backward rule: given the gradient of the output, the parents and the output's value,
/// the gradient of each parent (`None` where it has none). Broadcast gradients may come
/// back in the broadcast shape; the engine sums them down to each parent's shape.
pub type BackwardFn =
    Box<dyn Fn(&DynArray, &[Tensor], &DynArray) -> Result<Vec<Option<DynArray>>> + Send + Sync>;

/// What an op's output remembers until backward frees it.
struct GradFn {
    parents: Parents,
    backward: BackwardFn,
}

/// An op's parents, inline for the usual one or two (no allocation per op).
enum Parents {
    One([Tensor; 1]),
    Two([Tensor; 2]),
    Many(Vec<Tensor>),
}

impl Parents {
    fn new(parents: &[&Tensor]) -> Self {
        match *parents {
            [a] => Parents::One([a.clone()]),
            [a, b] => Parents::Two([a.clone(), b.clone()]),
            _ => Parents::Many(parents.iter().map(|&p| p.clone()).collect()),
        }
    }

    fn as_slice(&self) -> &[Tensor] {
        match self {
            Parents::One(p) => p,
            Parents::Two(p) => p,
            Parents::Many(p) => p,
        }
    }

    fn for_each(self, f: impl FnMut(Tensor)) {
        match self {
            Parents::One(p) => p.into_iter().for_each(f),
            Parents::Two(p) => p.into_iter().for_each(f),
            Parents::Many(p) => p.into_iter().for_each(f),
        }
    }
}

struct Node {
    id: usize,
    data: Storage,
    grad: Mutex<Option<Storage>>,
    requires_grad: AtomicBool,
    op: Option<&'static str>,
    /// `Some` on an op's output until backward without `retain_graph` frees it.
    grad_fn: Mutex<Option<GradFn>>,
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

pub(crate) fn read(s: &RwLock<DynArray>) -> RwLockReadGuard<'_, DynArray> {
    s.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write(s: &RwLock<DynArray>) -> RwLockWriteGuard<'_, DynArray> {
    s.write().unwrap_or_else(|e| e.into_inner())
}

impl Tensor {
    fn from_parts(
        data: Storage,
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
        }))
    }

    /// A leaf tensor holding `data`.
    pub fn new(data: DynArray, requires_grad: bool) -> Self {
        Self::from_parts(Arc::new(RwLock::new(data)), requires_grad, None, None)
    }

    /// The output of an op: records `parents` and `backward` when any parent requires grad
    /// and grad mode is on; otherwise a plain leaf.
    pub fn from_op(
        data: DynArray,
        op: &'static str,
        parents: &[&Tensor],
        backward: impl Fn(&DynArray, &[Tensor], &DynArray) -> Result<Vec<Option<DynArray>>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        if !is_grad_enabled() || !parents.iter().any(|p| p.requires_grad()) {
            return Self::new(data, false);
        }
        let grad_fn = GradFn {
            parents: Parents::new(parents),
            backward: Box::new(backward),
        };
        Self::from_parts(Arc::new(RwLock::new(data)), true, Some(op), Some(grad_fn))
    }

    /// A unique id (graph drawing, de-duplication).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// Reads the array (shared lock).
    pub fn array(&self) -> RwLockReadGuard<'_, DynArray> {
        read(&self.0.data)
    }

    /// Writes the array in place (optimizer steps under no-grad).
    pub fn array_mut(&self) -> RwLockWriteGuard<'_, DynArray> {
        write(&self.0.data)
    }

    /// The shared storage (aliased by `detach()`).
    pub fn storage(&self) -> &Storage {
        &self.0.data
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
        self.0.requires_grad.store(requires_grad, Ordering::Relaxed);
        Ok(())
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
    pub fn grad(&self) -> Option<Storage> {
        lock(&self.0.grad).clone()
    }

    /// Replaces (or with `None` clears) the gradient; it must match the shape.
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
        let grad = grad.map(|g| Arc::new(RwLock::new(g.into_dtype(self.dtype()))));
        *lock(&self.0.grad) = grad;
        Ok(())
    }

    /// A leaf over an existing storage (e.g. a gradient shown to Python without a copy).
    pub fn from_storage(storage: Storage, requires_grad: bool) -> Self {
        Self::from_parts(storage, requires_grad, None, None)
    }

    /// A new leaf sharing this tensor's storage, outside the graph.
    pub fn detach(&self) -> Tensor {
        Self::from_parts(self.0.data.clone(), false, None, None)
    }

    /// A leaf sharing this tensor's storage that requires grad (or not).
    pub fn detach_requires_grad(&self, requires_grad: bool) -> Tensor {
        Self::from_parts(self.0.data.clone(), requires_grad, None, None)
    }

    /// A copy of the array in a new leaf.
    pub fn deep_copy(&self, requires_grad: bool) -> Tensor {
        Self::new(self.array().clone(), requires_grad)
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
