//! The article's design against ferrograd's: one training step of the same small MLP,
//! 4-16-16-1 (ReLU hidden layers) on a batch of 32, mean squared error, plain SGD, in f64,
//!
//! * with `NdArray<Value>` — the article's tensor, one autodiff graph node per number;
//! * with `Tensor` — the autodiff baked into the array.
//!
//! Both start from the same weights and data and compute the same loss (checked before
//! timing). Run with `cargo bench -p ferrograd --bench value_vs_tensor`; the ratio of the two
//! medians is how much baking the autodiff into the tensor buys.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferrograd::optim::{sgd_step, Sgd};
use ferrograd::{DType, DynArray, NdArray, Tensor, Value};

const SIZES: [usize; 4] = [4, 16, 16, 1];
const BATCH: usize = 32;
const LR: f64 = 0.01;

/// Deterministic pseudo-random numbers in [-1, 1) (a small LCG: no RNG state shared with
/// the library, so both models get exactly the same numbers).
fn numbers(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Weights (in, out) and biases (out,) of each layer, as flat data with shapes.
fn init() -> Vec<(Vec<f64>, Vec<usize>)> {
    let mut params = Vec::new();
    for (i, w) in SIZES.windows(2).enumerate() {
        let scale = 1.0 / (w[0] as f64).sqrt();
        let weight = numbers(w[0] * w[1], 2 * i as u64)
            .iter()
            .map(|x| x * scale)
            .collect();
        params.push((weight, vec![w[0], w[1]]));
        params.push((numbers(w[1], 2 * i as u64 + 1), vec![w[1]]));
    }
    params
}

fn data() -> (Vec<f64>, Vec<f64>) {
    (numbers(BATCH * SIZES[0], 100), numbers(BATCH, 101))
}

// ----- the article's design: NdArray<Value> ---------------------------------------------

struct ValueMlp {
    params: Vec<NdArray<Value>>,
    x: NdArray<Value>,
    y: NdArray<Value>,
}

impl ValueMlp {
    fn new() -> Self {
        let arr = |d: &[f64], s: &[usize]| {
            NdArray::<Value>::from_f64(&NdArray::from_vec(d.to_vec(), s).unwrap())
        };
        let (x, y) = data();
        ValueMlp {
            params: init().iter().map(|(d, s)| arr(d, s)).collect(),
            x: arr(&x, &[BATCH, SIZES[0]]),
            y: arr(&y, &[BATCH, 1]),
        }
    }

    fn loss(&self) -> Value {
        let mut h = self.x.clone();
        let layers = self.params.len() / 2;
        for (i, wb) in self.params.chunks(2).enumerate() {
            h = h.matmul(&wb[0]).unwrap().add(&wb[1]).unwrap();
            if i + 1 < layers {
                h = h.relu();
            }
        }
        &h.sub(&self.y).unwrap().powf(2.0).sum() * (1.0 / BATCH as f64)
    }

    fn step(&self) -> f64 {
        let loss = self.loss();
        self.params.iter().for_each(NdArray::zero_grad);
        loss.backward();
        for p in &self.params {
            for v in p.data() {
                v.set_data(v.data() - LR * v.grad());
            }
        }
        loss.data()
    }
}

// ----- ferrograd's design: Tensor ---------------------------------------------------------

struct TensorMlp {
    params: Vec<Tensor>,
    x: Tensor,
    y: Tensor,
}

impl TensorMlp {
    fn new() -> Self {
        let t = |d: &[f64], s: &[usize], rg: bool| {
            Tensor::new(DynArray::from_f64(d.to_vec(), s, DType::F64).unwrap(), rg)
        };
        let (x, y) = data();
        TensorMlp {
            params: init().iter().map(|(d, s)| t(d, s, true)).collect(),
            x: t(&x, &[BATCH, SIZES[0]], false),
            y: t(&y, &[BATCH, 1], false),
        }
    }

    fn loss(&self) -> Tensor {
        let mut h = self.x.clone();
        let layers = self.params.len() / 2;
        for (i, wb) in self.params.chunks(2).enumerate() {
            h = h.matmul(&wb[0]).unwrap().add(&wb[1]).unwrap();
            if i + 1 < layers {
                h = h.relu().unwrap();
            }
        }
        let d = h.sub(&self.y).unwrap();
        d.mul(&d).unwrap().mean(None, false).unwrap()
    }

    fn step(&self) -> f64 {
        let loss = self.loss();
        for p in &self.params {
            p.set_grad(None).unwrap();
        }
        loss.backward(None, false).unwrap();
        let sgd = Sgd {
            lr: LR,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        for p in &self.params {
            sgd_step(p, None, &sgd, false).unwrap();
        }
        let value = loss.array().item().unwrap();
        value
    }
}

fn bench(c: &mut Criterion) {
    // Same model, same data: the same loss, step after step.
    let (v, t) = (ValueMlp::new(), TensorMlp::new());
    for _ in 0..3 {
        let (lv, lt) = (v.step(), t.step());
        assert!(
            (lv - lt).abs() <= 1e-9 * lv.abs().max(1.0),
            "losses differ: {lv} vs {lt}"
        );
    }

    let mut group = c.benchmark_group("mlp_4-16-16-1_batch32_step");
    let v = ValueMlp::new();
    group.bench_function("ndarray_of_value", |b| b.iter(|| black_box(v.step())));
    let t = TensorMlp::new();
    group.bench_function("tensor", |b| b.iter(|| black_box(t.step())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
