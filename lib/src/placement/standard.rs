//! The standard groups and the exact expressions git-annex builds for them (`standard`).
//!
//! A repository uses its standard group's expression only when it is in exactly one
//! standard group. Most expressions end in `or approxlackingcopies=1` ("want content that
//! lacks copies"), written as `(X) or approxlackingcopies=1`.

/// A standard group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StandardGroup {
    Client,
    Transfer,
    Backup,
    IncrementalBackup,
    SmallArchive,
    FullArchive,
    Source,
    Manual,
    Public,
    Unwanted,
}

impl StandardGroup {
    pub const ALL: [StandardGroup; 10] = [
        StandardGroup::Client,
        StandardGroup::Transfer,
        StandardGroup::Backup,
        StandardGroup::IncrementalBackup,
        StandardGroup::SmallArchive,
        StandardGroup::FullArchive,
        StandardGroup::Source,
        StandardGroup::Manual,
        StandardGroup::Public,
        StandardGroup::Unwanted,
    ];

    /// The group name as stored in `group.log`.
    pub fn name(self) -> &'static str {
        match self {
            StandardGroup::Client => "client",
            StandardGroup::Transfer => "transfer",
            StandardGroup::Backup => "backup",
            StandardGroup::IncrementalBackup => "incrementalbackup",
            StandardGroup::SmallArchive => "smallarchive",
            StandardGroup::FullArchive => "archive",
            StandardGroup::Source => "source",
            StandardGroup::Manual => "manual",
            StandardGroup::Public => "public",
            StandardGroup::Unwanted => "unwanted",
        }
    }

    pub fn from_name(s: &str) -> Option<StandardGroup> {
        StandardGroup::ALL.into_iter().find(|g| g.name() == s)
    }

    /// The preferred content expression of the group.
    pub fn expression(self) -> String {
        fn last_resort(s: &str) -> String {
            format!("({s}) or approxlackingcopies=1")
        }
        const NOT_ARCHIVED: &str = "not (copies=archive:1 or copies=smallarchive:1)";
        match self {
            StandardGroup::Client => last_resort(&format!(
                "include=* and ((exclude=*/archive/* and exclude=archive/*) or ({NOT_ARCHIVED}))"
            )),
            StandardGroup::Transfer => last_resort(&format!(
                "not (inallgroup=client and copies=client:2) and ({})",
                StandardGroup::Client.expression()
            )),
            StandardGroup::Backup => "anything".to_string(),
            StandardGroup::IncrementalBackup => {
                last_resort("(not copies=backup:1) and (not copies=incrementalbackup:1)")
            }
            StandardGroup::SmallArchive => last_resort(&format!(
                "(include=*/archive/* or include=archive/*) and ({})",
                StandardGroup::FullArchive.expression()
            )),
            StandardGroup::FullArchive => last_resort(NOT_ARCHIVED),
            StandardGroup::Source => "not (copies=1)".to_string(),
            StandardGroup::Manual => {
                format!("present and ({})", StandardGroup::Client.expression())
            }
            StandardGroup::Public => "inpreferreddir".to_string(),
            StandardGroup::Unwanted => "not anything".to_string(),
        }
    }
}

/// The standard group of a repository: the only standard group among its groups.
pub fn standard_group_of<'a>(
    groups: impl IntoIterator<Item = &'a String>,
) -> Option<StandardGroup> {
    let mut found = None;
    for g in groups {
        if let Some(sg) = StandardGroup::from_name(g) {
            if found.is_some() {
                return None;
            }
            found = Some(sg);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "(include=* and ((exclude=*/archive/* and exclude=archive/*) or (not (copies=archive:1 or copies=smallarchive:1)))) or approxlackingcopies=1";

    #[test]
    fn expressions_are_git_annex_strings() {
        assert_eq!(StandardGroup::Client.expression(), CLIENT);
        assert_eq!(
            StandardGroup::Transfer.expression(),
            format!("(not (inallgroup=client and copies=client:2) and ({CLIENT})) or approxlackingcopies=1")
        );
        assert_eq!(StandardGroup::Backup.expression(), "anything");
        assert_eq!(
            StandardGroup::IncrementalBackup.expression(),
            "((not copies=backup:1) and (not copies=incrementalbackup:1)) or approxlackingcopies=1"
        );
        assert_eq!(
            StandardGroup::SmallArchive.expression(),
            "((include=*/archive/* or include=archive/*) and ((not (copies=archive:1 or copies=smallarchive:1)) or approxlackingcopies=1)) or approxlackingcopies=1"
        );
        assert_eq!(
            StandardGroup::FullArchive.expression(),
            "(not (copies=archive:1 or copies=smallarchive:1)) or approxlackingcopies=1"
        );
        assert_eq!(StandardGroup::Source.expression(), "not (copies=1)");
        assert_eq!(
            StandardGroup::Manual.expression(),
            format!("present and ({CLIENT})")
        );
        assert_eq!(StandardGroup::Public.expression(), "inpreferreddir");
        assert_eq!(StandardGroup::Unwanted.expression(), "not anything");
    }

    #[test]
    fn exactly_one_standard_group() {
        let g = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        assert_eq!(
            standard_group_of(&g(&["client", "mine"])),
            Some(StandardGroup::Client)
        );
        assert_eq!(standard_group_of(&g(&["client", "backup"])), None);
        assert_eq!(standard_group_of(&g(&["mine"])), None);
        for sg in StandardGroup::ALL {
            assert_eq!(StandardGroup::from_name(sg.name()), Some(sg));
            assert!(super::super::Expr::parse(&sg.expression()).is_ok());
        }
    }
}
