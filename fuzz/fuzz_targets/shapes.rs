//! Fuzzes the core's shape code: NumPy broadcasting, `plan_index` (ints, slices with any
//! step, `None`, `...`, integer arrays), reshape inference with `-1`, permutes, cat/stack,
//! and reductions (sum/mean/max/min/argmax) over odd shapes and axis lists — in `NdArray`
//! and, with backward, in `Tensor`.
//!
//! Every call must return `Ok` or `Err`, never panic (no index out of bounds, no overflow,
//! no allocation abort), and each `Ok` is checked against invariants that a reference
//! computation gives independently.
#![no_main]

use arbitrary::Arbitrary;
use ferrograd::ndarray::index::plan_index;
use ferrograd::ndarray::{IndexItem, ReduceOp};
use ferrograd::shape::{broadcast_shapes, normalize_axes};
use ferrograd::{DType, NdArray, Tensor};
use libfuzzer_sys::fuzz_target;

/// Caps every generated array so that one input never allocates much.
const MAX_ELEMS: usize = 4096;

#[derive(Arbitrary, Debug)]
enum Item {
    Int(i8),
    Slice(Option<i8>, Option<i8>, Option<i8>),
    NewAxis,
    Ellipsis,
    Array(Vec<i8>, bool),
}

#[derive(Arbitrary, Debug)]
enum Case {
    Broadcast(Vec<u8>, Vec<u8>),
    Index(Vec<u8>, Vec<Item>),
    Reshape(Vec<u8>, Vec<i8>),
    Reduce(Vec<u8>, Option<Vec<i8>>, bool, u8),
    Arg(Vec<u8>, Option<i8>, bool),
    Permute(Vec<u8>, Vec<u8>),
    Join(Vec<Vec<u8>>, i8, bool),
}

/// A shape of at most 6 dims of at most 7 each, or `None` past `MAX_ELEMS` elements.
fn shape(raw: &[u8]) -> Option<Vec<usize>> {
    let s: Vec<usize> = raw.iter().take(6).map(|&d| (d % 8) as usize).collect();
    (s.iter().product::<usize>() <= MAX_ELEMS).then_some(s)
}

fn iota(shape: &[usize]) -> NdArray<f64> {
    let n: usize = shape.iter().product();
    NdArray::from_vec((0..n).map(|i| i as f64).collect(), shape).unwrap()
}

fn leaf(shape: &[usize], value: f64) -> Tensor {
    Tensor::full(shape, value, DType::F64, true).unwrap()
}

fn grad_sum(t: &Tensor) -> f64 {
    t.grad()
        .map(|g| g.read().unwrap().to_f64_vec().iter().sum())
        .unwrap_or(0.0)
}

fn items(raw: &[Item]) -> Vec<IndexItem> {
    raw.iter()
        .take(7)
        .map(|it| match it {
            Item::Int(i) => IndexItem::Int(*i as isize),
            Item::Slice(a, b, c) => IndexItem::slice(
                a.map(|v| v as isize),
                b.map(|v| v as isize),
                c.map(|v| v as isize),
            ),
            Item::NewAxis => IndexItem::NewAxis,
            Item::Ellipsis => IndexItem::Ellipsis,
            Item::Array(v, two_d) => {
                let v: Vec<isize> = v.iter().take(6).map(|&i| i as isize).collect();
                if *two_d && v.len() % 2 == 0 && !v.is_empty() {
                    IndexItem::Array {
                        shape: vec![2, v.len() / 2],
                        indices: v,
                    }
                } else {
                    IndexItem::list(v)
                }
            }
        })
        .collect()
}

