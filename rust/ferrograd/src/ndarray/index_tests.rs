//! Tests of `plan_index` and `NdArray::index`; expected values come from NumPy.

use super::{plan_index, IndexItem, IndexPlan};
use crate::{Error, NdArray};
use IndexItem::{Ellipsis, Int, NewAxis};

/// `np.arange(n).reshape(shape)`: values equal their flat offsets.
fn arange(shape: &[usize]) -> NdArray<f64> {
    let n = shape.iter().product::<usize>();
    NdArray::from_vec((0..n).map(|i| i as f64).collect(), shape).unwrap()
}

fn sl(start: Option<isize>, stop: Option<isize>, step: Option<isize>) -> IndexItem {
    IndexItem::slice(start, stop, step)
}

fn list(v: &[isize]) -> IndexItem {
    IndexItem::list(v.to_vec())
}

fn array(v: &[isize], shape: &[usize]) -> IndexItem {
    IndexItem::Array {
        indices: v.to_vec(),
        shape: shape.to_vec(),
    }
}

/// Indexes `np.arange(...).reshape(shape)` and checks NumPy's shape and values.
fn check(shape: &[usize], items: &[IndexItem], want_shape: &[usize], want: &[usize]) {
    let got = arange(shape).index(items).unwrap();
    assert_eq!(got.shape(), want_shape, "shape of {items:?}");
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    assert_eq!(got.data(), &want[..], "values of {items:?}");
}

fn index_err(shape: &[usize], items: &[IndexItem]) -> String {
    match plan_index(shape, items) {
        Err(Error::Index(msg)) => msg,
        other => panic!("expected an index error for {items:?}, got {other:?}"),
    }
}

#[test]
fn an_int_selects_a_row_and_removes_its_axis() {
    check(&[3, 4], &[Int(1)], &[4], &[4, 5, 6, 7]);
}

#[test]
fn a_negative_int_counts_from_the_end() {
    check(&[3, 4], &[Int(-1)], &[4], &[8, 9, 10, 11]);
}

#[test]
fn all_ints_give_a_zero_dimensional_result_with_one_offset() {
    let plan = plan_index(&[3, 4], &[Int(1), Int(2)]).unwrap();
    assert_eq!(
        plan,
        IndexPlan {
            offsets: vec![6],
            shape: vec![]
        }
    );
    check(&[2, 3, 4], &[Int(1), Int(2), Int(3)], &[], &[23]);
}

#[test]
fn a_full_slice_then_a_range_keeps_both_axes() {
    check(
        &[3, 4],
        &[IndexItem::full(), sl(Some(1), Some(3), None)],
        &[3, 2],
        &[1, 2, 5, 6, 9, 10],
    );
}

#[test]
fn a_negative_step_walks_backwards_from_the_end() {
    check(
        &[3, 4],
        &[sl(None, None, Some(-2))],
        &[2, 4],
        &[8, 9, 10, 11, 0, 1, 2, 3],
    );
    check(
        &[3, 4],
        &[IndexItem::full(), sl(Some(-2), None, Some(-3))],
        &[3, 1],
        &[2, 6, 10],
    );
}

#[test]
fn slice_bounds_clamp_like_python() {
    check(
        &[3, 4],
        &[
            sl(Some(5), Some(1), Some(-2)),
            sl(Some(-100), Some(100), None),
        ],
        &[1, 4],
        &[8, 9, 10, 11],
    );
    check(&[3, 4], &[sl(Some(2), Some(2), None)], &[0, 4], &[]);
    // Extreme bounds and steps do not overflow.
    let (lo, hi) = (Some(isize::MIN), Some(isize::MAX));
    check(&[3], &[sl(lo, hi, lo)], &[0], &[]);
    check(&[3], &[sl(hi, None, lo)], &[1], &[2]);
    check(&[3], &[sl(lo, None, hi)], &[1], &[0]);
}

