//! The `.spa` text format (printer and parser). Being written.
