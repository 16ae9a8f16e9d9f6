//! `Value`: one `f64` with scalar reverse-mode autodiff, as in the article (and micrograd).
//!
//! A `Value` is a shared graph node (`Rc<…>`): cloning it shares the node. Each op
//! computes its output *and* its local derivatives (d out / d parent) in the same few lines,
//! so every backward rule sits next to its forward; [`Value::backward`] then only multiplies
//! and accumulates along an iteratively computed topological order. Dropping a graph is
//! iterative too, so a chain of a million ops neither backpropagates nor drops recursively.
//!
//! Operators (`+ - * /`, unary `-`) for `Value`, `&Value` and `f64` on either side live in
//! the sibling module `ops`. Everything follows IEEE: `log` of a negative number is NaN,
//! division by zero is infinite; nothing panics.

mod ops;

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Source of node ids: unique in the process, cheap (no string, no UUID).
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
/// Source of traversal marks: each topological sort uses a fresh one, so no visited set.
static NEXT_EPOCH: AtomicUsize = AtomicUsize::new(1);

/// The operation that produced a node: a tag for display and graph drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A node made by [`Value::new`], not by an op.
    Leaf,
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `a ** b` (a `Value` or an `f64` exponent)
    Pow,
    /// `-a`
    Neg,
    /// `max(a, 0)`
    Relu,
    /// `tanh(a)`
    Tanh,
    /// `e ** a`
    Exp,
    /// `ln(a)`
    Log,
    /// `1 / (1 + e ** -a)`
    Sigmoid,
}

impl Op {
    /// The short name micrograd prints (`"+"`, `"**"`, `"tanh"`, …); `None` for a leaf.
    pub fn name(&self) -> Option<&'static str> {
        Some(match self {
            Op::Leaf => return None,
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Pow => "**",
            Op::Neg => "neg",
            Op::Relu => "relu",
            Op::Tanh => "tanh",
            Op::Exp => "exp",
            Op::Log => "log",
            Op::Sigmoid => "sigmoid",
        })
    }
}

/// One node of the graph. `local[i]` is d(data)/d(prev[i].data), fixed when the op ran.
///
/// The inputs never change after the op, so only the numbers are `Cell`s: a traversal
/// borrows the inputs (`&ValueData`) for as long as it holds the root, with no reference
/// counting and no borrow flags.
struct ValueData {
    data: Cell<f64>,
    grad: Cell<f64>,
    id: usize,
    op: Op,
    /// The mark of the last topological sort that visited this node.
    mark: Cell<usize>,
    prev: [Option<Value>; 2],
    local: [f64; 2],
}

/// A scalar that remembers how it was computed. `Clone` shares the node.
#[derive(Clone)]
pub struct Value(Rc<ValueData>);

impl Value {
    /// A leaf holding `data`, with gradient 0.
    pub fn new(data: f64) -> Value {
        Value::node(data, Op::Leaf, [None, None], [0.0, 0.0])
    }

    fn node(data: f64, op: Op, prev: [Option<Value>; 2], local: [f64; 2]) -> Value {
        Value(Rc::new(ValueData {
            data: Cell::new(data),
            grad: Cell::new(0.0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            op,
            mark: Cell::new(0),
            prev,
            local,
        }))
    }

    /// The result of a one-input op: `out` and d out / d self.
    fn unary(&self, op: Op, out: f64, d_self: f64) -> Value {
        Value::node(out, op, [Some(self.clone()), None], [d_self, 0.0])
    }

    /// The result of a two-input op: `out`, d out / d self and d out / d other.
    fn binary(&self, other: &Value, op: Op, out: f64, d_self: f64, d_other: f64) -> Value {
        Value::node(
            out,
            op,
            [Some(self.clone()), Some(other.clone())],
            [d_self, d_other],
        )
    }

    /// The number this node holds.
    pub fn data(&self) -> f64 {
        self.0.data.get()
    }

    /// d(root)/d(self) after the last [`backward`](Value::backward) through this node.
    pub fn grad(&self) -> f64 {
        self.0.grad.get()
    }

    /// Overwrites the number (an optimizer step). Ops already built keep their derivatives.
    pub fn set_data(&self, data: f64) {
        self.0.data.set(data);
    }

    /// Overwrites the gradient (`set_grad(0.0)` is zero_grad).
    pub fn set_grad(&self, grad: f64) {
        self.0.grad.set(grad);
    }

    /// A process-unique id, for drawing the graph.
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// The op that made this node.
    pub fn op(&self) -> Op {
        self.0.op
    }

    /// The op's short name, `None` on a leaf.
    pub fn op_name(&self) -> Option<&'static str> {
        self.op().name()
    }

    /// The inputs of the op that made this node (empty for a leaf; `a + a` lists `a` twice).
    pub fn prev(&self) -> Vec<Value> {
        self.0.prev.iter().flatten().cloned().collect()
    }

