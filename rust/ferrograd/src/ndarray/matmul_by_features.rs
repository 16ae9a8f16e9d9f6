//! Both gradients of a linear layer with its output features split over the pool's threads,
//! so that each thread reads and writes only its own rows of the weight.

use super::{matrix_product, Operand, STRIPE_ALIGN};
use crate::ndarray::{try_with_capacity, Float, NdArray};
use crate::{Error, Result};

/// `(dX, dW) = (G·W, Gᵀ·X)` for `G` (rows × out), `X` (rows × in) and `W` (out × in), on
/// `threads` threads: the output features are dealt out in one block per thread, and thread
/// `p` computes `dW`'s rows `P` (`G[:, P]ᵀ·X`) and `G[:, P]·W[P, :]`, its share of `dX`,
/// which the threads then add up, each over its own rows of `dX`.
///
/// Why: the forward's stripes (`x @ Wᵀ`, split by output features) and the optimizer's
/// blocks (halves of the flat weight) already give each thread the same rows of `W`. Run as
/// two whole GEMMs side by side, dX read every row of `W` on one core and dW was written
/// whole on the other, so the optimizer's next step took half of each from the other core:
/// with the two cores on different core complexes, SGD's step on a 512 × 512 weight took
/// ~305 µs instead of ~50. Split by features, only the partial sums of `dX` cross
/// (`(threads − 1) · rows · in` values), fewer than the weight's when `out ≥ rows`.
pub fn linear_grads_by_features<T: Float>(
    g: &[T],
    x: &[T],
    w: &[T],
    [rows, out_f, in_f]: [usize; 3],
    threads: usize,
) -> Result<(NdArray<T>, NdArray<T>)> {
    let sizes_fit = g.len() == rows * out_f && x.len() == rows * in_f && w.len() == out_f * in_f;
    if !sizes_fit || rows == 0 || out_f == 0 || in_f == 0 {
        return Err(Error::Shape(format!(
            "linear backward: G ({} values), X ({}) and W ({}) are not ({rows}, {out_f}), \
             ({rows}, {in_f}) and ({out_f}, {in_f}) with every size positive",
            g.len(),
            x.len(),
            w.len()
        )));
    }
    let width = out_f
        .div_ceil(threads.max(1))
        .next_multiple_of(STRIPE_ALIGN);
    let blocks = out_f.div_ceil(width);
    let part = rows * in_f;
    let mut dw = try_with_capacity(out_f * in_f)?;
    let mut dx = try_with_capacity(part)?;
    let mut others = try_with_capacity((blocks - 1) * part)?;
    let (g_dims, x_dims, w_dims) = ([rows, out_f], [rows, in_f], [out_f, in_f]);
    let (g_rows, g_cols) = (
        Operand::new(g, &g_dims, false),
        Operand::new(g, &g_dims, true),
    );
    let (x_op, w_op) = (
        Operand::new(x, &x_dims, false),
        Operand::new(w, &w_dims, false),
    );
    let partials = std::iter::once(&mut dx.spare_capacity_mut()[..part])
        .chain(others.spare_capacity_mut()[..(blocks - 1) * part].chunks_mut(part));
    let tasks = dw.spare_capacity_mut()[..out_f * in_f]
        .chunks_mut(width * in_f)
        .zip(partials)
        .enumerate();
    crate::parallel::for_each_item(tasks, |(p, (dw_rows, partial))| {
        let (lo, len) = (p * width, dw_rows.len() / in_f);
        // dW[P, :] = (Gᵀ)[P, :]·X, then G[:, P]·W[P, :]: both start at feature `lo`.
        matrix_product(
            dw_rows,
            (&g_cols, lo),
            (&x_op, 0),
            [len, in_f, rows],
            1,
            None,
        );
        matrix_product(
            partial,
            (&g_rows, lo),
            (&w_op, lo * in_f),
            [rows, in_f, len],
            1,
            None,
        );
    });
    // SAFETY: `matrix_product` wrote every element of each chunk it was given, and the
    // chunks cover `dw`'s `out_f · in_f` elements, `dx`'s `part` and `others`' `(blocks − 1) ·
    // part`.
    unsafe {
        dw.set_len(out_f * in_f);
        dx.set_len(part);
        others.set_len((blocks - 1) * part);
    }
    if blocks > 1 {
        // Each thread adds the other blocks' shares into its own rows of dX, in block order
        // (the same sums whichever thread ran which block).
        let chunk = rows.div_ceil(threads.max(1)) * in_f;
        crate::parallel::for_each_chunk_mut(&mut dx, chunk, |i, rows_of_dx| {
            for share in others.chunks(part) {
                for (d, &s) in rows_of_dx.iter_mut().zip(&share[i * chunk..]) {
                    *d = *d + s;
                }
            }
        });
    }
    Ok((
        NdArray::from_vec(dx, &[rows, in_f])?,
        NdArray::from_vec(dw, &[out_f, in_f])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::linear_grads_by_features;
    use crate::ndarray::Float;
    use crate::test_util::filled;

    /// `a (r × k) · b (k × c)` in f64, with `a` read transposed (stored `k × r`) when asked.
    fn naive<T: Float>(a: &[T], b: &[T], [r, k, c]: [usize; 3], ta: bool) -> Vec<f64> {
        let at = |i: usize, p: usize| if ta { a[p * r + i] } else { a[i * k + p] };
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[i * c + j] = (0..k)
                    .map(|p| at(i, p).to_f64_lossless() * b[p * c + j].to_f64_lossless())
                    .sum();
            }
        }
        out
    }

    fn assert_close<T: Float>(got: &[T], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let g = g.to_f64_lossless();
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what} element {i}: {g} vs {w}"
            );
        }
    }

    fn check<T: Float>([rows, out_f, in_f]: [usize; 3], threads: usize, tol: f64) {
        let g = filled::<T>(&[rows, out_f], 1);
        let x = filled::<T>(&[rows, in_f], 2);
        let w = filled::<T>(&[out_f, in_f], 3);
        let (dx, dw) =
            linear_grads_by_features(g.data(), x.data(), w.data(), [rows, out_f, in_f], threads)
                .unwrap();
        assert_eq!(
            (dx.shape(), dw.shape()),
            (&[rows, in_f][..], &[out_f, in_f][..])
        );
        let case = format!("rows {rows}, out {out_f}, in {in_f}, {threads} threads");
        let want_dx = naive(g.data(), w.data(), [rows, out_f, in_f], false);
        let want_dw = naive(g.data(), x.data(), [out_f, rows, in_f], true);
        assert_close(dx.data(), &want_dx, tol, &format!("dX, {case}"));
        assert_close(dw.data(), &want_dw, tol, &format!("dW, {case}"));
    }

    #[test]
    fn gradients_split_by_features_match_the_whole_products() {
        // Blocks of 32 + 8, 32 + 18 and 48 + 48 + 4 features: ragged last blocks, and three
        // shares of dX added up.
        for (dims, threads) in [([5, 40, 7], 2), ([3, 50, 9], 3), ([4, 100, 3], 3)] {
            check::<f64>(dims, threads, 1e-12);
            check::<f32>(dims, threads, 1e-5);
        }
        // One block: the whole of dX from one share.
        check::<f32>([6, 16, 5], 2, 1e-5);
    }

    #[test]
    fn gradients_split_by_features_reject_sizes_that_do_not_fit() {
        let (g, x, w) = (vec![0f32; 6], vec![0f32; 4], vec![0f32; 6]);
        assert!(linear_grads_by_features(&g, &x, &w, [2, 3, 2], 2).is_ok());
        assert!(linear_grads_by_features(&g, &x, &w, [2, 3, 3], 2).is_err());
        assert!(linear_grads_by_features(&g[..0], &x[..0], &w, [0, 3, 2], 2).is_err());
    }
}
