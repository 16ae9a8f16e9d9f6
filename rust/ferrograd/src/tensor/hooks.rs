//! Post-accumulate-grad hooks (PyTorch's `register_post_accumulate_grad_hook`): code that runs
//! on a leaf right after backward has added this pass's gradient into its `.grad`.
//!
//! Data-parallel training uses them to start a gradient's all-reduce as soon as it is final,
//! while backward goes on computing the rest. The engine calls them with no lock of the
//! graph held, so a hook may read and write the leaf's data and grad, or block on I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{lock, Node, Tensor};
use crate::{Error, Result};

/// A post-accumulate-grad hook: called with the leaf whose `.grad` was just updated. An error
/// stops backward and is returned by it.
pub type PostAccumulateGradHook = Arc<dyn Fn(&Tensor) -> Result<()> + Send + Sync>;

/// The hooks of one node, in registration order, each with the id its handle removes it by.
#[derive(Default)]
pub(super) struct HookList(Mutex<Vec<(u64, PostAccumulateGradHook)>>);

static NEXT_HOOK_ID: AtomicU64 = AtomicU64::new(0);

/// Removes the hook it was returned for (`handle.remove()`); holds the tensor only weakly, so a
/// kept handle does not keep the tensor alive.
#[derive(Clone)]
pub struct HookHandle {
    node: Weak<Node>,
    id: u64,
}

impl HookHandle {
    /// Unregisters the hook. Removing twice, or after the tensor is gone, does nothing.
    pub fn remove(&self) {
        if let Some(node) = self.node.upgrade() {
            lock(&node.hooks.0).retain(|(id, _)| *id != self.id);
        }
    }
}

impl std::fmt::Debug for HookHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Tensor {
    /// Registers `hook` to run after each backward pass has accumulated this leaf's gradient,
    /// with the leaf as argument (its `.grad` already holds the new sum). Hooks run in the
    /// order they were registered. Only leaves that require grad take hooks (PyTorch's rule).
    pub fn register_post_accumulate_grad_hook(
        &self,
        hook: PostAccumulateGradHook,
    ) -> Result<HookHandle> {
        if !self.requires_grad() {
            return Err(Error::Graph(
                "register_post_accumulate_grad_hook: cannot register a hook on a tensor that \
                 doesn't require gradient"
                    .into(),
            ));
        }
        if !self.is_leaf() {
            return Err(Error::Graph(
                "register_post_accumulate_grad_hook: post accumulate grad hooks cannot be \
                 registered on non-leaf tensors"
                    .into(),
            ));
        }
        let id = NEXT_HOOK_ID.fetch_add(1, Ordering::Relaxed);
        lock(&self.0.hooks.0).push((id, hook));
        Ok(HookHandle {
            node: Arc::downgrade(&self.0),
            id,
        })
    }

    /// How many post-accumulate-grad hooks this tensor has.
    pub fn post_accumulate_grad_hook_count(&self) -> usize {
        lock(&self.0.hooks.0).len()
    }

