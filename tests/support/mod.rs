pub mod tap;
