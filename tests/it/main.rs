//! The integration tests: one binary (one link, one run) that drives `stackwise` as a user
//! does — spawning the binary on fixture templates and real git repositories.
//!
//! `common` holds the fixture template and [`common::Fixture`], the small builder for "run
//! stackwise on this fixture and expect …".

mod adopt;
mod cli;
mod cli_install;
mod cli_template;
mod common;
mod diff;
mod evolve;
mod firstday;
mod firstday_fork;
mod fleet;
mod hostile;
mod hostile_inline;
mod hostile_more;
mod recommend;
mod rerender;
mod snapshots;
mod template_rules;
mod testcmd;
mod update;
mod update_prop;
mod update_recover;
mod update_trust;
