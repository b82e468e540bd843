//! Steps every strategy shares.
