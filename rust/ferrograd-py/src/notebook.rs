//! `_repr_html_` for `Tensor` and `NdArray`: how Jupyter shows them (shape, dtype, autodiff
//! state and a summarised value preview), every piece of text HTML-escaped.

use ferrograd::Tensor;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{numpy, to_numpy};

/// Past this many elements the preview shows the first and last few along each axis.
const PREVIEW_THRESHOLD: usize = 100;

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// NumPy's summarised formatting of the values.
fn preview(py: Python<'_>, t: &Tensor) -> PyResult<String> {
    let arr = to_numpy(py, &t.array())?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("separator", ", ")?;
    kwargs.set_item("threshold", PREVIEW_THRESHOLD)?;
    kwargs.set_item("edgeitems", 3)?;
    kwargs.set_item("precision", 4)?;
    numpy(py)?
        .call_method("array2string", (arr,), Some(&kwargs))?
        .extract()
}

/// The HTML block for a `Tensor` (`autodiff`: with its grad state) or an `NdArray`.
pub fn array_html(py: Python<'_>, class: &str, t: &Tensor, autodiff: bool) -> PyResult<String> {
    let shape = t.shape();
    let mut facts = vec![
        format!("shape {}", shape_text(&shape)),
        t.dtype().name().to_string(),
    ];
    if autodiff {
        if t.requires_grad() {
            facts.push("requires_grad=True".into());
        }
        if let Some(op) = t.op() {
            facts.push(format!("made by {op}"));
        }
        if let Some(g) = t.grad() {
            facts.push(format!("grad {}", shape_text(g.read().shape())));
        }
    }
    let facts = facts
        .iter()
        .map(|f| escape_html(f))
        .collect::<Vec<_>>()
        .join(" &middot; ");
    Ok(format!(
        "<div class=\"ferrograd-{lower}\"><strong>{class}</strong> <span>{facts}</span>\
         <pre style=\"margin: 0.3em 0 0 0\">{values}</pre></div>",
        lower = escape_html(&class.to_lowercase()),
        class = escape_html(class),
        values = escape_html(&preview(py, t)?),
    ))
}

macro_rules! html_methods {
    ($cls:ty, $autodiff:expr) => {
        #[pymethods]
        impl $cls {
            /// The HTML Jupyter shows: shape, dtype, grad state and a value preview.
            fn _repr_html_(&self, py: Python<'_>) -> PyResult<String> {
                use $crate::array_methods::ArrayClass;
                array_html(py, Self::CLASS_NAME, &self.tensor(), $autodiff)
            }
        }
    };
}

html_methods!(crate::classes::PyTensor, true);
html_methods!(crate::classes::PyNdArray, false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_html_escapes_the_five_special_characters() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }

    #[test]
    fn shape_text_writes_python_tuples() {
        assert_eq!(shape_text(&[]), "()");
        assert_eq!(shape_text(&[3]), "(3,)");
        assert_eq!(shape_text(&[2, 3]), "(2, 3)");
    }
}
