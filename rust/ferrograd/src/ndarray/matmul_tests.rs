//! Tests of `matmul` and `matmul_t` against hand-computed products and a naive loop.

use super::super::{Float, NdArray};
use crate::shape::{broadcast_shapes, broadcast_strides, size_of, strides_of};
use crate::Error;

use crate::test_util::filled;

/// Batched matmul of two ≥2-D arrays by triple loop over broadcast batches, in f64.
fn naive<T: Float>(a: &NdArray<T>, b: &NdArray<T>) -> NdArray<f64> {
    let (sa, sb) = (a.shape(), b.shape());
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    assert_eq!(k, sb[sb.len() - 2]);
    let batch = broadcast_shapes("naive", &sa[..sa.len() - 2], &sb[..sb.len() - 2]).unwrap();
    let (ba, bb) = (
        broadcast_strides(&sa[..sa.len() - 2], &batch),
        broadcast_strides(&sb[..sb.len() - 2], &batch),
    );
    let bs = strides_of(&batch);
    let mut out = Vec::new();
    for i in 0..size_of(&batch) {
        let idx: Vec<usize> = (0..batch.len()).map(|d| i / bs[d] % batch[d]).collect();
        let oa: usize = idx.iter().zip(&ba).map(|(j, s)| j * s * m * k).sum();
        let ob: usize = idx.iter().zip(&bb).map(|(j, s)| j * s * k * n).sum();
        for r in 0..m {
            for c in 0..n {
                out.push(
                    (0..k)
                        .map(|p| {
                            a.data()[oa + r * k + p].to_f64_lossless()
                                * b.data()[ob + p * n + c].to_f64_lossless()
                        })
                        .sum(),
                );
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    NdArray::from_vec(out, &shape).unwrap()
}

fn assert_close<T: Float>(got: &NdArray<T>, want: &NdArray<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape());
    for (i, (g, w)) in got.data().iter().zip(want.data()).enumerate() {
        let g = g.to_f64_lossless();
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: {g} vs {w}"
        );
    }
}

fn arr(data: &[f64], shape: &[usize]) -> NdArray<f64> {
    NdArray::from_vec(data.to_vec(), shape).unwrap()
}

/// Swaps the last two axes, materialised.
fn transposed<T: Float>(x: &NdArray<T>) -> NdArray<T> {
    let nd = x.ndim();
    x.swap_axes(nd - 2, nd - 1).unwrap()
}

#[test]
fn a_2x3_times_3x2_matches_the_hand_computed_product() {
    let a = arr(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let b = arr(&[7., 8., 9., 10., 11., 12.], &[3, 2]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[2, 2]);
    assert_eq!(c.data(), &[58., 64., 139., 154.]);
}

#[test]
fn f32_products_are_exact_on_small_integers() {
    let a = NdArray::from_vec(vec![1f32, 2., 3., 4.], &[2, 2]).unwrap();
    let b = NdArray::from_vec(vec![5f32, 6., 7., 8.], &[2, 2]).unwrap();
    assert_eq!(a.matmul(&b).unwrap().data(), &[19f32, 22., 43., 50.]);
}

#[test]
fn two_vectors_give_a_zero_dimensional_dot_product() {
    let a = arr(&[1., 2., 3.], &[3]);
    let b = arr(&[4., 5., 6.], &[3]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[] as &[usize]);
    assert_eq!(c.data(), &[32.]);
}

#[test]
fn a_vector_on_the_left_loses_its_prepended_axis() {
    let v = arr(&[1., 2.], &[2]);
    let m = arr(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let c = v.matmul(&m).unwrap();
    assert_eq!(c.shape(), &[3]);
    assert_eq!(c.data(), &[9., 12., 15.]);
    // Batched: (2,) @ (4, 2, 3) -> (4, 3).
    let bm = filled::<f64>(&[4, 2, 3], 1);
    let c = v.matmul(&bm).unwrap();
    assert_close(
        &c,
        &naive(&v.reshape(&[1, 2]).unwrap(), &bm)
            .reshape(&[4, 3])
            .unwrap(),
        1e-12,
    );
}

#[test]
fn a_vector_on_the_right_loses_its_appended_axis() {
    let m = arr(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let v = arr(&[1., 0., -1.], &[3]);
    let c = m.matmul(&v).unwrap();
    assert_eq!(c.shape(), &[2]);
    assert_eq!(c.data(), &[-2., -2.]);
    // Batched: (5, 2, 3) @ (3,) -> (5, 2).
    let bm = filled::<f64>(&[5, 2, 3], 2);
    let want = naive(&bm, &v.reshape(&[3, 1]).unwrap())
        .reshape(&[5, 2])
        .unwrap();
    assert_close(&bm.matmul(&v).unwrap(), &want, 1e-12);
}

#[test]
fn batch_axes_broadcast_like_numpy() {
    for (sa, sb, want) in [
        (vec![2, 1, 3, 4], vec![5, 4, 6], vec![2, 5, 3, 6]),
        (vec![3, 4], vec![7, 4, 2], vec![7, 3, 2]),
        (vec![6, 3, 4], vec![4, 2], vec![6, 3, 2]),
        (vec![1, 2, 3], vec![3, 1, 3, 5], vec![3, 1, 2, 5]),
    ] {
        let a = filled::<f64>(&sa, 3);
        let b = filled::<f64>(&sb, 4);
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.shape(), &want[..]);
        assert_close(&c, &naive(&a, &b), 1e-12);
    }
}

#[test]
fn many_small_batched_matrices_match_the_naive_loop_in_f32() {
    // Enough total work to take the batch-parallel path.
    let a = filled::<f32>(&[64, 1, 16, 8], 5);
    let b = filled::<f32>(&[8, 8, 16], 6);
    assert_close(&a.matmul(&b).unwrap(), &naive(&a, &b), 1e-5);
}

#[test]
fn transpose_flags_match_materialised_transposes() {
    let a = filled::<f64>(&[2, 3, 4], 7); // used as (2, 4, 3) when transposed
    let b = filled::<f64>(&[5, 1, 6, 3], 8); // used as (5, 1, 3, 6) when transposed
    let at = transposed(&a);
    let bt = transposed(&b);
    // aᵀ @ x, x @ bᵀ and aᵀ @ bᵀ, each against matmul on the permuted copies.
    let x = filled::<f64>(&[3, 7], 9);
    assert_close(
        &a.matmul_t(&x, true, false).unwrap(),
        &naive(&at, &x),
        1e-12,
    );
    let y = filled::<f64>(&[2, 8, 3], 10);
    assert_close(
        &y.matmul_t(&b, false, true).unwrap(),
        &naive(&y, &bt),
        1e-12,
    );
    let c = filled::<f64>(&[2, 6, 4], 11); // cᵀ is (2, 4, 6)
    let d = filled::<f64>(&[5, 2, 3, 6], 12); // dᵀ is (5, 2, 6, 3)
    let got = c.matmul_t(&d, true, true).unwrap();
    assert_close(&got, &naive(&transposed(&c), &transposed(&d)), 1e-12);
    assert_eq!(got.shape(), &[5, 2, 4, 3]);
}

#[test]
fn transposed_f32_products_match_in_the_backward_pattern() {
    // C = A @ B; dA = dC @ Bᵀ, dB = Aᵀ @ dC.
    let a = filled::<f32>(&[3, 5, 4], 13);
    let b = filled::<f32>(&[4, 6], 14);
    let dc = filled::<f32>(&[3, 5, 6], 15);
    let da = dc.matmul_t(&b, false, true).unwrap();
    assert_close(&da, &naive(&dc, &transposed(&b)), 1e-5);
    let db = a.matmul_t(&dc, true, false).unwrap();
    assert_close(&db, &naive(&transposed(&a), &dc), 1e-5);
}

#[test]
fn a_transposed_operand_large_enough_to_be_copied_gives_the_same_product_bit_for_bit() {
    // A transposed B above the size from which it is copied row-major first (ragged
    // tiles: 37, 270 and 300 are not multiples of the tile), batched so the copies start
    // at non-zero offsets; the product must equal the one of the materialised transposes
    // exactly (the same gemm on the same layout).
    let a = filled::<f32>(&[2, 300, 37], 20); // aᵀ is (2, 37, 300)
    let b = filled::<f32>(&[2, 270, 300], 21); // bᵀ is (2, 300, 270)
    let got = a.matmul_t(&b, true, true).unwrap();
    let want = transposed(&a).matmul(&transposed(&b)).unwrap();
    assert_eq!(got.shape(), &[2, 37, 270]);
    assert_eq!(got.data(), want.data());
    assert_close(&got, &naive(&transposed(&a), &transposed(&b)), 1e-4);
    let x = filled::<f64>(&[40, 300], 22);
    let w = filled::<f64>(&[130, 300], 23); // x @ wᵀ, as in a Linear's forward
    let got = x.matmul_t(&w, false, true).unwrap();
    assert_eq!(got.data(), x.matmul(&transposed(&w)).unwrap().data());
}

/// `A @ B (+ bias)` through `matrix_product` on `threads` threads (stripes), each operand
/// stored after `pad` elements of padding so it starts at a non-zero offset, and read
/// transposed when asked (`a` and `b` are then stored as their transposes).
fn product_on_threads<T: Float>(
    (a, ta): (&NdArray<T>, bool),
    (b, tb): (&NdArray<T>, bool),
    bias: Option<&[T]>,
    threads: usize,
    pad: usize,
) -> Vec<T> {
    let store = |x: &NdArray<T>| {
        // Padding that would show in the product if it were ever read.
        let mut v = vec![T::from_f64_lossy(1e6); pad];
        v.extend_from_slice(x.data());
        v
    };
    let (da, db) = (store(a), store(b));
    let (oa, ob) = (
        super::Operand::new(&da, a.shape(), ta),
        super::Operand::new(&db, b.shape(), tb),
    );
    let (m, k, n) = (oa.rows, oa.cols, ob.cols);
    let mut out = vec![std::mem::MaybeUninit::new(T::nan()); m * n];
    super::matrix_product(&mut out, (&oa, pad), (&ob, pad), [m, n, k], threads, bias);
    // SAFETY: every element was initialised (to NaN) above; the product overwrote them.
    out.iter().map(|v| unsafe { v.assume_init() }).collect()
}

/// Checks that `a @ b` with `b` read transposed (stored `n × k`) is close to the naive
/// product on 1 to 3 threads, at offsets 0 and 5, with and without a bias; and, where `b`
/// is copied row-major, equal bit for bit to the product read from its materialised
/// transpose (the same GEMMs on the same layout; gemm's gather, and its kernels for a
/// stripe or chunk one column wide, may round differently, so no piece here is that narrow).
fn check_transposed_b<T: Float>(m: usize, k: usize, n: usize, ta: bool, seed: u64) {
    let a = filled::<T>(&if ta { [k, m] } else { [m, k] }, seed);
    let b = filled::<T>(&[n, k], seed + 1);
    let bias = filled::<T>(&[n], seed + 2);
    let (a_plain, b_plain) = (if ta { transposed(&a) } else { a.clone() }, transposed(&b));
    let want = naive(&a_plain, &b_plain);
    let tol = if T::NAME == "float32" { 1e-4 } else { 1e-12 };
    for threads in [1, 2, 3] {
        for pad in [0, 5] {
            for bias in [None, Some(bias.data())] {
                let got = product_on_threads((&a, ta), (&b, true), bias, threads, pad);
                let read_as_is =
                    product_on_threads((&a, ta), (&b_plain, false), bias, threads, pad);
                let case = format!("{m}x{k}x{n}, ta {ta}, {threads} thr, pad {pad}");
                let copied =
                    super::copies_b(&super::Operand::new(b.data(), b.shape(), true), [m, n, k]);
                assert!(
                    !copied || got == read_as_is,
                    "{case}, bias {}",
                    bias.is_some()
                );
                let mut want = want.data().to_vec();
                if let Some(bias) = bias {
                    for row in want.chunks_mut(n) {
                        for (w, b) in row.iter_mut().zip(bias) {
                            *w += b.to_f64_lossless();
                        }
                    }
                }
                let got = NdArray::from_vec(got, &[m, n]).unwrap();
                assert_close(&got, &NdArray::from_vec(want, &[m, n]).unwrap(), tol);
            }
        }
    }
}

#[test]
fn every_copy_path_of_a_transposed_b_gives_the_product_of_its_materialised_transpose() {
    // (m, k, n): stripes of columns with ragged chunks of the copy (270 columns: 144 + 126
    // on 2 threads, chunks of 64 f32 or 32 f64) and a k that is no multiple of the
    // transpose's blocks;
    // stripes of rows, each copying all of B; as many stripes as columns allow (3 threads);
    // a few rows, and a ragged chunk joining the one before (130 = 64 + 66 on 1 thread);
    // a stripe of one chunk (60 columns of f32), whose bias is filled after its copy;
    // m · n ≤ 256, one row and a small B, which are not copied; A transposed as well.
    for (m, k, n) in [
        (37, 300, 270),
        (150, 70, 90),
        (40, 129, 500),
        (5, 300, 100),
        (2, 64, 130),
        (20, 300, 60),
        (12, 64, 20),
        (1, 300, 100),
        (20, 30, 40),
        (64, 64, 128),
    ] {
        check_transposed_b::<f32>(m, k, n, false, 40);
        check_transposed_b::<f64>(m, k, n, false, 41);
    }
    check_transposed_b::<f32>(33, 150, 200, true, 42);
    check_transposed_b::<f64>(130, 90, 70, true, 43);
}

#[test]
fn without_flags_matmul_t_is_matmul_including_vectors() {
    let a = filled::<f64>(&[4], 16);
    let b = filled::<f64>(&[2, 4, 3], 17);
    assert_eq!(a.matmul_t(&b, false, false).unwrap(), a.matmul(&b).unwrap());
}

#[test]
fn transposing_a_vector_is_a_shape_error() {
    let v = filled::<f64>(&[3], 18);
    let m = filled::<f64>(&[3, 3], 19);
    let err = v.matmul_t(&m, true, false).unwrap_err();
    assert!(
        matches!(&err, Error::Shape(msg) if msg.contains("(3,)")),
        "{err}"
    );
}

#[test]
fn mismatched_inner_dimensions_name_both_shapes() {
    let a = filled::<f64>(&[3, 4], 20);
    let b = filled::<f64>(&[5, 2], 21);
    let err = a.matmul(&b).unwrap_err();
    assert_eq!(
        err,
        Error::Shape("matmul: shapes (3, 4) and (5, 2) do not line up: 4 != 5".into())
    );
    let v = filled::<f64>(&[5], 22);
    let err = a.matmul(&v).unwrap_err().to_string();
    assert!(err.contains("(3, 4)") && err.contains("(5,)"), "{err}");
}

#[test]
fn incompatible_batch_axes_are_a_shape_error() {
    let a = filled::<f64>(&[2, 3, 4], 23);
    let b = filled::<f64>(&[3, 4, 5], 24);
    let err = a.matmul(&b).unwrap_err();
    assert!(
        matches!(&err, Error::Shape(msg) if msg.contains("(2, 3, 4)") && msg.contains("(3, 4, 5)")),
        "{err}"
    );
}

#[test]
fn a_zero_dimensional_operand_is_a_shape_error() {
    let s = NdArray::scalar(2.0f64);
    let m = filled::<f64>(&[2, 2], 25);
    assert!(matches!(s.matmul(&m), Err(Error::Shape(_))));
    assert!(matches!(m.matmul(&s), Err(Error::Shape(_))));
}

#[test]
fn an_empty_inner_dimension_gives_zeros() {
    let a = NdArray::<f64>::from_vec(vec![], &[3, 0]).unwrap();
    let b = NdArray::<f64>::from_vec(vec![], &[0, 2]).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[3, 2]);
    assert_eq!(c.data(), &[0.; 6]);
    let e = NdArray::<f32>::from_vec(vec![], &[0]).unwrap();
    assert_eq!(e.matmul(&e).unwrap().data(), &[0f32]);
}

#[test]
fn empty_outer_and_batch_dimensions_give_empty_results() {
    let a = NdArray::<f64>::from_vec(vec![], &[0, 3]).unwrap();
    let b = filled::<f64>(&[3, 4], 26);
    assert_eq!(a.matmul(&b).unwrap().shape(), &[0, 4]);
    let a = NdArray::<f64>::from_vec(vec![], &[2, 0, 3, 3]).unwrap();
    assert_eq!(a.matmul(&b).unwrap().shape(), &[2, 0, 3, 4]);
}

#[test]
fn a_large_product_matches_the_naive_loop_in_f32_and_f64() {
    let a = filled::<f64>(&[257, 129], 27);
    let b = filled::<f64>(&[129, 65], 28);
    let want = naive(&a, &b);
    assert_close(&a.matmul(&b).unwrap(), &want, 1e-12);
    let a32 = a.map(|&x| x as f32);
    let b32 = b.map(|&x| x as f32);
    assert_close(&a32.matmul(&b32).unwrap(), &want, 1e-4);
    // Transposed operands take the strided path through the threaded kernel too.
    let got = transposed(&a32)
        .matmul_t(&transposed(&b32), true, true)
        .unwrap();
    assert_close(&got, &want, 1e-4);
}

#[test]
fn a_wide_product_split_into_column_stripes_matches_the_naive_loop() {
    // n > m: the threads each compute a stripe of columns (ragged last stripe, since
    // 301 is no multiple of the stripe alignment); both operands read transposed too.
    let a = filled::<f32>(&[70, 130], 29);
    let b = filled::<f32>(&[130, 301], 30);
    let want = naive(&a, &b);
    assert_close(&a.matmul(&b).unwrap(), &want, 1e-4);
    let got = transposed(&a)
        .matmul_t(&transposed(&b), true, true)
        .unwrap();
    assert_close(&got, &want, 1e-4);
}

#[test]
fn matmul_flat_reads_any_stored_shape_and_adds_the_bias_row_to_every_row() {
    // A buffer read as rows × inner times Wᵀ (W stored cols × inner), plus a bias of cols;
    // the second product is large enough to split into stripes on a machine with 2+ cores.
    for (rows, inner, cols) in [(12, 5, 7), (256, 128, 96)] {
        let x = filled::<f32>(&[rows, inner], 1);
        let w = filled::<f32>(&[cols, inner], 2);
        let bias = filled::<f32>(&[cols], 3);
        let mut want = naive(&x, &transposed(&w));
        for row in want.data_mut().chunks_mut(cols) {
            for (v, &b) in row.iter_mut().zip(bias.data()) {
                *v += b as f64;
            }
        }
        let got = super::matmul_flat(
            x.data(),
            [rows, inner],
            false,
            w.data(),
            [cols, inner],
            true,
            Some(bias.data()),
        )
        .unwrap();
        assert_eq!(got.shape(), [rows, cols]);
        assert_close(&got, &want, 1e-5);
        let no_bias = super::matmul_flat(
            x.data(),
            [rows, inner],
            false,
            w.data(),
            [cols, inner],
            true,
            None,
        )
        .unwrap();
        assert_close(&no_bias, &naive(&x, &transposed(&w)), 1e-5);
    }
}

#[test]
fn matmul_flat_refuses_dims_that_do_not_fit_the_data_or_each_other() {
    let a = [1.0_f64; 6];
    let too_few = super::matmul_flat(&a, [4, 2], false, &a, [2, 3], false, None);
    assert!(matches!(too_few, Err(Error::Shape(_))));
    let misaligned = super::matmul_flat(&a, [2, 3], false, &a, [2, 3], false, None);
    assert!(matches!(misaligned, Err(Error::Shape(_))));
    let bad_bias = super::matmul_flat(&a, [2, 3], false, &a, [3, 2], false, Some(&[1.0]));
    assert!(matches!(bad_bias, Err(Error::Shape(_))));
}

/// Not a test: prints the 1- and 2-thread times of the GEMMs of one step of the GPT
/// benchmark (issue 11) at their shapes. Run alone, on a quiet machine:
/// `cargo test -p ferrograd --release --lib gpt_gemm_timings -- --ignored --nocapture`
/// (`--release`: the test profile's debug assertions make gemm several times slower).
#[test]
#[ignore = "prints timings; run by hand"]
fn gpt_gemm_timings_print_one_and_two_thread_times() {
    use super::matmul_flat;
    // As the Python module does: freed buffers are reused, not mapped afresh every call.
    crate::ndarray::keep_freed_memory();
    let rows = 768;
    // (label, a dims, ta, b dims, tb)
    type Case = (String, [usize; 2], bool, [usize; 2], bool);
    let mut cases: Vec<Case> = Vec::new();
    for (out_f, in_f) in [(384, 128), (128, 128), (512, 128), (128, 512), (65, 128)] {
        cases.push((
            format!("fwd  x@Wt {rows}x{in_f} . {out_f}x{in_f}t"),
            [rows, in_f],
            false,
            [out_f, in_f],
            true,
        ));
        cases.push((
            format!("dX   G@W  {rows}x{out_f} . {out_f}x{in_f}"),
            [rows, out_f],
            false,
            [out_f, in_f],
            false,
        ));
        cases.push((
            format!("dW   Gt@X {rows}x{out_f}t . {rows}x{in_f}"),
            [rows, out_f],
            true,
            [rows, in_f],
            false,
        ));
    }
    for (label, ad, ta, bd, tb) in cases {
        let a = filled::<f32>(&ad, 1);
        let b = filled::<f32>(&bd, 2);
        let run = || {
            std::hint::black_box(matmul_flat(a.data(), ad, ta, b.data(), bd, tb, None).unwrap());
        };
        let (t1, t2) = micros_on_one_and_two_threads(200, &run);
        println!(
            "{label:40} 1 thr {t1:8.1} µs  2 thr {t2:8.1} µs  x{:.2}",
            t1 / t2
        );
    }
    // The backward's pair dX, dW side by side (join_split) against one after the other.
    for (out_f, in_f) in [(384, 128), (128, 128), (512, 128), (128, 512)] {
        let g = filled::<f32>(&[rows, out_f], 3);
        let w = filled::<f32>(&[out_f, in_f], 4);
        let x = filled::<f32>(&[rows, in_f], 5);
        let dx = || {
            matmul_flat(
                g.data(),
                [rows, out_f],
                false,
                w.data(),
                [out_f, in_f],
                false,
                None,
            )
        };
        let dw = || {
            matmul_flat(
                g.data(),
                [rows, out_f],
                true,
                x.data(),
                [rows, in_f],
                false,
                None,
            )
        };
        let (t1, t2) = micros_on_one_and_two_threads(200, &|| {
            std::hint::black_box((dx().unwrap(), dw().unwrap()));
        });
        let tj = median_micros(200, &|| {
            let (x, w) = crate::parallel::join_split(dx, dw);
            std::hint::black_box((x.unwrap(), w.unwrap()));
        });
        println!(
            "bwd pair out {out_f} in {in_f}: 1 thr {t1:8.1}  2 thr striped {t2:8.1}  joined {tj:8.1} µs"
        );
    }
    crate::parallel::set_num_threads(0).unwrap();
}

/// Not a test: prints the 1- and 2-thread times of the GEMMs of one step of the large MLP
/// benchmark (784-512-512-10, batch 128) and of the digits models. Run alone, on a quiet
/// machine: `cargo test -p ferrograd --release --lib mlp_gemm_timings -- --ignored --nocapture`.
#[test]
#[ignore = "prints timings; run by hand"]
fn mlp_gemm_timings_print_one_and_two_thread_times() {
    use super::matmul_flat;
    // As the Python module does: freed buffers are reused, not mapped afresh every call.
    crate::ndarray::keep_freed_memory();
    for (rows, in_f, out_f) in [
        (128, 784, 512),
        (128, 512, 512),
        (128, 512, 10),
        (64, 64, 128),
        (32, 1024, 128),
    ] {
        let x = filled::<f32>(&[rows, in_f], 1);
        let w = filled::<f32>(&[out_f, in_f], 2);
        let g = filled::<f32>(&[rows, out_f], 3);
        let bias = filled::<f32>(&[out_f], 4);
        // (label, A, its stored shape, transposed, B, its stored shape, transposed, bias)
        type Case<'a> = (
            &'a str,
            &'a NdArray<f32>,
            [usize; 2],
            bool,
            &'a NdArray<f32>,
            [usize; 2],
            bool,
            Option<&'a [f32]>,
        );
        let cases: [Case; 3] = [
            (
                "fwd x@Wt+b",
                &x,
                [rows, in_f],
                false,
                &w,
                [out_f, in_f],
                true,
                Some(bias.data()),
            ),
            (
                "dX  G@W",
                &g,
                [rows, out_f],
                false,
                &w,
                [out_f, in_f],
                false,
                None,
            ),
            (
                "dW  Gt@X",
                &g,
                [rows, out_f],
                true,
                &x,
                [rows, in_f],
                false,
                None,
            ),
        ];
        for (label, a, sa, ta, b, sb, tb, bias) in cases {
            let run = || {
                std::hint::black_box(
                    matmul_flat(a.data(), sa, ta, b.data(), sb, tb, bias).unwrap(),
                );
            };
            let (t1, t2) = micros_on_one_and_two_threads(300, &run);
            println!("{rows}x{in_f}->{out_f} {label:12} 1 thr {t1:8.1} µs  2 thr {t2:8.1} µs");
        }
    }
    crate::parallel::set_num_threads(0).unwrap();
}

/// The median time of `reps` calls of `f` in µs, after 20 untimed ones (for the ignored
/// timing tests).
fn median_micros(reps: usize, f: &dyn Fn()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// [`median_micros`] of `f` on 1 thread, then on 2 (the knob is left at 2).
fn micros_on_one_and_two_threads(reps: usize, f: &dyn Fn()) -> (f64, f64) {
    crate::parallel::set_num_threads(1).unwrap();
    let one = median_micros(reps, f);
    crate::parallel::set_num_threads(2).unwrap();
    (one, median_micros(reps, f))
}
