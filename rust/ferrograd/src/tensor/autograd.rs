//! Reverse-mode autodiff over `Tensor` graphs: an iterative topological walk, gradients
//! summed to each parent's shape, leaves accumulating, the graph freed as it is walked.

use super::context::BackwardCtx;
use super::storage::Storage;
use super::{lock, Tensor};
use crate::dynarray::DynArray;
use crate::shape::fmt_shape;
use crate::{Error, Result};
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record the graph on this thread (PyTorch's grad mode is per thread too).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Turns graph recording on or off for this thread; returns the previous setting.
pub fn set_grad_enabled(enabled: bool) -> bool {
    GRAD_ENABLED.with(|c| c.replace(enabled))
}

/// Disables graph recording until dropped (Rust's `with torch.no_grad():`).
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    /// Starts a no-grad region.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            previous: set_grad_enabled(false),
        }
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        set_grad_enabled(self.previous);
    }
}

impl Tensor {
    /// Backpropagates from this tensor. `grad` defaults to 1 for a one-element tensor.
    /// Without `retain_graph` the graph is freed as it is walked.
    pub fn backward(&self, grad: Option<DynArray>, retain_graph: bool) -> Result<()> {
        if !self.requires_grad() {
            return Err(Error::Graph(
                "backward: this tensor does not require grad and has no grad_fn".into(),
            ));
        }
        let shape = self.shape();
        let seed = match grad {
            Some(g) if g.shape() != shape.as_slice() => {
                return Err(Error::Shape(format!(
                    "backward: grad has shape {} but the tensor has shape {}",
                    fmt_shape(g.shape()),
                    fmt_shape(&shape)
                )))
            }
            Some(g) => g.into_dtype(self.dtype()),
            None if shape.iter().product::<usize>() == 1 => {
                DynArray::full(&shape, 1.0, self.dtype())?
            }
            None => {
                return Err(Error::Graph(format!(
                    "backward: grad can be implicitly created only for one-element tensors, \
                     this one has shape {}; pass grad=",
                    fmt_shape(&shape)
                )))
            }
        };
        let (order, position) = topological_order(self)?;
        // The gradient flowing into each node, by its position in `order`.
        let mut grads: Vec<Option<DynArray>> = Vec::with_capacity(order.len());
        grads.resize_with(order.len(), || None);
        if let Some(last) = grads.last_mut() {
            *last = Some(seed); // the root comes last
        }
        for (i, node) in order.iter().enumerate().rev() {
            let Some(g) = grads[i].take() else {
                continue;
            };
            if node.is_leaf() {
                accumulate_leaf(node, g)?;
                // After the grad lock is released: a hook may read or rewrite the grad.
                node.run_post_accumulate_grad_hooks()?;
                continue;
            }
            let mut slot = lock(&node.0.grad_fn);
            let grad_fn = slot.as_ref().ok_or_else(freed_error)?;
            let input_grads = {
                let ctx = BackwardCtx::new(
                    node.op().unwrap_or("an op"),
                    grad_fn.parents.as_slice(),
                    grad_fn.versions.as_slice(),
                    &node.0.data,
                );
                (grad_fn.backward)(g, &ctx)?
            };
            for (parent, pg) in grad_fn.parents.as_slice().iter().zip(input_grads) {
                let Some(pg) = pg else { continue };
                let Some(&j) = position.get(&parent.id()) else {
                    continue; // does not require grad
                };
                // Compare shape and dtype under one guard, released before anything else
                // locks the parent: a second read while a writer (an in-place update on
                // another thread) waits would deadlock on the writer-preferring lock.
                let target = {
                    let a = parent.array();
                    let fits = pg.shape() == a.shape() && pg.dtype() == a.dtype();
                    (!fits).then(|| (a.shape().to_vec(), a.dtype()))
                };
                let pg = match target {
                    None => pg,
                    Some((shape, dtype)) => pg.into_sum_to_shape(&shape)?.into_dtype(dtype),
                };
                match &mut grads[j] {
                    Some(acc) => acc.add_assign(&pg)?,
                    empty => *empty = Some(pg),
                }
            }
            if !retain_graph {
                // Dropping the rule and the parent edges frees everything saved for backward.
                // Parents are dropped after the lock is released, iteratively via `Node::drop`.
                let freed = slot.take();
                drop(slot);
                drop(freed);
            }
        }
        Ok(())
    }
}

/// Hashes node ids, which are distinct counter values already: one multiply spreads them
/// over the table (SipHash would cost more than the rest of a small graph's bookkeeping).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by node id.
type IdMap<V> = HashMap<usize, V, BuildHasherDefault<IdHasher>>;

fn freed_error() -> Error {
    Error::Graph(
        "backward: trying to backward through the graph a second time (its saved arrays were \
         freed by the first backward); pass retain_graph=True to the first backward"
            .into(),
    )
}

/// Adds `g` into a leaf's `.grad`, creating it on first use; a mutex makes concurrent
/// backward passes into one shared leaf add up exactly.
fn accumulate_leaf(leaf: &Tensor, g: DynArray) -> Result<()> {
    let mut slot = lock(&leaf.0.grad);
    match slot.as_ref() {
        // A write like any other: it bumps the grad's version.
        Some(existing) => existing.write().add_assign(&g),
        None => {
            *slot = Some(Storage::new(g));
            Ok(())
        }
    }
}

/// Nodes reachable from `root` that take part in backward, parents before children (so
/// `root` last), and each one's position in that order by id.
/// Iterative, so a graph a million ops deep does not overflow the stack.
fn topological_order(root: &Tensor) -> Result<(Vec<Tensor>, IdMap<usize>)> {
    let mut order = Vec::new();
    // Ids seen, mapped to their position in `order` once placed (`usize::MAX` until then).
    let mut position: IdMap<usize> = IdMap::with_capacity_and_hasher(64, Default::default());
    // (node, whether its parents have been pushed already)
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            position.insert(node.id(), order.len());
            order.push(node);
            continue;
        }
        if position.contains_key(&node.id()) {
            continue;
        }
        position.insert(node.id(), usize::MAX);
        if !node.is_leaf() {
            let grad_fn = lock(&node.0.grad_fn);
            let parents = grad_fn.as_ref().ok_or_else(freed_error)?.parents.as_slice();
            stack.push((node.clone(), true));
            for p in parents {
                if p.requires_grad() && !position.contains_key(&p.id()) {
                    stack.push((p.clone(), false));
                }
            }
        } else {
            stack.push((node, true));
        }
    }
    Ok((order, position))
}
