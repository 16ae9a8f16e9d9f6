//! The one error type of the core: each variant says which Python exception it becomes.

/// Everything that can go wrong in the core. The message names the op and the shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shapes that do not fit together (Python `ValueError`).
    #[error("{0}")]
    Shape(String),
    /// An axis out of range or repeated (Python `fg.AxisError`: both `ValueError` and `IndexError`).
    #[error("{0}")]
    Axis(String),
    /// An index out of range (Python `IndexError`).
    #[error("{0}")]
    Index(String),
    /// A bad value: negative size, zero step, empty reduction (Python `ValueError`).
    #[error("{0}")]
    Value(String),
    /// A wrong kind of argument (Python `TypeError`).
    #[error("{0}")]
    Type(String),
    /// Misuse of the autodiff graph (Python `RuntimeError`).
    #[error("{0}")]
    Graph(String),
    /// An allocation that cannot be satisfied (Python `MemoryError`).
    #[error("{0}")]
    Memory(String),
    /// User code that the core called back (a hook) failed; the bindings raise the hook's own
    /// exception (Python `RuntimeError` when there is none).
    #[error("{0}")]
    Hook(String),
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an `Error::Shape` from `format!` arguments.
#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::Error::Shape(format!($($arg)*)) };
}

/// Builds an `Error::Value` from `format!` arguments.
#[macro_export]
macro_rules! value_err {
    ($($arg:tt)*) => { $crate::Error::Value(format!($($arg)*)) };
}
