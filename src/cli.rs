//! Command-line definitions. (to be written)
