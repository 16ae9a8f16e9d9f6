//! Shapes: sizes, strides, NumPy broadcasting and axis normalisation.

use crate::{Error, Result};

/// Formats a shape the way Python prints a tuple: `(3, 4)`, `(5,)`, `()`.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// The number of elements of a shape, or an error if it overflows `usize`.
pub fn checked_size(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::Memory(format!(
                "shape {} has more elements than memory can address",
                fmt_shape(shape)
            ))
        })
}

/// Refuses a shape that NumPy could not describe even when it has no elements: the
/// product of its non-zero dimensions, in 8-byte elements, must fit in `isize`.
pub fn check_addressable(shape: &[usize]) -> Result<()> {
    let bytes = shape
        .iter()
        .try_fold(8usize, |acc, &d| acc.checked_mul(d.max(1)));
    match bytes {
        Some(b) if b <= isize::MAX as usize => Ok(()),
        _ => Err(Error::Memory(format!(
            "shape {} is too large to allocate",
            fmt_shape(shape)
        ))),
    }
}

/// The number of elements of a shape known to be valid.
pub fn size_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major (C order) strides, in elements.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// The NumPy broadcast of two shapes, or a shape error naming `op` and both shapes.
pub fn broadcast_shapes(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i < n - a.len() {
            1
        } else {
            a[i - (n - a.len())]
        };
        let db = if i < n - b.len() {
            1
        } else {
            b[i - (n - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::Shape(format!(
                    "{op}: shapes {} and {} cannot be broadcast together (axis {i}: {da} != {db})",
                    fmt_shape(a),
                    fmt_shape(b)
                )))
            }
        };
    }
    Ok(out)
}

/// Strides for reading an array of `shape` as if it had the (broadcast) shape `target`:
/// broadcast axes get stride 0.
pub fn broadcast_strides(shape: &[usize], target: &[usize]) -> Vec<usize> {
    let own = strides_of(shape);
    let offset = target.len() - shape.len();
    (0..target.len())
        .map(|i| {
            if i < offset || shape[i - offset] == 1 {
                0
            } else {
                own[i - offset]
            }
        })
        .collect()
}

/// Resolves a possibly negative axis against `ndim`, or an axis error naming `op`.
pub fn normalize_axis(op: &str, axis: isize, ndim: usize) -> Result<usize> {
    let n = ndim as isize;
    if axis < -n || axis >= n {
        return Err(Error::Axis(format!(
            "{op}: axis {axis} is out of bounds for an array of dimension {ndim}"
        )));
    }
    Ok(if axis < 0 {
        (axis + n) as usize
    } else {
        axis as usize
    })
}

/// Resolves a list of axes (`None` = all axes) into a sorted list without repeats.
pub fn normalize_axes(op: &str, axes: Option<&[isize]>, ndim: usize) -> Result<Vec<usize>> {
    let Some(axes) = axes else {
        return Ok((0..ndim).collect());
    };
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let ax = normalize_axis(op, a, ndim)?;
        if out.contains(&ax) {
            return Err(Error::Axis(format!("{op}: axis {a} is repeated")));
        }
        out.push(ax);
    }
    out.sort_unstable();
    Ok(out)
}

/// The shape left after reducing `axes` (kept as 1 when `keepdims`).
pub fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(broadcast_shapes("add", &[3, 1], &[4]).unwrap(), vec![3, 4]);
        assert_eq!(broadcast_shapes("add", &[], &[2, 2]).unwrap(), vec![2, 2]);
        assert!(broadcast_shapes("add", &[3], &[4]).is_err());
    }

    #[test]
    fn negative_axes_resolve_and_out_of_range_is_an_axis_error() {
        assert_eq!(normalize_axis("sum", -1, 3).unwrap(), 2);
        assert!(matches!(normalize_axis("sum", 3, 3), Err(Error::Axis(_))));
        assert!(matches!(
            normalize_axes("sum", Some(&[0, -2]), 2),
            Err(Error::Axis(_))
        ));
    }

    #[test]
    fn shapes_print_like_python_tuples() {
        assert_eq!(fmt_shape(&[]), "()");
        assert_eq!(fmt_shape(&[5]), "(5,)");
        assert_eq!(fmt_shape(&[3, 4]), "(3, 4)");
    }
}
