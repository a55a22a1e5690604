//! Makes the end-to-end tests' packaged content (scripts/make-content.sh: oca-pack
//! with its fast preset, about a minute on two cores) once, before the suite
//! runs, and prints where it is. The tests would make it themselves, but inside
//! a test it eats into that test's time limit.

fn main() {
    println!("{}", e2e::stack::content().display());
}
