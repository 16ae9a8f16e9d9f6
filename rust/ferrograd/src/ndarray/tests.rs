//! Unit tests of `NdArray`'s storage-level methods: concatenation, permutes, broadcasts.

use super::*;

#[test]
fn concatenating_zero_size_arrays_with_huge_axes_returns_at_once() {
    // (10¹², 0) holds nothing; joining along axis 1 must not walk 10¹² empty rows.
    let a: NdArray<f32> = NdArray::from_vec(vec![], &[1 << 40, 0]).unwrap();
    let out = NdArray::concatenate(&[&a, &a], 1).unwrap();
    assert_eq!(out.shape(), &[1 << 40, 0]);
    assert_eq!(out.size(), 0);
}

#[test]
fn permute_copy_matches_the_general_permute_for_every_swap() {
    let shape = [3, 5, 9];
    let n: usize = shape.iter().product();
    let floats = NdArray::from_vec((0..n).map(|i| i as f32).collect(), &shape).unwrap();
    let bools = NdArray::from_vec((0..n).map(|i| i % 3 == 0).collect(), &shape).unwrap();
    for perm in [[0, 2, 1], [1, 0, 2], [2, 1, 0], [0, 1, 2]] {
        assert_eq!(
            floats.permute_copy(&perm).unwrap(),
            floats.permute(&perm).unwrap()
        );
        assert_eq!(
            bools.permute_copy(&perm).unwrap(),
            bools.permute(&perm).unwrap()
        );
    }
    let empty: NdArray<f64> = NdArray::from_vec(vec![], &[2, 0, 4]).unwrap();
    assert_eq!(empty.permute_copy(&[0, 2, 1]).unwrap().shape(), &[2, 4, 0]);
    assert!(floats.permute_copy(&[0, 2, 2]).is_err());
}

#[test]
fn broadcast_to_repeats_elements_as_numpy_does_on_every_kind_of_axis() {
    // Each output element is the input's at the index with broadcast axes set to 0.
    let cases: [(&[usize], &[usize]); 6] = [
        (&[], &[2, 3, 4]),
        (&[3, 1], &[3, 4]),
        (&[1, 3, 1], &[2, 3, 2]),
        (&[3], &[2, 3]),
        (&[2, 1, 1], &[2, 3, 0]),
        (&[1], &[5]),
    ];
    for (from, to) in cases {
        let n: usize = from.iter().product();
        let a = NdArray::from_vec((0..n).map(|i| i as f64 + 1.0).collect(), from).unwrap();
        let out = a.broadcast_to(to).unwrap();
        assert_eq!(out.shape(), to);
        let lead = to.len() - from.len();
        let mut want = Vec::new();
        let total: usize = to.iter().product();
        for flat in 0..total {
            let (mut rest, mut src, mut stride) = (flat, 0, 1);
            for d in (0..to.len()).rev() {
                let i = rest % to[d];
                rest /= to[d];
                if d >= lead {
                    let len = from[d - lead];
                    src += if len == 1 { 0 } else { i * stride };
                    stride *= len;
                }
            }
            want.push(a.data()[src]);
        }
        assert_eq!(out.data(), &want[..], "{from:?} -> {to:?}");
    }
}

#[test]
fn large_copies_split_over_the_pool_equal_their_source() {
    // Around the split threshold, and an odd length whose halves differ in size.
    let t = crate::parallel::PARALLEL_THRESHOLD;
    for n in [0, 1, t - 1, t, t + 1, 3 * t + 7] {
        let src: Vec<u32> = (0..n as u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        assert_eq!(try_copied(&src).unwrap(), src, "{n} elements");
        let a = NdArray::from_vec(src.clone(), &[n]).unwrap();
        assert_eq!(a.try_clone().unwrap(), a, "{n} elements as an NdArray");
    }
}
