//! Where things are in a template: the names every stage of the pipeline agrees on. A leaf: the
//! modules of `template/` import it, it imports nothing.

/// The manifest file at the root of every template.
pub const MANIFEST_FILE: &str = "stackwise.toml";
/// Directory (inside the template) that holds components.
pub const COMPONENTS_DIR: &str = "components";
/// Directory (inside the template) whose `.tera` files any template may `{% include %}`.
pub const PARTIALS_DIR: &str = "partials";
/// File name of a component's own manifest.
pub const COMPONENT_MANIFEST: &str = "component.toml";
/// The suffix that marks a file to render.
pub const TEMPLATE_SUFFIX: &str = ".tera";
/// The project's record (`project/record.rs` reads and writes it); a name the plan refuses to
/// render, so it sits here with the other names rather than `template/` importing `project/`.
pub const RECORD_FILE: &str = ".stackwise.toml";
