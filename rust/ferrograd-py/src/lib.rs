//! PyO3 bindings of the ferrograd core.
