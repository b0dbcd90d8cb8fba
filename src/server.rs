//! Wires one transport to one controller and its namespaces. (to be written)
