//! `BackwardCtx`: what a backward rule may see of its op — which parents need a gradient,
//! and the saved arrays (the inputs and the output), each read only after checking that no
//! in-place write changed it since the forward.

use std::sync::RwLockReadGuard;

use super::storage::Storage;
use super::Tensor;
use crate::dynarray::DynArray;
use crate::{Error, Result};

/// The version an op's output storage has when the op makes it.
pub(super) const OUTPUT_VERSION: u64 = 0;

/// The view a backward rule gets of its op's parents and output.
pub struct BackwardCtx<'a> {
    op: &'static str,
    parents: &'a [Tensor],
    versions: &'a [u64],
    output: &'a Storage,
}

impl<'a> BackwardCtx<'a> {
    pub(super) fn new(
        op: &'static str,
        parents: &'a [Tensor],
        versions: &'a [u64],
        output: &'a Storage,
    ) -> Self {
        Self {
            op,
            parents,
            versions,
            output,
        }
    }

    /// The number of parents the op recorded.
    pub fn num_inputs(&self) -> usize {
        self.parents.len()
    }

    /// Whether parent `i` takes a gradient (a rule computes only those it needs).
    pub fn needs_grad(&self, i: usize) -> bool {
        self.parents.get(i).is_some_and(Tensor::requires_grad)
    }

    /// Reads input `i` as it was at the forward pass, or an error if it was written since.
    pub fn input(&self, i: usize) -> Result<RwLockReadGuard<'a, DynArray>> {
        let (parent, saved) = self.parent(i)?;
        let guard = parent.storage().read();
        self.check(parent.storage(), saved, || {
            format!("input {i} of {}", display_name(self.op))
        })?;
        Ok(guard)
    }

    /// Reads the op's output as it was made, or an error if it was written since.
    pub fn output(&self) -> Result<RwLockReadGuard<'a, DynArray>> {
        let guard = self.output.read();
        self.check(self.output, OUTPUT_VERSION, || {
            format!("the output of {}", display_name(self.op))
        })?;
        Ok(guard)
    }

    /// Runs `f` on several inputs at once (checked like [`input`](Self::input)), locking a
    /// storage that two of them share only once: `x * x` must not take one read lock twice,
    /// which can deadlock behind a writer waiting on it.
    pub fn with_inputs<R>(
        &self,
        indices: &[usize],
        f: impl FnOnce(&[&DynArray]) -> Result<R>,
    ) -> Result<R> {
        let mut guards: Vec<(usize, RwLockReadGuard<'a, DynArray>)> =
            Vec::with_capacity(indices.len());
        let mut slots = Vec::with_capacity(indices.len());
        for &i in indices {
            let (parent, _) = self.parent(i)?;
            let shared = guards
                .iter()
                .position(|(j, _)| self.parents[*j].shares_storage(parent));
            match shared {
                Some(k) => {
                    // The same storage: the same version was saved for both.
                    slots.push(k);
                }
                None => {
                    slots.push(guards.len());
                    guards.push((i, self.input(i)?));
                }
            }
        }
        let arrays: Vec<&DynArray> = slots.iter().map(|&k| &*guards[k].1).collect();
        f(&arrays)
    }

    fn parent(&self, i: usize) -> Result<(&'a Tensor, u64)> {
        match (self.parents.get(i), self.versions.get(i)) {
            (Some(p), Some(&v)) => Ok((p, v)),
            _ => Err(Error::Graph(format!(
                "internal error: the backward rule of {} asked for input {i} of {}",
                display_name(self.op),
                self.parents.len()
            ))),
        }
    }

    fn check(&self, storage: &Storage, saved: u64, what: impl FnOnce() -> String) -> Result<()> {
        let now = storage.version();
        if now == saved {
            return Ok(());
        }
        Err(Error::Graph(format!(
            "backward: {} was modified by an in-place operation: version {now}, expected \
             {saved}; the op was {}. Its backward rule needs the value it had: write out of \
             place instead (`x = x + 1`, not `x += 1`), or only after backward",
            what(),
            display_name(self.op)
        )))
    }
}

/// The name an op's tag stands for in messages (`t._op` keeps the operator symbol).
pub fn display_name(op: &str) -> &str {
    match op {
        "+" => "add",
        "-" => "sub",
        "*" => "mul",
        "/" => "div",
        "**" => "pow",
        "@" => "matmul",
        other => other,
    }
}