    /// Runs the hooks after backward accumulated into this leaf. The list is copied out first,
    /// so no lock is held while they run (a hook may register or remove hooks, or take the
    /// leaf's locks).
    pub(super) fn run_post_accumulate_grad_hooks(&self) -> Result<()> {
        let hooks: Vec<PostAccumulateGradHook> = {
            let list = lock(&self.0.hooks.0);
            if list.is_empty() {
                return Ok(());
            }
            list.iter().map(|(_, h)| Arc::clone(h)).collect()
        };
        hooks.iter().try_for_each(|hook| hook(self))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::DType;

    fn leaf(values: &[f64]) -> Tensor {
        let data = crate::DynArray::from_f64(values.to_vec(), &[values.len()], DType::F64)
            .expect("a valid shape");
        Tensor::new(data, true)
    }

    fn grad_of(t: &Tensor) -> Vec<f64> {
        t.grad().expect("a grad").read().to_f64_vec()
    }

    #[test]
    fn a_hook_sees_the_accumulated_gradient_once_per_backward() {
        let w = leaf(&[1.0, 2.0]);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        w.register_post_accumulate_grad_hook(Arc::new(move |t: &Tensor| {
            lock(&log).push(grad_of(t));
            Ok(())
        }))
        .unwrap();
        // w appears twice in the graph (w * w + w): the hook still runs once, on the sum.
        let y = w
            .mul(&w)
            .unwrap()
            .add(&w)
            .unwrap()
            .sum(None, false)
            .unwrap();
        y.backward(None, true).unwrap();
        y.backward(None, false).unwrap();
        // d/dw (w² + w) = 2w + 1; the second pass adds the same again.
        assert_eq!(*lock(&seen), vec![vec![3.0, 5.0], vec![6.0, 10.0]]);
    }

    #[test]
    fn a_hook_may_rewrite_the_gradient_because_no_lock_is_held() {
        let w = leaf(&[1.0, 2.0, 3.0]);
        w.register_post_accumulate_grad_hook(Arc::new(|t: &Tensor| {
            let g = t.grad().expect("accumulated");
            let halved: Vec<f64> = g.read().to_f64_vec().iter().map(|x| x / 2.0).collect();
            *g.write() = crate::DynArray::from_f64(halved, &[3], DType::F64)?;
            // Reading the leaf's own data too must not deadlock.
            let _ = t.array().to_f64_vec();
            Ok(())
        }))
        .unwrap();
        w.mul_scalar(4.0)
            .unwrap()
            .sum(None, false)
            .unwrap()
            .backward(None, false)
            .unwrap();
        assert_eq!(grad_of(&w), vec![2.0, 2.0, 2.0]);
    }

    #[test]
    fn hooks_run_in_registration_order_and_a_removed_one_no_longer_runs() {
        let w = leaf(&[1.0]);
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<HookHandle> = (0..3)
            .map(|i| {
                let order = Arc::clone(&order);
                w.register_post_accumulate_grad_hook(Arc::new(move |_: &Tensor| {
                    lock(&order).push(i);
                    Ok(())
                }))
                .unwrap()
            })
            .collect();
        handles[1].remove();
        handles[1].remove(); // twice is harmless
        assert_eq!(w.post_accumulate_grad_hook_count(), 2);
        w.sum(None, false).unwrap().backward(None, false).unwrap();
        assert_eq!(*lock(&order), vec![0, 2]);
    }

    #[test]
    fn a_failing_hook_stops_backward_with_its_error_after_the_grad_was_accumulated() {
        let w = leaf(&[1.0, 1.0]);
        let later = Arc::new(AtomicUsize::new(0));
        w.register_post_accumulate_grad_hook(Arc::new(|_: &Tensor| {
            Err(Error::Value("the hook refused".into()))
        }))
        .unwrap();
        let counter = Arc::clone(&later);
        w.register_post_accumulate_grad_hook(Arc::new(move |_: &Tensor| {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }))
        .unwrap();
        let err = w
            .sum(None, false)
            .unwrap()
            .backward(None, false)
            .unwrap_err();
        assert_eq!(err, Error::Value("the hook refused".into()));
        assert_eq!(grad_of(&w), vec![1.0, 1.0]);
        assert_eq!(later.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn hooks_are_only_for_leaves_that_require_grad() {
        let plain = Tensor::new(crate::DynArray::full(&[2], 1.0, DType::F32).unwrap(), false);
        let err = plain
            .register_post_accumulate_grad_hook(Arc::new(|_: &Tensor| Ok(())))
            .unwrap_err();
        assert!(matches!(&err, Error::Graph(m) if m.contains("doesn't require gradient")));
        let inner = leaf(&[1.0]).exp().unwrap();
        let err = inner
            .register_post_accumulate_grad_hook(Arc::new(|_: &Tensor| Ok(())))
            .unwrap_err();
        assert!(matches!(&err, Error::Graph(m) if m.contains("non-leaf")));
    }

    #[test]
    fn a_handle_outliving_its_tensor_removes_nothing_and_does_not_crash() {
        let w = leaf(&[1.0]);
        let handle = w
            .register_post_accumulate_grad_hook(Arc::new(|_: &Tensor| Ok(())))
            .unwrap();
        drop(w);
        handle.remove();
    }

    #[test]
    fn leaves_without_a_gradient_this_pass_run_no_hook() {
        let used = leaf(&[1.0]);
        let unused = leaf(&[1.0]);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        unused
            .register_post_accumulate_grad_hook(Arc::new(move |_: &Tensor| {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }))
            .unwrap();
        used.sum(None, false)
            .unwrap()
            .backward(None, false)
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 0);
    }
}