fuzz_target!(|case: Case| {
    match case {
        Case::Broadcast(a, b) => {
            let (Some(a), Some(b)) = (shape(&a), shape(&b)) else {
                return;
            };
            let ab = broadcast_shapes("fuzz", &a, &b);
            let ba = broadcast_shapes("fuzz", &b, &a);
            assert_eq!(ab.is_ok(), ba.is_ok(), "broadcast must be symmetric");
            let sum = iota(&a).binary("add", &iota(&b), |x, y| x + y);
            assert_eq!(sum.is_ok(), ab.is_ok());
            if let (Ok(out), Ok(back)) = (&ab, &ba) {
                assert_eq!(out, back);
                assert_eq!(out.len(), a.len().max(b.len()));
                for (i, &d) in out.iter().enumerate() {
                    let pick = |s: &[usize]| {
                        let off = out.len() - s.len();
                        if i < off {
                            1
                        } else {
                            s[i - off]
                        }
                    };
                    let (da, db) = (pick(&a), pick(&b));
                    assert!(d == da.max(db) || (da == 0 || db == 0) && d == 0);
                    assert!(da == db || da == 1 || db == 1);
                }
                assert_eq!(sum.unwrap().shape(), out.as_slice());
            }
        }
        Case::Index(s, raw) => {
            let Some(s) = shape(&s) else { return };
            let items = items(&raw);
            let size: usize = s.iter().product();
            let Ok(plan) = plan_index(&s, &items) else {
                // The array and the tensor must refuse it too, and not panic.
                assert!(iota(&s).index(&items).is_err());
                return;
            };
            assert_eq!(plan.offsets.len(), plan.shape.iter().product::<usize>());
            assert!(
                plan.offsets.iter().all(|&o| o < size),
                "offset out of range"
            );
            let got = iota(&s).index(&items).unwrap();
            assert_eq!(got.shape(), plan.shape.as_slice());
            let want: Vec<f64> = plan.offsets.iter().map(|&o| o as f64).collect();
            assert_eq!(got.data(), want.as_slice());
            // Backward scatters one per use: the grad sums to the output size.
            let x = leaf(&s, 1.0);
            let y = x.index(&items).unwrap();
            y.sum(None, false).unwrap().backward(None, false).unwrap();
            assert_eq!(grad_sum(&x), plan.offsets.len() as f64);
        }
        Case::Reshape(s, target) => {
            let Some(s) = shape(&s) else { return };
            let target: Vec<isize> = target.iter().take(6).map(|&d| (d % 9) as isize).collect();
            let a = iota(&s);
            if let Ok(r) = a.reshape(&target) {
                assert_eq!(r.size(), a.size());
                assert_eq!(r.data(), a.data());
                assert!(target.iter().filter(|&&d| d == -1).count() <= 1);
                for (&t, &d) in target.iter().zip(r.shape()) {
                    assert!(t == -1 || t as usize == d);
                }
            }
        }
        Case::Reduce(s, axes, keepdims, op) => {
            let Some(s) = shape(&s) else { return };
            let axes: Option<Vec<isize>> =
                axes.map(|v| v.iter().take(7).map(|&a| a as isize).collect());
            let op = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min][op as usize % 4];
            let Ok(norm) = normalize_axes("fuzz", axes.as_deref(), s.len()) else {
                assert!(leaf(&s, 1.0).sum(axes.as_deref(), keepdims).is_err());
                return;
            };
            let count: usize = norm.iter().map(|&a| s[a]).product();
            let ones = NdArray::from_vec(vec![1.0f64; s.iter().product()], &s).unwrap();
            let r = ones.reduce(op, &norm, keepdims);
            if count == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
                assert!(r.is_err());
                return;
            }
            let r = r.unwrap();
            let expect = match op {
                ReduceOp::Sum => count as f64,
                ReduceOp::Mean if count == 0 => f64::NAN,
                _ => 1.0,
            };
            assert!(r
                .data()
                .iter()
                .all(|&v| v == expect || v.is_nan() && expect.is_nan()));
            // Backward through the same reduction: every group of a constant input shares a
            // gradient of one, so the grad sums to the output size (or is all ones for sum).
            let x = leaf(&s, 1.0);
            let y = match op {
                ReduceOp::Sum => x.sum(axes.as_deref(), keepdims),
                ReduceOp::Mean => x.mean(axes.as_deref(), keepdims),
                ReduceOp::Max => x.max(axes.as_deref(), keepdims),
                ReduceOp::Min => x.min(axes.as_deref(), keepdims),
            }
            .unwrap();
            assert_eq!(y.shape(), r.shape());
            y.sum(None, false).unwrap().backward(None, false).unwrap();
            let total = grad_sum(&x);
            let out_size = r.size() as f64;
            let want = if op == ReduceOp::Sum {
                out_size * count as f64
            } else {
                out_size
            };
            if count > 0 {
                assert!(
                    (total - want).abs() <= 1e-9 * want.max(1.0),
                    "{total} != {want}"
                );
            }
        }
        Case::Arg(s, axis, keepdims) => {
            let Some(s) = shape(&s) else { return };
            let t = Tensor::new(ferrograd::DynArray::F64(iota(&s)), false);
            let axis = axis.map(|a| a as isize);
            if let Ok(r) = t.argmax(axis, keepdims) {
                let v = r.array().to_f64_vec();
                let n = match axis {
                    None => s.iter().product::<usize>(),
                    Some(a) => {
                        s[if a < 0 {
                            (a + s.len() as isize) as usize
                        } else {
                            a as usize
                        }]
                    }
                };
                assert!(
                    v.iter().all(|&i| i == (n - 1) as f64),
                    "argmax of iota is the last"
                );
            }
        }
        Case::Permute(s, perm) => {
            let Some(s) = shape(&s) else { return };
            let perm: Vec<usize> = perm.iter().take(7).map(|&p| (p % 8) as usize).collect();
            let a = iota(&s);
            if let Ok(p) = a.permute(&perm) {
                let mut inverse = vec![0; perm.len()];
                for (i, &q) in perm.iter().enumerate() {
                    inverse[q] = i;
                }
                assert_eq!(p.permute(&inverse).unwrap(), a);
            }
        }
        Case::Join(shapes, axis, stack) => {
            let shapes: Vec<Vec<usize>> = shapes.iter().take(4).filter_map(|s| shape(s)).collect();
            let arrays: Vec<NdArray<f64>> = shapes.iter().map(|s| iota(s)).collect();
            let refs: Vec<&NdArray<f64>> = arrays.iter().collect();
            let r = if stack {
                NdArray::stack(&refs, axis as isize)
            } else {
                NdArray::concatenate(&refs, axis as isize)
            };
            if let Ok(r) = r {
                let total: usize = arrays.iter().map(|a| a.size()).sum();
                assert_eq!(r.size(), total);
                assert_eq!(r.data().len(), total);
            }
        }
    }
});