    /// Whether `self` and `other` are the same node.
    pub fn ptr_eq(&self, other: &Value) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    // ---- ops: each computes its output and its local derivatives together ----

    /// `self + other`.
    pub fn add_value(&self, other: &Value) -> Value {
        let out = self.data() + other.data();
        self.binary(other, Op::Add, out, 1.0, 1.0)
    }

    /// `self - other`.
    pub fn sub_value(&self, other: &Value) -> Value {
        let out = self.data() - other.data();
        self.binary(other, Op::Sub, out, 1.0, -1.0)
    }

    /// `self * other`.
    pub fn mul_value(&self, other: &Value) -> Value {
        let (x, y) = (self.data(), other.data());
        self.binary(other, Op::Mul, x * y, y, x)
    }

    /// `self / other`: d/dx = 1/y, d/dy = -x/y².
    pub fn div_value(&self, other: &Value) -> Value {
        let (x, y) = (self.data(), other.data());
        self.binary(other, Op::Div, x / y, 1.0 / y, -x / (y * y))
    }

    /// `self ** other`, differentiable in both: d/dx = y·x^(y-1), d/dy = ln(x)·x^y.
    ///
    /// IEEE throughout (a negative base gives NaN for d/dy), except that d/dy is 0 where
    /// x = 0 and y ≥ 0: there x^y is constant (0, or 1 at y = 0), as PyTorch also has it.
    pub fn pow(&self, other: &Value) -> Value {
        let (x, y) = (self.data(), other.data());
        let out = x.powf(y);
        let d_x = if y == 0.0 { 0.0 } else { y * x.powf(y - 1.0) };
        let d_y = if x == 0.0 && y >= 0.0 {
            0.0
        } else {
            x.ln() * out
        };
        self.binary(other, Op::Pow, out, d_x, d_y)
    }

    /// `self ** n` for a constant exponent: d/dx = n·x^(n-1).
    pub fn powf(&self, n: f64) -> Value {
        let x = self.data();
        let d_x = if n == 0.0 { 0.0 } else { n * x.powf(n - 1.0) };
        self.unary(Op::Pow, x.powf(n), d_x)
    }

    /// `-self`.
    pub fn neg_value(&self) -> Value {
        self.unary(Op::Neg, -self.data(), -1.0)
    }

    /// `max(self, 0)` (NaN stays NaN): d/dx = 1 where x > 0, else 0.
    pub fn relu(&self) -> Value {
        let x = self.data();
        let out = if x > 0.0 || x.is_nan() { x } else { 0.0 };
        self.unary(Op::Relu, out, if x > 0.0 { 1.0 } else { 0.0 })
    }

    /// `tanh(self)`: d/dx = 1 - tanh².
    pub fn tanh(&self) -> Value {
        let t = self.data().tanh();
        self.unary(Op::Tanh, t, 1.0 - t * t)
    }

    /// `e ** self`: d/dx = e^x.
    pub fn exp(&self) -> Value {
        let e = self.data().exp();
        self.unary(Op::Exp, e, e)
    }

    /// `ln(self)` (NaN below 0, -inf at 0): d/dx = 1/x.
    pub fn log(&self) -> Value {
        let x = self.data();
        self.unary(Op::Log, x.ln(), 1.0 / x)
    }

    /// `1 / (1 + e^-self)`, computed without overflow: d/dx = s·(1 - s).
    pub fn sigmoid(&self) -> Value {
        let x = self.data();
        let s = if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        };
        self.unary(Op::Sigmoid, s, s * (1.0 - s))
    }

    // ---- backpropagation ----

    /// Backpropagates from this node: d(self)/d(node) lands in every node's `grad`.
    ///
    /// The grads of the graph's inner (non-leaf) nodes are reset first and the root is
    /// seeded with 1, so a second call adds to the leaves only. A node used twice gets both
    /// contributions. The traversal uses an explicit stack: any depth works.
    pub fn backward(&self) {
        Value::backward_many(std::slice::from_ref(self));
    }

    /// Backpropagates from several roots at once, each seeded with 1: the gradients of
    /// their sum, without building the sum (the article's backward over a tensor's elements).
    pub fn backward_many(roots: &[Value]) {
        let order = Value::topological_order(roots);
        for n in &order {
            if n.op != Op::Leaf {
                n.grad.set(0.0);
            }
        }
        for r in roots {
            r.0.grad.set(r.0.grad.get() + 1.0);
        }
        for n in order.iter().rev() {
            let grad = n.grad.get();
            for (p, d) in n.prev.iter().zip(n.local) {
                if let Some(p) = p {
                    p.0.grad.set(p.0.grad.get() + d * grad);
                }
            }
        }
    }

    /// Every node reachable from `roots`, each after all of its inputs (iterative DFS). The
    /// nodes are borrowed from the roots: no reference count changes.
    fn topological_order(roots: &[Value]) -> Vec<&ValueData> {
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed);
        let mut order = Vec::new();
        // (node, its inputs are done): a node is emitted when popped the second time.
        let mut stack: Vec<(&ValueData, bool)> =
            roots.iter().rev().map(|r| (&*r.0, false)).collect();
        while let Some((n, inputs_done)) = stack.pop() {
            if inputs_done {
                order.push(n);
                continue;
            }
            if n.mark.get() == epoch {
                continue;
            }
            n.mark.set(epoch);
            stack.push((n, true));
            for p in n.prev.iter().flatten() {
                if p.0.mark.get() != epoch {
                    stack.push((&p.0, false));
                }
            }
        }
        order
    }
}

