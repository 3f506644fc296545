// The migrations are embedded at compile time (`sqlx::migrate!`): a new or changed file must
// rebuild the crate, or the binary would carry the old list.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
