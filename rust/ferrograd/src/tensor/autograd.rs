//! Reverse-mode autodiff over `Tensor` graphs: an iterative topological walk, gradients
//! summed to each parent's shape, leaves accumulating, the graph freed as it is walked.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use super::{lock, write, Tensor};
use crate::dynarray::DynArray;
use crate::shape::fmt_shape;
use crate::{Error, Result};

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
        let order = topological_order(self)?;
        let mut grads: HashMap<usize, DynArray> = HashMap::new();
        grads.insert(self.id(), seed);
        for node in order.iter().rev() {
            let Some(g) = grads.remove(&node.id()) else {
                continue;
            };
            if node.is_leaf() {
                accumulate_leaf(node, g)?;
                continue;
            }
            let mut slot = lock(&node.0.grad_fn);
            let grad_fn = slot.as_ref().ok_or_else(freed_error)?;
            let input_grads = {
                let out = node.array();
                (grad_fn.backward)(&g, &grad_fn.parents, &out)?
            };
            for (parent, pg) in grad_fn.parents.iter().zip(input_grads) {
                let Some(pg) = pg else { continue };
                if !parent.requires_grad() {
                    continue;
                }
                // Read shape and dtype under one guard, released before anything else locks
                // the parent: a second read while a writer (an in-place update on another
                // thread) waits would deadlock on the writer-preferring lock.
                let (shape, dtype) = {
                    let a = parent.array();
                    (a.shape().to_vec(), a.dtype())
                };
                let pg = pg.into_sum_to_shape(&shape)?.into_dtype(dtype);
                match grads.get_mut(&parent.id()) {
                    Some(acc) => acc.add_assign(&pg)?,
                    None => {
                        grads.insert(parent.id(), pg);
                    }
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
        Some(existing) => write(existing).add_assign(&g),
        None => {
            *slot = Some(Arc::new(RwLock::new(g)));
            Ok(())
        }
    }
}

/// Nodes reachable from `root` that take part in backward, parents before children.
/// Iterative, so a graph a million ops deep does not overflow the stack.
fn topological_order(root: &Tensor) -> Result<Vec<Tensor>> {
    let mut order = Vec::new();
    let mut visited: HashSet<usize> = HashSet::new();
    // (node, whether its parents have been pushed already)
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.push(node);
            continue;
        }
        if !visited.insert(node.id()) {
            continue;
        }
        if !node.is_leaf() && lock(&node.0.grad_fn).is_none() {
            return Err(freed_error());
        }
        let parents = node.parents();
        stack.push((node, true));
        for p in parents {
            if p.requires_grad() && !visited.contains(&p.id()) {
                stack.push((p, false));
            }
        }
    }
    Ok(order)
}