impl Drop for ValueData {
    /// Dismantles the graph iteratively: the default drop of a long `Rc` chain recurses
    /// once per node and overflows the stack. Inputs that only this node keeps alive are
    /// unwrapped and their own inputs moved onto a work stack before they are dropped;
    /// inputs still held elsewhere only lose one count (and need no work stack at all).
    fn drop(&mut self) {
        let mut work: Vec<Value> = Vec::new();
        let release = |prev: &mut [Option<Value>; 2], work: &mut Vec<Value>| {
            for p in prev.iter_mut().filter_map(Option::take) {
                if Rc::strong_count(&p.0) == 1 {
                    work.push(p);
                }
                // A shared input only loses one count here; its other owners keep it.
            }
        };
        release(&mut self.prev, &mut work);
        while let Some(v) = work.pop() {
            if let Ok(mut inner) = Rc::try_unwrap(v.0) {
                release(&mut inner.prev, &mut work);
                // `inner` drops here with no inputs left: no recursion.
            }
        }
    }
}

impl From<f64> for Value {
    fn from(data: f64) -> Value {
        Value::new(data)
    }
}

impl fmt::Display for Value {
    /// `Value(data=2.0, grad=0.0)`, as micrograd prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value(data={:?}, grad={:?})", self.data(), self.grad())
    }
}

impl fmt::Debug for Value {
    /// Same as `Display`: never walks the graph, whatever its depth.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::iter::Sum for Value {
    /// Adds the values left to right; an empty sum is a leaf 0.
    fn sum<I: Iterator<Item = Value>>(iter: I) -> Value {
        let mut iter = iter;
        match iter.next() {
            None => Value::new(0.0),
            Some(first) => iter.fold(first, |acc, x| acc.add_value(&x)),
        }
    }
}

impl<'a> std::iter::Sum<&'a Value> for Value {
    fn sum<I: Iterator<Item = &'a Value>>(iter: I) -> Value {
        iter.cloned().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_has_no_op_and_no_inputs() {
        let v = Value::new(3.0);
        assert_eq!(v.op(), Op::Leaf);
        assert_eq!(v.op_name(), None);
        assert!(v.prev().is_empty());
        assert_eq!(v.grad(), 0.0);
    }

    #[test]
    fn ids_are_distinct_and_clones_share_the_node() {
        let a = Value::new(1.0);
        let b = Value::new(1.0);
        let c = a.clone();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), c.id());
        assert!(a.ptr_eq(&c));
        c.set_data(5.0);
        assert_eq!(a.data(), 5.0);
    }

    #[test]
    fn topological_order_puts_inputs_before_outputs_and_lists_each_node_once() {
        let a = Value::new(2.0);
        let b = a.mul_value(&a);
        let c = b.add_value(&a);
        let order = Value::topological_order(std::slice::from_ref(&c));
        assert_eq!(order.len(), 3);
        assert!(std::ptr::eq(order[0], &*a.0));
        assert!(std::ptr::eq(order[1], &*b.0));
        assert!(std::ptr::eq(order[2], &*c.0));
    }

    #[test]
    fn dropping_a_shared_subgraph_keeps_the_nodes_still_in_use() {
        let a = Value::new(2.0);
        let b = a.exp();
        let c = b.tanh();
        drop(c);
        assert_eq!(b.prev().len(), 1);
        assert!(b.prev()[0].ptr_eq(&a));
    }

    #[test]
    fn display_and_debug_print_like_micrograd() {
        let v = Value::new(2.0);
        assert_eq!(v.to_string(), "Value(data=2.0, grad=0.0)");
        assert_eq!(format!("{v:?}"), "Value(data=2.0, grad=0.0)");
    }

    #[test]
    fn every_op_has_a_name_except_the_leaf() {
        let ops = [
            (Op::Add, "+"),
            (Op::Sub, "-"),
            (Op::Mul, "*"),
            (Op::Div, "/"),
            (Op::Pow, "**"),
            (Op::Neg, "neg"),
            (Op::Relu, "relu"),
            (Op::Tanh, "tanh"),
            (Op::Exp, "exp"),
            (Op::Log, "log"),
            (Op::Sigmoid, "sigmoid"),
        ];
        for (op, name) in ops {
            assert_eq!(op.name(), Some(name));
        }
        assert_eq!(Op::Leaf.name(), None);
    }
}