#[test]
fn new_axis_and_ellipsis_combine_with_an_int() {
    check(&[3, 4], &[NewAxis, Ellipsis, Int(0)], &[1, 3], &[0, 4, 8]);
    check(
        &[3, 4],
        &[Ellipsis, NewAxis],
        &[3, 4, 1],
        &(0..12).collect::<Vec<_>>(),
    );
    check(
        &[2, 3, 4],
        &[NewAxis, Int(0), NewAxis, sl(None, None, Some(2)), NewAxis],
        &[1, 1, 2, 1, 4],
        &[0, 1, 2, 3, 8, 9, 10, 11],
    );
}

#[test]
fn a_zero_dimensional_array_accepts_empty_none_and_ellipsis_indices() {
    let s = NdArray::scalar(5.0f64);
    assert_eq!(s.index(&[]).unwrap(), s);
    assert_eq!(s.index(&[Ellipsis]).unwrap(), s);
    assert_eq!(s.index(&[NewAxis]).unwrap().shape(), &[1]);
}

#[test]
fn an_int_list_gathers_rows() {
    check(
        &[3, 4],
        &[list(&[0, 2])],
        &[2, 4],
        &[0, 1, 2, 3, 8, 9, 10, 11],
    );
    check(&[3, 4], &[list(&[])], &[0, 4], &[]);
}

#[test]
fn two_int_lists_pair_up_elementwise() {
    check(&[3, 4], &[list(&[0, 1]), list(&[1, 2])], &[2], &[1, 6]);
}

#[test]
fn a_list_between_slices_stays_in_place() {
    check(
        &[2, 3, 4],
        &[IndexItem::full(), list(&[0, 2]), IndexItem::full()],
        &[2, 2, 4],
        &[0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23],
    );
    check(
        &[2, 3, 4],
        &[Ellipsis, list(&[0, 0, 1])],
        &[2, 3, 3],
        &[
            0, 0, 1, 4, 4, 5, 8, 8, 9, 12, 12, 13, 16, 16, 17, 20, 20, 21,
        ],
    );
}

#[test]
fn lists_separated_by_a_slice_move_their_axes_to_the_front() {
    check(
        &[2, 3, 4],
        &[list(&[0]), IndexItem::full(), list(&[1])],
        &[1, 3],
        &[1, 5, 9],
    );
    // An ellipsis or a new axis between them separates them too, even when it spans no axis.
    check(
        &[2, 3, 4],
        &[IndexItem::full(), list(&[0, 1]), Ellipsis, list(&[1, 2])],
        &[2, 2],
        &[1, 13, 6, 18],
    );
    check(
        &[2, 3, 4],
        &[IndexItem::full(), list(&[0, 1]), NewAxis, list(&[1, 2])],
        &[2, 2, 1],
        &[1, 13, 6, 18],
    );
}

#[test]
fn an_int_beside_a_list_is_an_advanced_index() {
    // Separated by a slice: the broadcast axis goes to the front (NumPy's famous case).
    check(
        &[2, 3, 4],
        &[Int(1), IndexItem::full(), list(&[0, 3])],
        &[2, 3],
        &[12, 16, 20, 15, 19, 23],
    );
    // Adjacent: it stays in place.
    check(
        &[2, 3, 4],
        &[IndexItem::full(), Int(1), list(&[0, 3])],
        &[2, 2],
        &[4, 7, 16, 19],
    );
}

#[test]
fn a_two_dimensional_index_array_adds_its_axes() {
    check(
        &[3, 4],
        &[array(&[0, 1, 2, 0], &[2, 2])],
        &[2, 2, 4],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3],
    );
}

#[test]
fn index_arrays_broadcast_together() {
    // a[[[0], [2]], [1, 3, -1]]: (2, 1) with (3,) gives (2, 3).
    check(
        &[3, 4],
        &[array(&[0, 2], &[2, 1]), list(&[1, 3, -1])],
        &[2, 3],
        &[1, 3, 3, 9, 11, 11],
    );
}

#[test]
fn the_plan_lists_source_offsets_in_output_order() {
    let plan = plan_index(&[3, 4], &[sl(Some(1), None, None), list(&[2, 0])]).unwrap();
    assert_eq!(plan.shape, vec![2, 2]);
    assert_eq!(plan.offsets, vec![6, 4, 10, 8]);
}

