//! The report of `stackwise test`: a table for people, JUnit XML for CI systems.

use std::fmt::Write as _;

use super::TestReport;
use super::sandbox::Status;

fn word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Timeout => "TIMEOUT",
        Status::Skipped => "skipped",
        Status::Interrupted => "interrupted",
    }
}

/// One row per case × step: `case  step  status  seconds`.
pub fn table(report: &TestReport) -> String {
    let case_w = report.results.iter().map(|r| r.label.len()).max().unwrap_or(4).max(6);
    let step_w = report
        .results
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.name.len()))
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:case_w$}  {:step_w$}  {:8}  {:>8}\n",
        "preset", "step", "result", "seconds"
    );
    for r in &report.results {
        for s in &r.steps {
            let _ = writeln!(
                out,
                "{:case_w$}  {:step_w$}  {:8}  {:>8.1}",
                r.label,
                s.name,
                word(s.status),
                s.seconds
            );
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testsuite per case, one testcase per step, so CI systems show each.
pub fn junit(report: &TestReport) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = report.results.iter().map(|r| r.steps.len()).sum();
    let failures = report
        .results
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| matches!(s.status, Status::Fail | Status::Timeout))
        .count();
    let _ = writeln!(
        out,
        "<testsuites name=\"stackwise test\" tests=\"{total}\" failures=\"{failures}\">"
    );
    for r in &report.results {
        let fails = r
            .steps
            .iter()
            .filter(|s| matches!(s.status, Status::Fail | Status::Timeout))
            .count();
        let skipped = r.steps.iter().filter(|s| s.status == Status::Skipped).count();
        let time: f64 = r.steps.iter().map(|s| s.seconds).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
            xml_escape(&r.label),
            r.steps.len()
        );
        for s in &r.steps {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&r.label),
                xml_escape(&s.name),
                s.seconds
            );
            match s.status {
                Status::Pass => out.push_str("/>\n"),
                Status::Skipped => out.push_str("><skipped/></testcase>\n"),
                Status::Fail | Status::Timeout | Status::Interrupted => {
                    let _ = write!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                        if s.status == Status::Timeout {
                            "timeout"
                        } else {
                            "failed"
                        },
                        xml_escape(&super::sandbox::tail(&s.log, 80))
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
