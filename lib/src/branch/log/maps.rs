//! Map logs keyed by a name rather than a UUID: `T SP FIELD SP VALUE`.
//!
//! * `config.log`: repository-wide git-annex settings (`annex.largefiles` ...); an empty
//!   value means "unset".
//! * `group-preferred-content.log`: a group's preferred content expression (the one
//!   `standard`/`groupwanted` refer to).

use std::collections::BTreeMap;

use super::maplog::{format_raw, map_family, parse_raw, Layout, MapLog};

fn format_text(s: &String, out: &mut Vec<u8>) {
    out.extend_from_slice(s.as_bytes())
}
fn parse_text(b: &[u8]) -> Option<String> {
    Some(String::from_utf8_lossy(b).into_owned())
}

map_family!(
    /// `config.log`.
    ConfigFormat, Layout::New, field: Vec<u8>, value: Vec<u8>,
    parse_field: parse_raw, format_field: format_raw,
    parse_value: parse_raw, format_value: format_raw
);
pub type ConfigLog = MapLog<ConfigFormat>;

impl ConfigLog {
    /// The settings in effect: name -> value, unset (empty) values left out.
    pub fn settings(&self) -> BTreeMap<String, String> {
        self.values()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }
}

map_family!(
    /// `group-preferred-content.log`.
    GroupWantedFormat, Layout::New, field: String, value: String,
    parse_field: parse_text, format_field: format_text,
    parse_value: parse_text, format_value: format_text
);
pub type GroupPreferredContentLog = MapLog<GroupWantedFormat>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::log::maplog::tests::{arb_log, check_laws};
    use proptest::prelude::*;

    #[test]
    fn fixtures() {
        let g = GroupPreferredContentLog::parse(b"1795644140s mygroup balanced=mygroup:2\n");
        assert_eq!(g.get(&"mygroup".to_string()).unwrap(), "balanced=mygroup:2");
        let c = ConfigLog::parse(
            b"1795644140s annex.largefiles largerthan=1kb\n1795644141s annex.dotfiles \n",
        );
        assert_eq!(
            c.get(&b"annex.largefiles".to_vec()).unwrap(),
            b"largerthan=1kb"
        );
        let s = c.settings();
        assert_eq!(s.len(), 1);
        assert_eq!(s["annex.largefiles"], "largerthan=1kb");
    }

    proptest! {
        #[test]
        fn laws_config(a in arb_log::<ConfigFormat>("[a-c.]{1,3}".prop_map(|s| s.into_bytes()), "[a-z= ]{0,6}".prop_map(|s| s.into_bytes())),
                       b in arb_log::<ConfigFormat>("[a-c.]{1,3}".prop_map(|s| s.into_bytes()), "[a-z= ]{0,6}".prop_map(|s| s.into_bytes())),
                       c in arb_log::<ConfigFormat>("[a-c.]{1,3}".prop_map(|s| s.into_bytes()), "[a-z= ]{0,6}".prop_map(|s| s.into_bytes()))) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_group_wanted(a in arb_log::<GroupWantedFormat>("[a-c]{1,3}", "[a-z=: ]{0,8}"),
                             b in arb_log::<GroupWantedFormat>("[a-c]{1,3}", "[a-z=: ]{0,8}"),
                             c in arb_log::<GroupWantedFormat>("[a-c]{1,3}", "[a-z=: ]{0,8}")) {
            check_laws(&a, &b, &c)?;
        }
    }
}