#[test]
fn empty_axes_give_empty_results() {
    let plan = plan_index(&[3, 0], &[list(&[0, 1])]).unwrap();
    assert_eq!((plan.shape, plan.offsets.len()), (vec![2, 0], 0));
    let plan = plan_index(&[2, 3, 4], &[array(&[], &[2, 0])]).unwrap();
    assert_eq!((plan.shape, plan.offsets.len()), (vec![2, 0, 3, 4], 0));
    // A huge empty axis is not materialised.
    let plan = plan_index(
        &[0, usize::MAX / 2],
        &[IndexItem::full(), sl(Some(1), None, None)],
    )
    .unwrap();
    assert_eq!(plan.offsets.len(), 0);
}

#[test]
fn two_ellipses_are_an_index_error() {
    assert_eq!(
        index_err(&[3, 4], &[Ellipsis, Ellipsis]),
        "an index can only have a single ellipsis ('...')"
    );
}

#[test]
fn too_many_indices_is_an_index_error() {
    assert_eq!(
        index_err(&[3, 4], &[Int(1), Int(2), Int(3)]),
        "too many indices for array: array is 2-dimensional, but 3 were indexed"
    );
    assert_eq!(
        index_err(&[], &[Int(0)]),
        "too many indices for array: array is 0-dimensional, but 1 were indexed"
    );
    // New axes do not count.
    assert!(plan_index(&[3, 4], &[NewAxis, Int(0), Int(0), NewAxis]).is_ok());
}

#[test]
fn an_out_of_range_int_names_the_index_axis_and_size() {
    assert_eq!(
        index_err(&[3, 4], &[Int(3)]),
        "index 3 is out of bounds for axis 0 with size 3"
    );
    assert_eq!(
        index_err(&[3, 4], &[IndexItem::full(), Int(-5)]),
        "index -5 is out of bounds for axis 1 with size 4"
    );
    assert_eq!(
        index_err(&[0, 3], &[IndexItem::full(), Int(5)]),
        "index 5 is out of bounds for axis 1 with size 3"
    );
}

#[test]
fn an_out_of_range_array_entry_is_an_index_error() {
    assert_eq!(
        index_err(&[2, 3], &[list(&[0, 7])]),
        "index 7 is out of bounds for axis 0 with size 2"
    );
    assert_eq!(
        index_err(&[2, 3], &[IndexItem::full(), list(&[-4])]),
        "index -4 is out of bounds for axis 1 with size 3"
    );
}

#[test]
fn a_zero_slice_step_is_a_value_error() {
    assert_eq!(
        plan_index(&[3, 4], &[sl(None, None, Some(0))]),
        Err(Error::Value("slice step cannot be zero".into()))
    );
}

#[test]
fn index_arrays_that_do_not_broadcast_are_an_index_error() {
    let want =
        "shape mismatch: indexing arrays could not be broadcast together with shapes (2,) (3,)";
    assert_eq!(index_err(&[3, 4], &[list(&[0, 1]), list(&[1, 2, 0])]), want);
    // Checked before bounds, and ints are not listed, as in NumPy.
    assert_eq!(
        index_err(&[2, 3, 4], &[list(&[0, 1]), Int(0), list(&[5, 5, 5])]),
        want
    );
    assert_eq!(
        index_err(
            &[2, 3, 4],
            &[array(&[0; 6], &[2, 3]), array(&[0; 20], &[4, 5])]
        ),
        "shape mismatch: indexing arrays could not be broadcast together with shapes (2,3) (4,5)"
    );
}

#[test]
fn an_index_array_whose_values_do_not_fill_its_shape_is_a_value_error() {
    assert!(matches!(
        plan_index(&[3], &[array(&[0, 1], &[3])]),
        Err(Error::Value(_))
    ));
}

#[test]
fn indexing_works_for_any_clone_element() {
    let a = NdArray::from_vec(vec!["a", "b", "c", "d"], &[2, 2]).unwrap();
    let got = a.index(&[list(&[1, 0]), Int(1)]).unwrap();
    assert_eq!(got.data(), &["d", "b"]);
}
