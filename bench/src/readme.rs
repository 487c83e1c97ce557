//! The README's "The whole game under load" subsection, made from a run's folder: its plots are
//! copied under `docs/bench/` and its report put between the README's markers.

use std::path::Path;

use crate::report::PLOTS;

/// The line before the subsection.
pub const BEGIN: &str = "<!-- bench:begin (ops/bench --readme DIR writes what follows) -->";
/// The line after it.
pub const END: &str = "<!-- bench:end -->";
/// Where the plots go, from the repository's root.
pub const IMAGES: &str = "docs/bench/";

/// Why the README could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum ReadmeError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The markers are missing or out of order.
    #[error("README.md has no `{BEGIN}` line followed by a `{END}` line")]
    NoMarkers,
}

/// `readme` with what lies between the markers replaced by `section`.
pub fn splice(readme: &str, section: &str) -> Result<String, ReadmeError> {
    let begin = readme.find(BEGIN).ok_or(ReadmeError::NoMarkers)?;
    let after = begin + BEGIN.len();
    let end = readme[after..].find(END).ok_or(ReadmeError::NoMarkers)? + after;
    Ok(format!(
        "{}\n\n{}\n{}",
        &readme[..after],
        section.trim(),
        &readme[end..]
    ))
}

/// The subsection made from a run's `report.md`, its images pointed at [`IMAGES`].
pub fn section(report: &str, command: &str) -> String {
    let mut text = report.to_owned();
    for plot in PLOTS {
        text = text.replace(&format!("]({plot})"), &format!("]({IMAGES}{plot})"));
    }
    format!(
        "### The whole game under load\n\n`{command}`, the release build on the stack `ops/up` starts.\n\n{text}"
    )
}

/// Updates `root`'s README.md and `docs/bench/` from the run in `dir`.
pub fn update(root: &Path, dir: &Path, command: &str) -> Result<(), ReadmeError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReadmeError::Io { path, source }
    };
    let images = root.join(IMAGES);
    std::fs::create_dir_all(&images).map_err(io(&images))?;
    for plot in PLOTS {
        std::fs::copy(dir.join(plot), images.join(plot)).map_err(io(&dir.join(plot)))?;
    }
    let report_path = dir.join("report.md");
    let report = std::fs::read_to_string(&report_path).map_err(io(&report_path))?;
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).map_err(io(&readme_path))?;
    let updated = splice(&readme, &section(&report, command))?;
    std::fs::write(&readme_path, updated).map_err(io(&readme_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_replaces_only_what_lies_between_the_markers() {
        let readme =
            format!("# Game\n\n## Benchmarks\n\n{BEGIN}\n\nold\n\n{END}\n\n| micro | table |\n");
        let out = splice(&readme, "new ![t](docs/bench/throughput.png)\n").expect("markers");
        assert_eq!(
            out,
            format!(
                "# Game\n\n## Benchmarks\n\n{BEGIN}\n\nnew ![t](docs/bench/throughput.png)\n{END}\n\n| micro | table |\n"
            )
        );
        assert_eq!(
            splice(&out, "new ![t](docs/bench/throughput.png)").expect("again"),
            out
        );
        assert!(matches!(
            splice("# Game\n", "x"),
            Err(ReadmeError::NoMarkers)
        ));
    }

    #[test]
    fn the_report_s_images_point_under_docs() {
        let text = section("![a](throughput.png)\n![b](lags.png)\n", "ops/bench");
        assert!(
            text.contains("](docs/bench/throughput.png)")
                && text.contains("](docs/bench/lags.png)")
        );
    }
}
