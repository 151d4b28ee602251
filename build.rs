//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds `migrations/` at
//! compile time, and cargo does not otherwise know it depends on that directory.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
