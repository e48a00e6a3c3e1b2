// Rebuild when the embedded templates or presets change (include_dir cannot tell cargo itself).
fn main() {
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=presets");
}
