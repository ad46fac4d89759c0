// `sqlx::migrate!` embeds migrations/ at compile time, but cargo only notices edits to
// the files it already embedded: rebuild when a migration is added or removed too.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
