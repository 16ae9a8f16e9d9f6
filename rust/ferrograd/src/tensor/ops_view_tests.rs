//! Tests of unsqueeze, squeeze, expand, narrow, split and chunk.

use super::*;
use crate::dtype::DType;

fn f64t(v: &[f64], shape: &[usize], grad: bool) -> Tensor {
    Tensor::new(
        DynArray::from_f64(v.to_vec(), shape, DType::F64).unwrap(),
        grad,
    )
}

#[test]
fn unsqueeze_and_squeeze_move_axes_of_length_one() {
    let x = f64t(&[1.0, 2.0], &[2], false);
    assert_eq!(x.unsqueeze(0).unwrap().shape(), vec![1, 2]);
    assert_eq!(x.unsqueeze(-1).unwrap().shape(), vec![2, 1]);
    assert!(matches!(x.unsqueeze(2), Err(Error::Axis(_))));
    let y = f64t(&[1.0, 2.0], &[1, 2, 1], false);
    assert_eq!(y.squeeze(None).unwrap().shape(), vec![2]);
    assert_eq!(y.squeeze(Some(&[-1])).unwrap().shape(), vec![1, 2]);
    // An axis whose length is not 1 stays.
    assert_eq!(y.squeeze(Some(&[1])).unwrap().shape(), vec![1, 2, 1]);
    assert!(matches!(y.squeeze(Some(&[3])), Err(Error::Axis(_))));
}

#[test]
fn expand_broadcasts_and_sums_the_gradient_back() {
    let x = f64t(&[1.0, 2.0], &[2, 1], true);
    let y = x.expand(&[3, -1, 4]).unwrap();
    assert_eq!(y.shape(), vec![3, 2, 4]);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(x.grad().unwrap().read().to_f64_vec(), vec![12.0, 12.0]);
    assert!(matches!(x.expand(&[3, 4]), Err(Error::Shape(_))));
    assert!(matches!(x.expand(&[2]), Err(Error::Shape(_))));
}

#[test]
fn split_and_chunk_cut_pieces_whose_gradients_fill_their_places() {
    let x = f64t(&(0..10).map(f64::from).collect::<Vec<_>>(), &[2, 5], true);
    let parts = x.split(2, 1).unwrap();
    let shapes: Vec<Vec<usize>> = parts.iter().map(Tensor::shape).collect();
    assert_eq!(shapes, vec![vec![2, 2], vec![2, 2], vec![2, 1]]);
    assert_eq!(parts[1].array().to_f64_vec(), vec![2.0, 3.0, 7.0, 8.0]);
    let chunks = x.chunk(2, -1).unwrap();
    assert_eq!(
        chunks.iter().map(Tensor::shape).collect::<Vec<_>>(),
        vec![vec![2, 3], vec![2, 2]]
    );
    chunks[1]
        .mul_scalar(2.0)
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    assert_eq!(
        x.grad().unwrap().read().to_f64_vec(),
        vec![0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 2.0, 2.0]
    );
    assert!(matches!(x.split_sizes(&[1, 1], 1), Err(Error::Value(_))));
    assert!(matches!(x.chunk(0, 1), Err(Error::Value(_))));
}
